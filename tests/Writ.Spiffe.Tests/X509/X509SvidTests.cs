using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Writ.Spiffe.Bundles;
using Writ.Spiffe.X509;

namespace Writ.Spiffe.Tests.X509;

public sealed class X509SvidTests
{
    private static readonly DateTimeOffset Now = TestCa.Now;

    public static TheoryData<string> KeyKinds => ["p256", "p384", "rsa2048"];

    private static Func<AsymmetricAlgorithm> Factory(string kind) => kind switch
    {
        "p256" => () => ECDsa.Create(ECCurve.NamedCurves.nistP256),
        "p384" => () => ECDsa.Create(ECCurve.NamedCurves.nistP384),
        "rsa2048" => () => RSA.Create(2048),
        _ => throw new ArgumentOutOfRangeException(nameof(kind)),
    };

    [Theory]
    [MemberData(nameof(KeyKinds))]
    public void Minted_leaf_validates(string kind)
    {
        var ca = new TestCa("example.org", Factory(kind));
        var (chain, _) = ca.Mint("/workload");
        var result = X509SvidValidator.Validate(chain, ca.Bundle, Now);
        Assert.True(result.IsValid, result.Error);
        Assert.Equal(SpiffeId.Parse("spiffe://example.org/workload"), result.Id);
    }

    [Fact]
    public void Minted_leaf_through_intermediate_validates()
    {
        var ca = new TestCa("example.org", intermediate: true);
        var (chain, _) = ca.Mint("/workload");
        var result = X509SvidValidator.Validate(chain, ca.Bundle, Now);
        Assert.True(result.IsValid, result.Error);
    }

    [Fact]
    public void Leaf_lifetime_is_backdated_and_capped_by_the_ca()
    {
        var ca = new TestCa("example.org");
        var (chain, _) = ca.Mint("/w", ttl: TimeSpan.FromDays(365));
        var leaf = chain[0];
        Assert.Equal(Now.AddSeconds(-10), new DateTimeOffset(leaf.NotBefore.ToUniversalTime()));
        Assert.Equal(ca.Root.NotAfter, leaf.NotAfter);
        Assert.False(leaf.HasPrivateKey);
        Assert.False(ca.Root.HasPrivateKey);
    }

    [Fact]
    public void Serials_are_random_and_positive()
    {
        var ca = new TestCa("example.org");
        var a = ca.Mint("/w").Chain[0].SerialNumberBytes.ToArray();
        var b = ca.Mint("/w").Chain[0].SerialNumberBytes.ToArray();
        Assert.NotEqual(a, b);
        Assert.True(a.Length >= 9); // ≥ 64 random bits plus a positive sign
    }

    [Fact]
    public void Svid_pem_round_trip_keeps_key_and_chain()
    {
        var ca = new TestCa("example.org", intermediate: true);
        var (chain, key) = ca.Mint("/w");
        var svid = new X509Svid(SpiffeId.Parse("spiffe://example.org/w"), chain, key);
        Assert.True(X509Svid.TryParsePem(svid.ChainPem(), svid.PrivateKeyPem(), out var back, out var error), error);
        Assert.Equal(svid.Id, back!.Id);
        Assert.Equal(2, back.Chain.Count);
        Assert.Equal(svid.PrivateKeyPkcs8(), back.PrivateKeyPkcs8());
        Assert.Equal(new DateTimeOffset(chain[0].NotAfter.ToUniversalTime()), back.ExpiresAt);
    }

