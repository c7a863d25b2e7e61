using Microsoft.Extensions.Time.Testing;
using Writ.Spiffe;
using Writ.Workload.Tests.Fakes;

namespace Writ.Workload.Tests;

public sealed class X509SourceTests : IAsyncLifetime
{
    private readonly TestCa _ca = new("example.org");
    private FakeWorkloadApi _api = null!;

    public async ValueTask InitializeAsync() => _api = await FakeWorkloadApi.StartAsync(_ca);

    public async ValueTask DisposeAsync()
    {
        await _api.DisposeAsync();
        _ca.Dispose();
    }

    private X509SourceOptions Options(TimeProvider? time = null) => new()
    {
        Address = _api.Address,
        InitialTimeout = TimeSpan.FromSeconds(20),
        InitialBackoff = TimeSpan.FromMilliseconds(50),
        MaxBackoff = TimeSpan.FromMilliseconds(400),
        TimeProvider = time ?? TimeProvider.System,
    };

    [Fact]
    public async Task First_update_gives_the_SVID_and_the_bundle_with_the_security_header_on_every_call()
    {
        var svid = _ca.Issue("/web");
        var other = new TestCa("other.org");
        _api.SetX509Svids([svid], federated: [other.X509Bundle]);

        await using var source = await X509Source.CreateAsync(Options(), TestContext.Current.CancellationToken);

        var got = source.GetX509Svid();
        Assert.Equal(svid.Id, got.Id);
        Assert.Equal(svid.Leaf.SerialNumber, got.Leaf.SerialNumber);
        Assert.NotNull(got.PrivateKey);
        Assert.Equal(_ca.Certificate.Thumbprint, Assert.Single(source.GetBundle(_ca.TrustDomain)!.X509Authorities).Thumbprint);
        Assert.NotNull(source.GetBundle(other.TrustDomain));
        Assert.Null(source.GetBundle(TrustDomain.Parse("unknown.org")));
        Assert.True(_api.Calls > 0);
        Assert.Equal(0, _api.CallsWithoutHeader);
    }

    [Fact]
    public async Task The_address_comes_from_SPIFFE_ENDPOINT_SOCKET_when_not_given()
    {
        _api.SetX509Svids([_ca.Issue("/env")]);
        var before = Environment.GetEnvironmentVariable(WorkloadApiAddress.EnvironmentVariable);
        Environment.SetEnvironmentVariable(WorkloadApiAddress.EnvironmentVariable, "unix:" + _api.SocketPath);
        try
        {
            var options = Options();
            options.Address = null;
            await using var source = await X509Source.CreateAsync(options, TestContext.Current.CancellationToken);
            Assert.Equal("/env", source.GetX509Svid().Id.Path);
        }
        finally
        {
            Environment.SetEnvironmentVariable(WorkloadApiAddress.EnvironmentVariable, before);
        }
    }

    [Fact]
    public async Task Rotation_swaps_the_SVID_and_raises_Changed()
    {
        var first = _ca.Issue("/web");
        _api.SetX509Svids([first]);
        await using var source = await X509Source.CreateAsync(Options(), TestContext.Current.CancellationToken);
        var changed = Until.NextAsync(h => source.Changed += h);

        var second = _ca.Issue("/web");
        _api.SetX509Svids([second]);
        await changed;

        Assert.Equal(second.Leaf.SerialNumber, source.GetX509Svid().Leaf.SerialNumber);
        Assert.NotEqual(first.Leaf.SerialNumber, second.Leaf.SerialNumber);
    }

    [Fact]
    public async Task A_throwing_Changed_handler_does_not_stop_the_stream()
    {
        _api.SetX509Svids([_ca.Issue("/web")]);
        await using var source = await X509Source.CreateAsync(Options(), TestContext.Current.CancellationToken);
        source.Changed += (_, _) => throw new InvalidOperationException("subscriber bug");

        var next = _ca.Issue("/web");
        _api.SetX509Svids([next]);
        await Until.TrueAsync(() => source.GetX509Svid().Leaf.SerialNumber == next.Leaf.SerialNumber, "the rotated SVID");
        var last = _ca.Issue("/web");
        _api.SetX509Svids([last]);
        await Until.TrueAsync(() => source.GetX509Svid().Leaf.SerialNumber == last.Leaf.SerialNumber, "a second rotation after the handler threw");
    }

    [Fact]
    public async Task After_the_agent_restarts_the_source_reconnects_and_serves_the_last_SVID_meanwhile()
    {
        var first = _ca.Issue("/web");
        _api.SetX509Svids([first]);
        await using var source = await X509Source.CreateAsync(Options(), TestContext.Current.CancellationToken);
        var streams = _api.X509Streams;

        await _api.StopAsync();
        Assert.Equal(first.Leaf.SerialNumber, source.GetX509Svid().Leaf.SerialNumber);   // still served while the agent is away

        var second = _ca.Issue("/web");
        _api.SetX509Svids([second]);
        await _api.StartAgainAsync();

        await Until.TrueAsync(() => source.GetX509Svid().Leaf.SerialNumber == second.Leaf.SerialNumber, "the SVID of the restarted agent");
        Assert.True(_api.X509Streams > streams);
    }

