using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Writ.Spiffe.Bundles;
using Writ.Spiffe.X509;

namespace Writ.Spiffe.Tests.X509;

/// <summary>Each X.509-SVID rule, attacked by a certificate that breaks exactly that rule but is otherwise signed by a trusted CA.</summary>
public sealed class X509ValidatorAttackTests
{
    private static readonly DateTimeOffset Now = TestCa.Now;
    private static readonly TestCa Ca = new("example.org");

    private sealed record Spec
    {
        public string[] Uris { get; init; } = ["spiffe://example.org/workload"];
        public bool? IsCa { get; init; } = false;
        public X509KeyUsageFlags? KeyUsage { get; init; } = X509KeyUsageFlags.DigitalSignature;
        public bool KeyUsageCritical { get; init; } = true;
        public string[]? Eku { get; init; } = ["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"];
    }

    private static X509Certificate2 Craft(Spec spec, TestCa? ca = null)
    {
        ca ??= Ca;
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var req = new CertificateRequest("O=Attacker", key, HashAlgorithmName.SHA256);
        if (spec.IsCa is { } isCa)
        {
            req.CertificateExtensions.Add(new X509BasicConstraintsExtension(isCa, false, 0, true));
        }
        if (spec.KeyUsage is { } ku)
        {
            req.CertificateExtensions.Add(new X509KeyUsageExtension(ku, spec.KeyUsageCritical));
        }
        if (spec.Eku is { } eku)
        {
            var oids = new OidCollection();
            foreach (var o in eku)
            {
                oids.Add(new Oid(o));
            }
            req.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(oids, false));
        }
        if (spec.Uris.Length > 0)
        {
            req.CertificateExtensions.Add(UriSan(spec.Uris));
        }
        return req.Create(ca.Root.SubjectName, X509SignatureGenerator.CreateForECDsa((ECDsa)ca.RootKey), Now.AddHours(-1), Now.AddHours(1),
            [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09]);
    }

    /// <summary>A SAN with the URIs byte-exact (System.Uri would append '/' to a bare authority).</summary>
    internal static X509Extension UriSan(params string[] uris)
    {
        var w = new System.Formats.Asn1.AsnWriter(System.Formats.Asn1.AsnEncodingRules.DER);
        using (w.PushSequence())
        {
            foreach (var u in uris)
            {
                w.WriteCharacterString(System.Formats.Asn1.UniversalTagNumber.IA5String, u,
                    new System.Formats.Asn1.Asn1Tag(System.Formats.Asn1.TagClass.ContextSpecific, 6));
            }
        }
        return new X509Extension("2.5.29.17", w.Encode(), false);
    }

    private static X509SvidValidation Validate(X509Certificate2 leaf) => X509SvidValidator.Validate([leaf], Ca.Bundle, Now);

    [Fact]
    public void Baseline_crafted_leaf_is_accepted()
    {
        // Proves the crafting helper makes valid SVIDs, so each attack below fails for its own reason only.
        var r = Validate(Craft(new Spec()));
        Assert.True(r.IsValid, r.Error);
    }

    [Fact]
    public void Two_uri_sans_are_refused()
    {
        var r = Validate(Craft(new Spec { Uris = ["spiffe://example.org/workload", "spiffe://example.org/admin"] }));
        Assert.False(r.IsValid);
        Assert.Contains("2 URI SANs", r.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void No_uri_san_is_refused()
    {
        var r = Validate(Craft(new Spec { Uris = [] }));
        Assert.False(r.IsValid);
        Assert.Contains("no URI SAN", r.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void Uri_san_that_is_not_a_spiffe_id_is_refused()
    {
        var r = Validate(Craft(new Spec { Uris = ["https://example.org/workload"] }));
        Assert.False(r.IsValid);
        Assert.Contains("not a valid SPIFFE ID", r.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void Leaf_naming_the_trust_domain_itself_is_refused()
    {
        var r = Validate(Craft(new Spec { Uris = ["spiffe://example.org"] }));
        Assert.False(r.IsValid);
        Assert.Contains("has no path", r.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void Ca_leaf_is_refused()
    {
        var r = Validate(Craft(new Spec { IsCa = true, KeyUsage = X509KeyUsageFlags.DigitalSignature }));
        Assert.False(r.IsValid);
        Assert.Contains("CA flag", r.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void Missing_key_usage_is_refused()
    {
        var r = Validate(Craft(new Spec { KeyUsage = null }));
        Assert.False(r.IsValid);
        Assert.Contains("no KeyUsage", r.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void Non_critical_key_usage_is_refused()
    {
        var r = Validate(Craft(new Spec { KeyUsageCritical = false }));
        Assert.False(r.IsValid);
        Assert.Contains("not critical", r.Error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(X509KeyUsageFlags.DigitalSignature | X509KeyUsageFlags.KeyCertSign, "keyCertSign")]
    [InlineData(X509KeyUsageFlags.DigitalSignature | X509KeyUsageFlags.CrlSign, "cRLSign")]
    [InlineData(X509KeyUsageFlags.KeyEncipherment, "digitalSignature")]
    public void Wrong_key_usage_is_refused(X509KeyUsageFlags ku, string reason)
    {
        var r = Validate(Craft(new Spec { KeyUsage = ku }));
        Assert.False(r.IsValid);
        Assert.Contains(reason, r.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void Key_usage_with_key_agreement_and_encipherment_is_allowed()
    {
        var r = Validate(Craft(new Spec { KeyUsage = X509KeyUsageFlags.DigitalSignature | X509KeyUsageFlags.KeyEncipherment | X509KeyUsageFlags.KeyAgreement }));
        Assert.True(r.IsValid, r.Error);
    }

    [Theory]
    [InlineData("1.3.6.1.5.5.7.3.1")]
    [InlineData("1.3.6.1.5.5.7.3.2")]
    [InlineData("1.3.6.1.5.5.7.3.3")]
    public void Eku_without_both_server_and_client_auth_is_refused(string only)
    {
        var r = Validate(Craft(new Spec { Eku = [only] }));
        Assert.False(r.IsValid);
        Assert.Contains("serverAuth and clientAuth", r.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void Absent_eku_is_allowed()
    {
        var r = Validate(Craft(new Spec { Eku = null }));
        Assert.True(r.IsValid, r.Error);
    }

    [Fact]
    public void Leaf_signed_by_another_trust_domains_root_is_refused()
    {
        // evil.org's CA signs an ID in example.org; the verifier knows both bundles.
        var evil = new TestCa("evil.org");
        var forged = Craft(new Spec(), evil);
        var bundles = new BundleSet([Ca.Bundle, evil.Bundle]);
        var r = X509SvidValidator.Validate([forged], bundles, Now);
        Assert.False(r.IsValid);
        Assert.Contains("does not verify to the 'example.org' trust bundle", r.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void Leaf_from_an_unknown_ca_with_the_same_trust_domain_name_is_refused()
    {
        var impostor = new TestCa("example.org");
        var (chain, _) = impostor.Mint("/workload");
        var r = X509SvidValidator.Validate(chain, Ca.Bundle, Now);
        Assert.False(r.IsValid);
        Assert.Contains("does not verify", r.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void Leaf_used_as_an_issuer_is_refused()
    {
        // An attacker holding a valid SVID key signs a new leaf for another ID and presents [forged, own SVID].
        var (chain, key) = Ca.Mint("/attacker");
        var own = chain[0];
        using var victimKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var req = new CertificateRequest("O=Attacker", victimKey, HashAlgorithmName.SHA256);
        req.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        req.CertificateExtensions.Add(UriSan("spiffe://example.org/admin"));
        var forged = req.Create(own.SubjectName, X509SignatureGenerator.CreateForECDsa(key), Now.AddMinutes(-1), Now.AddMinutes(30), [0x42, 0x01]);
        var r = X509SvidValidator.Validate([forged, own], Ca.Bundle, Now);
        Assert.False(r.IsValid);
        Assert.Contains("chain certificate 1", r.Error, StringComparison.Ordinal);
        // Without presenting the issuer the path cannot build either.
        Assert.False(X509SvidValidator.Validate([forged], Ca.Bundle, Now).IsValid);
    }

    [Fact]
    public void Expired_leaf_is_refused()
    {
        var (chain, _) = Ca.Mint("/workload", ttl: TimeSpan.FromMinutes(30), now: Now.AddHours(-2));
        var r = X509SvidValidator.Validate(chain, Ca.Bundle, Now);
        Assert.False(r.IsValid);
        Assert.Contains("expired", r.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void Not_yet_valid_leaf_is_refused()
    {
        var (chain, _) = Ca.Mint("/workload", now: Now.AddHours(2));
        var r = X509SvidValidator.Validate(chain, Ca.Bundle, Now);
        Assert.False(r.IsValid);
        Assert.Contains("not valid before", r.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void Leaf_valid_but_ca_expired_at_validation_time_is_refused()
    {
        var (chain, _) = Ca.Mint("/workload");
        var r = X509SvidValidator.Validate(chain, Ca.Bundle, Now.AddDays(40));
        Assert.False(r.IsValid);
    }

    [Fact]
    public void Empty_bundle_distrusts_everything()
    {
        var (chain, _) = Ca.Mint("/workload");
        var r = X509SvidValidator.Validate(chain, new TrustBundle(Ca.TrustDomain, [], []), Now);
        Assert.False(r.IsValid);
        Assert.Contains("no X.509 authorities", r.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void Empty_chain_is_refused()
    {
        var r = X509SvidValidator.Validate([], Ca.Bundle, Now);
        Assert.False(r.IsValid);
        Assert.Contains("empty", r.Error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("2.5.29.15", "malformed extension")] // KeyUsage
    [InlineData("2.5.29.19", "malformed extension")] // BasicConstraints
    [InlineData("2.5.29.37", "malformed extension")] // EKU
    [InlineData("2.5.29.17", "malformed")] // SAN
    public void Malformed_extensions_are_refused_without_exceptions(string oid, string reason)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var req = new CertificateRequest("O=Attacker", key, HashAlgorithmName.SHA256);
        if (oid != "2.5.29.15")
        {
            req.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        }
        if (oid != "2.5.29.17")
        {
            req.CertificateExtensions.Add(UriSan("spiffe://example.org/w"));
        }
        req.CertificateExtensions.Add(new X509Extension(oid, [0x04, 0x03, 0xDE, 0xAD], true));
        var cert = req.Create(Ca.Root.SubjectName, X509SignatureGenerator.CreateForECDsa((ECDsa)Ca.RootKey), Now.AddHours(-1), Now.AddHours(1), [0x11, 0x22]);
        var r = Validate(cert);
        Assert.False(r.IsValid);
        Assert.Contains(reason, r.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void Second_key_usage_extension_is_refused()
    {
        // Two KeyUsage extensions: a lenient parser might read the harmless one and a TLS stack the other.
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var req = new CertificateRequest("O=Attacker", key, HashAlgorithmName.SHA256);
        req.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        // .NET will not emit a duplicate, so emit KeyUsage content under OID 2.5.29.99 and patch the OID to 2.5.29.15 (55 1D 63 → 55 1D 0F).
        req.CertificateExtensions.Add(new X509Extension("2.5.29.99", new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign, true).RawData, true));
        req.CertificateExtensions.Add(UriSan("spiffe://example.org/w"));
        var der = req.Create(Ca.Root.SubjectName, X509SignatureGenerator.CreateForECDsa((ECDsa)Ca.RootKey), Now.AddHours(-1), Now.AddHours(1), [0x11, 0x23]).RawData;
        var at = der.AsSpan().IndexOf((ReadOnlySpan<byte>)[0x06, 0x03, 0x55, 0x1D, 0x63]);
        Assert.True(at > 0);
        der[at + 4] = 0x0F;
        var cert = X509CertificateLoader.LoadCertificate(der);
        Assert.Equal(2, cert.Extensions.Count(e => e.Oid?.Value == "2.5.29.15"));
        var r = X509SvidValidator.ValidateLeaf(cert);
        Assert.False(r.IsValid);
        Assert.Contains("more than once", r.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void Leaf_from_an_intermediate_without_the_intermediate_is_refused()
    {
        var ca = new TestCa("example.org", intermediate: true);
        var (chain, _) = ca.Mint("/w");
        Assert.True(X509SvidValidator.Validate(chain, ca.Bundle, Now).IsValid);
        var r = X509SvidValidator.Validate([chain[0]], ca.Bundle, Now);
        Assert.False(r.IsValid);
        Assert.Contains("does not verify", r.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void Intermediate_whose_spiffe_id_has_a_path_is_refused()
    {
        using var interKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var req = new CertificateRequest("O=Writ, CN=sub-ca", interKey, HashAlgorithmName.SHA256);
        req.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        req.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        req.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(new PublicKey(interKey), false));
        req.CertificateExtensions.Add(UriSan("spiffe://example.org/ca"));
        var inter = req.Create(Ca.Root.SubjectName, X509SignatureGenerator.CreateForECDsa((ECDsa)Ca.RootKey), Now.AddHours(-2), Now.AddHours(2), [0x33, 0x44]);
        using var leafKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var leaf = X509SvidMinter.SignLeaf(inter, interKey, SpiffeId.Parse("spiffe://example.org/w"), new PublicKey(leafKey), Now, TimeSpan.FromMinutes(10));
        var r = X509SvidValidator.Validate([leaf, inter], Ca.Bundle, Now);
        Assert.False(r.IsValid);
        Assert.Contains("SPIFFE ID has a path", r.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void Minter_refuses_a_root_id()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        Assert.Throws<ArgumentException>(() => X509SvidMinter.SignLeaf(Ca.Root, Ca.RootKey, Ca.TrustDomain.Id, new PublicKey(key), Now, TimeSpan.FromHours(1)));
    }
}