    [Fact]
    public void Svid_pem_with_someone_elses_key_is_refused()
    {
        var ca = new TestCa("example.org");
        var (chain, _) = ca.Mint("/w");
        using var other = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var pem = new X509Svid(SpiffeId.Parse("spiffe://example.org/w"), chain, other).PrivateKeyPem();
        Assert.False(X509Svid.TryParsePem(new X509Svid(SpiffeId.Parse("spiffe://example.org/w"), chain, null).ChainPem(), pem, out _, out var error));
        Assert.Contains("does not match", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Csr_round_trip_gives_the_subject_key()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var der = Csr.Create(key);
        Assert.True(Csr.TryVerify(der, out var pk, out var error), error);
        Assert.Equal(new PublicKey(key).ExportSubjectPublicKeyInfo(), pk.ExportSubjectPublicKeyInfo());
    }

    [Fact]
    public void Chain_to_another_trust_domains_root_is_refused()
    {
        var ours = new TestCa("example.org");
        var theirs = new TestCa("evil.org");
        var (chain, _) = ours.Mint("/w");
        var bundles = new BundleSet([theirs.Bundle]);
        var result = X509SvidValidator.Validate(chain, bundles, Now);
        Assert.False(result.IsValid);
        Assert.Contains("no trust bundle for trust domain 'example.org'", result.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void Bundle_with_old_and_new_roots_validates_leaves_from_both()
    {
        // CA rotation: the bundle carries both authorities while leaves from each are in circulation.
        var oldCa = new TestCa("example.org");
        var newCa = new TestCa("example.org");
        var bundle = new TrustBundle(oldCa.TrustDomain, [oldCa.Root, newCa.Root], []);
        Assert.True(X509SvidValidator.Validate(oldCa.Mint("/a").Chain, bundle, Now).IsValid);
        Assert.True(X509SvidValidator.Validate(newCa.Mint("/b").Chain, bundle, Now).IsValid);
        Assert.NotEqual(oldCa.Root.Subject, newCa.Root.Subject);
    }

    [Fact]
    public void Intermediate_is_capped_by_upstream_and_points_at_its_key()
    {
        var ca = new TestCa("example.org");
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var inter = X509Authorities.CreateIntermediateCa(ca.TrustDomain, key, ca.Root, ca.RootKey, Now, Now.AddYears(5));
        Assert.Equal(ca.Root.NotAfter, inter.NotAfter);
        Assert.False(inter.HasPrivateKey);
        var aki = inter.Extensions.OfType<X509AuthorityKeyIdentifierExtension>().Single();
        var rootSki = ca.Root.Extensions.OfType<X509SubjectKeyIdentifierExtension>().Single();
        Assert.Equal(Convert.FromHexString(rootSki.SubjectKeyIdentifier!), aki.KeyIdentifier!.Value.ToArray());
        Assert.Equal(ca.Root.SubjectName.RawData, inter.IssuerName.RawData);
        Assert.NotEqual(inter.SubjectName.RawData, inter.IssuerName.RawData);
        var bc = inter.Extensions.OfType<X509BasicConstraintsExtension>().Single();
        Assert.True(bc.CertificateAuthority && bc.Critical);
        using var wrong = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        Assert.Throws<ArgumentException>(() => X509Authorities.CreateIntermediateCa(ca.TrustDomain, key, ca.Root, wrong, Now, Now.AddDays(1)));
    }

    [Fact]
    public void Leaf_from_a_p384_ca_is_signed_with_sha384_and_dns_sans_are_kept()
    {
        var ca = new TestCa("example.org", () => ECDsa.Create(ECCurve.NamedCurves.nistP384));
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var leaf = X509SvidMinter.SignLeaf(ca.Root, ca.RootKey, SpiffeId.Parse("spiffe://example.org/web"), new PublicKey(key), Now,
            TimeSpan.FromHours(1), ["web.example.org", "web"]);
        Assert.Equal("1.2.840.10045.4.3.3", leaf.SignatureAlgorithm.Value); // ecdsa-with-SHA384
        var san = leaf.Extensions.OfType<X509SubjectAlternativeNameExtension>().Single();
        Assert.Equal(["web.example.org", "web"], san.EnumerateDnsNames());
        Assert.True(X509SvidValidator.Validate([leaf], ca.Bundle, Now).IsValid);
    }
}