    [Fact]
    public async Task The_last_SVID_is_not_served_after_it_expired()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var svid = _ca.Issue("/web", ttl: TimeSpan.FromMinutes(10));
        _api.SetX509Svids([svid]);
        await using var source = await X509Source.CreateAsync(Options(time), TestContext.Current.CancellationToken);
        await _api.StopAsync();

        time.Advance(TimeSpan.FromMinutes(11));

        var e = Assert.Throws<WorkloadApiException>(() => source.GetX509Svid());
        Assert.Equal(WorkloadErrors.NoSvid, e.Code);
        Assert.Contains("expired", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task No_identity_issued_is_surfaced_at_once_as_WRIT_SDK_DENIED()
    {
        _api.SetDenied("no identity issued");
        var options = Options();
        options.InitialTimeout = TimeSpan.FromMinutes(5);   // the refusal must not wait for the deadline

        var e = await Assert.ThrowsAsync<WorkloadApiException>(() => X509Source.CreateAsync(options, TestContext.Current.CancellationToken));

        Assert.Equal(WorkloadErrors.Denied, e.Code);
        Assert.Contains("no identity issued", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task No_agent_fails_at_the_deadline_with_the_last_error()
    {
        await _api.StopAsync();
        var options = Options();
        options.InitialTimeout = TimeSpan.FromSeconds(1);

        var e = await Assert.ThrowsAsync<WorkloadApiException>(() => X509Source.CreateAsync(options, TestContext.Current.CancellationToken));

        Assert.Equal(WorkloadErrors.Timeout, e.Code);
        Assert.Contains("Unavailable", e.Message, StringComparison.Ordinal);
        Assert.Contains(_api.SocketPath, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_update_whose_certificate_names_another_ID_is_ignored()
    {
        var honest = _ca.Issue("/web");
        _api.SetX509Svids([honest]);
        await using var source = await X509Source.CreateAsync(Options(), TestContext.Current.CancellationToken);

        var lie = _ca.Issue("/admin");
        _api.SetX509Svids([lie], announcedIds: ["spiffe://example.org/web"]);
        var after = _ca.Issue("/web");
        var changed = Until.NextAsync(h => source.Changed += h);
        _api.SetX509Svids([after]);
        await changed;

        // The lie never became current: the next good update did, and /admin never showed up.
        Assert.Equal(after.Leaf.SerialNumber, source.GetX509Svid().Leaf.SerialNumber);
        Assert.All(source.GetX509Svids(), s => Assert.Equal("/web", s.Id.Path));
    }

    [Fact]
    public async Task The_picker_chooses_among_several_SVIDs()
    {
        var a = _ca.Issue("/internal") with { Hint = "internal" };
        var b = _ca.Issue("/external") with { Hint = "external" };
        _api.SetX509Svids([a, b]);
        var options = Options();
        options.Picker = svids => svids.First(s => s.Hint == "external");

        await using var source = await X509Source.CreateAsync(options, TestContext.Current.CancellationToken);

        Assert.Equal("/external", source.GetX509Svid().Id.Path);
        Assert.Equal(2, source.GetX509Svids().Count);
        Assert.Equal("/internal", source.GetX509Svids()[0].Id.Path);
    }

    [Fact]
    public async Task CRLs_of_the_response_are_revoked_serials_in_any_spelling()
    {
        var revoked = _ca.Issue("/revoked");
        var fine = _ca.Issue("/web");
        _api.SetX509Svids([fine], crls: [_ca.Crl(revoked)]);

        await using var source = await X509Source.CreateAsync(Options(), TestContext.Current.CancellationToken);

        var serial = revoked.Leaf.SerialNumber;
        Assert.True(source.IsSerialRevoked(serial));
        Assert.True(source.IsSerialRevoked("00" + string.Join(':', serial.ToLowerInvariant().Chunk(2).Select(c => new string(c)))));
        Assert.False(source.IsSerialRevoked(fine.Leaf.SerialNumber));
        Assert.Single(source.RevokedSerials);
    }

    [Fact]
    public async Task A_malformed_CRL_makes_the_update_ignored_not_half_applied()
    {
        var first = _ca.Issue("/web");
        _api.SetX509Svids([first]);
        await using var source = await X509Source.CreateAsync(Options(), TestContext.Current.CancellationToken);

        _api.SetX509Svids([_ca.Issue("/web")], crls: [TestCa.NotACrl()]);
        var good = _ca.Issue("/web");
        var changed = Until.NextAsync(h => source.Changed += h);
        _api.SetX509Svids([good]);
        await changed;

        Assert.Equal(good.Leaf.SerialNumber, source.GetX509Svid().Leaf.SerialNumber);
        Assert.Empty(source.RevokedSerials);
    }

    [Fact]
    public async Task Dispose_ends_the_stream()
    {
        _api.SetX509Svids([_ca.Issue("/web")]);
        var source = await X509Source.CreateAsync(Options(), TestContext.Current.CancellationToken);
        await source.DisposeAsync();
        Assert.Throws<ObjectDisposedException>(() => source.GetX509Svid());
    }
}
