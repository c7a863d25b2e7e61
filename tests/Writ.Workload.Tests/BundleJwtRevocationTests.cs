using Microsoft.Extensions.Time.Testing;
using Writ.Spiffe;
using Writ.Workload.Tests.Fakes;

namespace Writ.Workload.Tests;

public sealed class BundleJwtRevocationTests : IAsyncLifetime
{
    private readonly TestCa _ca = new("example.org");
    private readonly TestCa _other = new("other.org");
    private FakeWorkloadApi _api = null!;

    public async ValueTask InitializeAsync()
    {
        _api = await FakeWorkloadApi.StartAsync(_ca);
        _api.SetX509Svids([_ca.Issue("/web")]);
    }

    public async ValueTask DisposeAsync()
    {
        await _api.DisposeAsync();
        _ca.Dispose();
        _other.Dispose();
    }

    private T Options<T>(T o, TimeProvider? time = null) where T : WorkloadApiOptions
    {
        o.Address = _api.Address;
        o.InitialBackoff = TimeSpan.FromMilliseconds(50);
        o.MaxBackoff = TimeSpan.FromMilliseconds(400);
        o.TimeProvider = time ?? TimeProvider.System;
        return o;
    }

    [Fact]
    public async Task BundleSource_merges_X509_and_JWT_authorities_per_trust_domain_and_follows_changes()
    {
        await using var bundles = await BundleSource.CreateAsync(Options(new BundleSourceOptions()), TestContext.Current.CancellationToken);
        var b = bundles.GetBundle(_ca.TrustDomain)!;
        Assert.Single(b.X509Authorities);
        Assert.True(b.JwtAuthorities.ContainsKey(_ca.JwtKey.KeyId));
        Assert.Null(bundles.GetBundle(_other.TrustDomain));

        var changed = Until.NextAsync(h => bundles.Changed += h);
        _api.SetBundles(_ca.Bundle, _other.Bundle);
        await changed;
        await Until.TrueAsync(() => bundles.GetBundle(_other.TrustDomain) is { X509Authorities.Count: 1 } && bundles.GetJwtBundle(_other.TrustDomain) is not null,
            "other.org's X.509 and JWT authorities");

        _api.SetBundles(_other.Bundle);   // example.org dropped: nothing of it is trusted any more
        await Until.TrueAsync(() => bundles.GetBundle(_ca.TrustDomain) is null, "example.org's bundle gone");
    }

    [Fact]
    public async Task BundleSource_surfaces_a_refusal()
    {
        _api.SetDenied("no identity issued");
        var e = await Assert.ThrowsAsync<WorkloadApiException>(() => BundleSource.CreateAsync(Options(new BundleSourceOptions()), TestContext.Current.CancellationToken));
        Assert.Equal(WorkloadErrors.Denied, e.Code);
    }

    [Fact]
    public async Task JwtSource_caches_a_token_until_half_its_lifetime()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var jwt = await JwtSource.CreateAsync(Options(new WorkloadApiOptions(), time), TestContext.Current.CancellationToken);

        var first = await jwt.FetchJwtSvidAsync(["spiffe://example.org/api"], cancellationToken: TestContext.Current.CancellationToken);
        var again = await jwt.FetchJwtSvidAsync(["spiffe://example.org/api"], cancellationToken: TestContext.Current.CancellationToken);
        Assert.Same(first, again);
        Assert.Equal(1, _api.JwtFetches);
        Assert.Equal("spiffe://example.org/web", first.Id.ToString());

        await jwt.FetchJwtSvidAsync(["spiffe://example.org/other"], cancellationToken: TestContext.Current.CancellationToken);
        Assert.Equal(2, _api.JwtFetches);   // another audience is another token

