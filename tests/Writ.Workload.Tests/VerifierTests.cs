using System.Security.Cryptography.X509Certificates;
using Writ.Spiffe;
using Writ.Spiffe.Bundles;
using Writ.Workload.Tests.Fakes;

namespace Writ.Workload.Tests;

/// <summary>The peer checks shared by the mTLS handler, Kestrel and ASP.NET Core, each from the attacker's side.</summary>
public sealed class VerifierTests : IDisposable
{
    private readonly TestCa _ca = new("example.org");
    private readonly TestCa _other = new("other.org");
    private readonly BundleSet _bundles;

    public VerifierTests() => _bundles = new BundleSet([_ca.X509Bundle]);

    public void Dispose()
    {
        _ca.Dispose();
        _other.Dispose();
    }

    private SpiffeCertificateVerification Verify(X509Certificate2 leaf, SpiffeIdAuthorizer? authorizer = null) =>
        new SpiffeCertificateVerifier(_bundles, authorizer ?? Authorize.Any()).Verify([leaf]);

    [Fact]
    public void A_valid_SVID_of_the_expected_ID_is_accepted()
    {
        var v = Verify(_ca.Issue("/api").Leaf, Authorize.Id("spiffe://example.org/api"));
        Assert.True(v.IsValid, v.Error);
        Assert.Equal("spiffe://example.org/api", v.Id!.ToString());
    }

    [Fact]
    public void Another_ID_is_refused_by_the_authorizer()
    {
        var v = Verify(_ca.Issue("/web").Leaf, Authorize.Id("spiffe://example.org/api"));
        Assert.False(v.IsValid);
        Assert.Contains("not authorized", v.Error, StringComparison.Ordinal);
        Assert.Equal("spiffe://example.org/web", v.Id!.ToString());   // verified, but not wanted
    }

    [Fact]
    public void A_foreign_trust_domain_without_a_bundle_is_refused_even_by_Any()
    {
        var v = Verify(_other.Issue("/api").Leaf);
        Assert.False(v.IsValid);
        Assert.Contains("no trust bundle for trust domain 'other.org'", v.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void A_foreign_CA_claiming_our_trust_domain_is_refused()
    {
        var forged = _other.Issue("spiffe://example.org/api");
        var v = Verify(forged.Leaf, Authorize.Id("spiffe://example.org/api"));
        Assert.False(v.IsValid);
        Assert.Contains("does not verify", v.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void An_expired_leaf_is_refused()
    {
        var expired = _ca.Issue("/api", ttl: TimeSpan.FromMinutes(30), notBefore: DateTimeOffset.UtcNow.AddHours(-1));
        var v = Verify(expired.Leaf);
        Assert.False(v.IsValid);
        Assert.Contains("expired", v.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void A_CA_certificate_as_leaf_is_refused()
    {
        Assert.False(Verify(_ca.Issue("/api", asCa: true).Leaf).IsValid);
        var root = Verify(_ca.Certificate);
        Assert.False(root.IsValid);
    }

    [Fact]
    public void A_certificate_without_a_SPIFFE_ID_is_refused()
    {
        var dnsOnly = _ca.Issue("/api", dnsNames: ["api.example.org"], withUriSan: false);
        var v = Verify(dnsOnly.Leaf);
        Assert.False(v.IsValid);
        Assert.StartsWith("the peer certificate is not a valid X.509-SVID", v.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void No_certificate_is_refused()
    {
        var verifier = new SpiffeCertificateVerifier(_bundles, Authorize.Any());
        Assert.False(verifier.Verify(null, null).IsValid);
        Assert.False(verifier.Verify([]).IsValid);
    }

    [Fact]
    public async Task A_revoked_certificate_is_refused_when_a_revocation_source_is_given()
    {
        var revoked = _ca.Issue("/api");
        await using var api = await FakeWorkloadApi.StartAsync(_ca);
        api.SetRevocations([revoked.Leaf.SerialNumber.ToLowerInvariant()], []);
        await using var revocations = await RevocationSource.CreateAsync(new WorkloadApiOptions { Address = api.Address }, TestContext.Current.CancellationToken);

        var verifier = new SpiffeCertificateVerifier(_bundles, Authorize.Any(), revocations: revocations);
        var v = verifier.Verify([revoked.Leaf]);
        Assert.False(v.IsValid);
        Assert.Contains("revoked", v.Error, StringComparison.Ordinal);
        Assert.True(verifier.Verify([_ca.Issue("/api").Leaf]).IsValid);
    }

    [Fact]
    public void The_ID_must_be_in_the_trust_domain_of_MemberOf()
    {
        var both = new BundleSet([_ca.X509Bundle, _other.X509Bundle]);
        var verifier = new SpiffeCertificateVerifier(both, Authorize.MemberOf("example.org"));
        Assert.True(verifier.Verify([_ca.Issue("/api").Leaf]).IsValid);
        Assert.False(verifier.Verify([_other.Issue("/api").Leaf]).IsValid);
        Assert.Equal(TrustDomain.Parse("other.org"), verifier.Verify([_other.Issue("/api").Leaf]).Id!.TrustDomain);
    }
}
