using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Envoy.Extensions.TransportSockets.Tls.V3;
using Writ.Agent.Cache;
using Writ.Agent.Sds;
using Writ.Agent.Tests.Instances;
using Writ.Spiffe;
using Writ.Spiffe.Bundles;

namespace Writ.Agent.Tests.Sds;

/// <summary>
/// The mapping of a caller's SVIDs and the agent's bundles to Envoy secrets, named as SPIRE names them: what each name
/// gives, what no name gives, and that nothing of another workload's is ever given.
/// </summary>
public sealed class SdsSecretsTests : IDisposable
{
    private static readonly SdsOptions Options = new();
    private readonly List<IDisposable> _owned = [];
    private readonly X509Certificate2 _root;
    private readonly X509Certificate2 _foreignRoot;
    private readonly SdsBundleSet _bundles;
    private readonly CachedX509 _api;
    private readonly CachedX509 _web;

    public SdsSecretsTests()
    {
        _root = Root("example.org");
        _foreignRoot = Root("partner.example");
        _bundles = new SdsBundleSet(new TrustBundle(TrustDomain.Parse("example.org"), [_root], []),
            [new TrustBundle(TrustDomain.Parse("partner.example"), [_foreignRoot], [])]);
        _api = Svid("spiffe://example.org/api");
        _web = Svid("spiffe://example.org/web");
    }

    [Fact]
    public void Default_names_give_the_first_svid_with_its_key_and_the_own_trust_domains_roots()
    {
        var selection = SdsSecrets.Select(["default", "ROOTCA"], [_api, _web], _bundles, Options);

        Assert.Empty(selection.Unknown);
        Assert.Equal(["ROOTCA", "default"], selection.Secrets.Select(s => s.Name));
        var cert = selection.Secrets.Single(s => s.Name == "default");
        Assert.Equal(Secret.TypeOneofCase.TlsCertificate, cert.TypeCase);
        var leaf = X509Certificate2.CreateFromPem(cert.TlsCertificate.CertificateChain.InlineBytes.ToStringUtf8());
        Assert.Equal(_api.Chain[0].SerialNumber, leaf.SerialNumber);
        // The key PEM is the leaf's own key (PKCS#8 "PRIVATE KEY").
        var keyPem = cert.TlsCertificate.PrivateKey.InlineBytes.ToStringUtf8();
        Assert.StartsWith("-----BEGIN PRIVATE KEY-----", keyPem, StringComparison.Ordinal);
        using var withKey = X509Certificate2.CreateFromPem(cert.TlsCertificate.CertificateChain.InlineBytes.ToStringUtf8(), keyPem);
        Assert.True(withKey.HasPrivateKey);

        var roots = selection.Secrets.Single(s => s.Name == "ROOTCA");
        Assert.Equal(Secret.TypeOneofCase.ValidationContext, roots.TypeCase);
        var trusted = Certificates(roots.ValidationContext.TrustedCa.InlineBytes.ToStringUtf8());
        Assert.Equal([_root.Thumbprint], trusted.Select(c => c.Thumbprint));   // never the federated domain's roots
    }

    [Fact]
    public void A_spiffe_id_names_that_svid_and_a_trust_domain_id_names_that_domains_roots()
    {
        var selection = SdsSecrets.Select(["spiffe://example.org/web", "spiffe://partner.example", "ALL"], [_api, _web], _bundles, Options);

        Assert.Empty(selection.Unknown);
        var web = selection.Secrets.Single(s => s.Name == "spiffe://example.org/web");
        Assert.Equal(_web.Chain[0].SerialNumber, X509Certificate2.CreateFromPem(web.TlsCertificate.CertificateChain.InlineBytes.ToStringUtf8()).SerialNumber);
        var partner = selection.Secrets.Single(s => s.Name == "spiffe://partner.example");
        Assert.Equal([_foreignRoot.Thumbprint], Certificates(partner.ValidationContext.TrustedCa.InlineBytes.ToStringUtf8()).Select(c => c.Thumbprint));
        var all = selection.Secrets.Single(s => s.Name == "ALL");
        Assert.Equal([_root.Thumbprint, _foreignRoot.Thumbprint], Certificates(all.ValidationContext.TrustedCa.InlineBytes.ToStringUtf8()).Select(c => c.Thumbprint));
    }

    [Fact]
    public void No_names_give_every_svid_by_spiffe_id_and_every_bundle_by_trust_domain_id()
    {
        var selection = SdsSecrets.Select([], [_api, _web], _bundles, Options);

        Assert.Equal(["spiffe://example.org", "spiffe://partner.example", "spiffe://example.org/api", "spiffe://example.org/web"], selection.Secrets.Select(s => s.Name));
        Assert.Empty(selection.Unknown);
    }

    [Fact]
    public void Configured_names_replace_the_defaults()
    {
        var custom = new SdsOptions { DefaultSvidName = "svid", DefaultBundleName = "roots", DefaultAllBundlesName = "every" };
        var selection = SdsSecrets.Select(["svid", "roots", "every", "default", "ROOTCA"], [_api], _bundles, custom);

        Assert.Equal(["roots", "every", "svid"], selection.Secrets.Select(s => s.Name));
        Assert.Equal(["ROOTCA", "default"], selection.Unknown);
    }

    [Fact]
    public void Attack_another_workloads_spiffe_id_or_an_unknown_name_gives_nothing()
    {
        var selection = SdsSecrets.Select(["spiffe://example.org/payments", "spiffe://evil.example", "spiffe://example.org/api/../payments", "nope"], [_api], _bundles, Options);

        Assert.Empty(selection.Secrets);
        Assert.Equal(["nope", "spiffe://evil.example", "spiffe://example.org/api/../payments", "spiffe://example.org/payments"], selection.Unknown);
        // A workload with no SVID has no default certificate either.
        Assert.Equal(["default"], SdsSecrets.Select(["default"], [], _bundles, Options).Unknown);
    }

    [Fact]
    public void The_hash_follows_the_secrets_content()
    {
        var one = SdsSecrets.Hash(SdsSecrets.Resources(SdsSecrets.Select(["default"], [_api], _bundles, Options)));
        var same = SdsSecrets.Hash(SdsSecrets.Resources(SdsSecrets.Select(["default"], [_api], _bundles, Options)));
        var rotated = SdsSecrets.Hash(SdsSecrets.Resources(SdsSecrets.Select(["default"], [Svid("spiffe://example.org/api")], _bundles, Options)));

        Assert.Equal(one, same);
        Assert.NotEqual(one, rotated);
    }

    private static List<X509Certificate2> Certificates(string pem)
    {
        var c = new X509Certificate2Collection();
        c.ImportFromPem(pem);
        return [.. c];
    }

    private X509Certificate2 Root(string td)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var req = new CertificateRequest($"CN={td} root", key, HashAlgorithmName.SHA256);
        req.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        var cert = req.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-1), DateTimeOffset.UtcNow.AddHours(1));
        _owned.Add(cert);
        return cert;
    }

    private CachedX509 Svid(string spiffeId)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var req = new CertificateRequest("CN=svid", key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddUri(new Uri(spiffeId));
        req.CertificateExtensions.Add(san.Build());
        var cert = req.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-1), DateTimeOffset.UtcNow.AddHours(1));
        _owned.Add(cert);
        var entry = InstanceRig.Entry(spiffeId["spiffe://example.org/".Length..]);
        return new CachedX509(entry, "i-1", 1, [cert], key.ExportPkcs8PrivateKey(), cert.NotAfter, cert.NotAfter, "d-1");
    }

    public void Dispose()
    {
        _owned.ForEach(o => o.Dispose());
    }
}