        time.Advance(TimeSpan.FromMinutes(6));   // the fake mints 10-minute tokens: past half-life
        var fresh = await jwt.FetchJwtSvidAsync(["spiffe://example.org/api"], cancellationToken: TestContext.Current.CancellationToken);
        Assert.Equal(3, _api.JwtFetches);
        Assert.NotSame(first, fresh);
    }

    [Fact]
    public async Task JwtSource_validates_by_the_agent_and_locally_and_refuses_a_wrong_audience_or_a_foreign_signer()
    {
        await using var jwt = await JwtSource.CreateAsync(Options(new WorkloadApiOptions()), TestContext.Current.CancellationToken);
        var caller = SpiffeId.Parse("spiffe://example.org/caller");
        var token = _ca.MintJwt(caller, ["spiffe://example.org/web"], TimeSpan.FromMinutes(5));

        Assert.Equal(caller, (await jwt.ValidateAsync(token, "spiffe://example.org/web", TestContext.Current.CancellationToken)).Id);
        Assert.Equal(caller, jwt.Validate(token, "spiffe://example.org/web").Id);

        var wrongAudience = await Assert.ThrowsAsync<WorkloadApiException>(() => jwt.ValidateAsync(token, "spiffe://example.org/other", TestContext.Current.CancellationToken));
        Assert.Equal(WorkloadErrors.JwtInvalid, wrongAudience.Code);
        Assert.Equal(WorkloadErrors.JwtInvalid, Assert.Throws<WorkloadApiException>(() => jwt.Validate(token, "spiffe://example.org/other")).Code);

        // A token of a trust domain the agent does not trust, signed with a key it never published.
        var forged = _other.MintJwt(SpiffeId.Parse("spiffe://other.org/evil"), ["spiffe://example.org/web"], TimeSpan.FromMinutes(5));
        Assert.Equal(WorkloadErrors.JwtInvalid, Assert.Throws<WorkloadApiException>(() => jwt.Validate(forged, "spiffe://example.org/web")).Code);
        await Assert.ThrowsAsync<WorkloadApiException>(() => jwt.ValidateAsync(forged, "spiffe://example.org/web", TestContext.Current.CancellationToken));
    }

    [Fact]
    public async Task JwtSource_says_when_no_identity_is_issued()
    {
        await using var jwt = await JwtSource.CreateAsync(Options(new WorkloadApiOptions()), TestContext.Current.CancellationToken);
        var e = await Assert.ThrowsAsync<WorkloadApiException>(() =>
            jwt.FetchJwtSvidAsync(["spiffe://example.org/api"], SpiffeId.Parse("spiffe://example.org/not-mine"), TestContext.Current.CancellationToken));
        Assert.Equal(WorkloadErrors.Denied, e.Code);
    }

    [Fact]
    public async Task RevocationSource_follows_the_agents_set_across_a_restart()
    {
        _api.SetRevocations(["00:0A:BC"], ["jti-1"]);
        await using var revocations = await RevocationSource.CreateAsync(Options(new WorkloadApiOptions()), TestContext.Current.CancellationToken);
        Assert.True(revocations.IsSerialRevoked("abc"));
        Assert.True(revocations.IsSerialRevoked("0A:BC"));
        Assert.False(revocations.IsSerialRevoked("ABCD"));
        Assert.True(revocations.IsJtiRevoked("jti-1"));
        Assert.False(revocations.IsJtiRevoked("JTI-1"));

        var changed = Until.NextAsync(h => revocations.Changed += h);
        _api.SetRevocations(["ABC", "DEF"], ["jti-1", "jti-2"]);
        await changed;
        Assert.True(revocations.IsSerialRevoked("def"));
        Assert.True(revocations.IsJtiRevoked("jti-2"));

        await _api.StopAsync();
        Assert.True(revocations.IsJtiRevoked("jti-2"));   // the last set holds while the agent is away
        _api.SetRevocations(["ABC", "DEF", "123"], ["jti-1", "jti-2", "jti-3"]);
        await _api.StartAgainAsync();
        await Until.TrueAsync(() => revocations.IsJtiRevoked("jti-3") && revocations.IsSerialRevoked("0123"), "the set after the agent restarted");
    }

    [Fact]
    public async Task RevocationSource_says_when_the_agent_has_no_relying_party_API()
    {
        _api.SetRelyingPartyUnimplemented(true);
        var e = await Assert.ThrowsAsync<WorkloadApiException>(() => RevocationSource.CreateAsync(Options(new WorkloadApiOptions()), TestContext.Current.CancellationToken));
        Assert.Equal(WorkloadErrors.Unsupported, e.Code);
    }
}
