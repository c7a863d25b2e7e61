using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Writ.Server.Ca;
using Writ.Server.Keys;
using Writ.Spiffe.Jwt;
using Writ.Spiffe.X509;
using static Writ.Server.Tests.Ca.CaTest;

namespace Writ.Server.Tests.Ca;

/// <summary>Every CA and JWT key type yields credentials that our validators and real openssl accept.</summary>
public sealed class CaKeyTypeTests
{
    [Theory]
    [InlineData(KeyType.EcP256)]
    [InlineData(KeyType.EcP384)]
    [InlineData(KeyType.Rsa2048)]
    public async Task X509_leaves_of_each_ca_key_type_pass_the_validator_and_openssl_verify(KeyType type)
    {
        await using var h = await CaHarness.CreateAsync();
        var ca = await h.StartCaAsync(new CaOptions { KeyType = type }, new MemoryKeyManager());
        var root = Assert.Single(ca.Bundle.X509Authorities);
        Assert.Equal(type == KeyType.Rsa2048 ? "1.2.840.113549.1.1.1" : "1.2.840.10045.2.1", root.PublicKey.Oid.Value);
        if (type != KeyType.Rsa2048)
        {
            using var ec = root.GetECDsaPublicKey()!;
            Assert.Equal(type == KeyType.EcP256 ? 256 : 384, ec.KeySize);
        }

        var now = h.Time.GetUtcNow();
        var chain = ca.SignX509Svid(CaHarness.Workload, WorkloadKey(), TimeSpan.FromHours(1), ["svc.example.org"]);
        var v = X509SvidValidator.Validate(chain, ca.Bundle, now);
        Assert.True(v.IsValid, v.Error);
        Assert.Equal(CaHarness.Workload, v.Id);

        var bundlePem = Path.Combine(h.Dir, "bundle.pem");
        var leafPem = Path.Combine(h.Dir, "leaf.pem");
        await File.WriteAllTextAsync(bundlePem, ca.Bundle.ToPem(), Ct);
        await File.WriteAllTextAsync(leafPem, chain[0].ExportCertificatePem(), Ct);
        var ok = await Proc.OpensslVerifyAsync(now, bundlePem, null, leafPem);
        Assert.True(ok.Exit == 0, ok.Output);
        Assert.Contains(": OK", ok.Output, StringComparison.Ordinal);

        // The same openssl call refuses a leaf from another CA, and refuses ours after the CA expired.
        await using var other = await CaHarness.CreateAsync();
        var stranger = await other.StartCaAsync(new CaOptions { KeyType = type }, new MemoryKeyManager());
        var strangerPem = Path.Combine(h.Dir, "stranger.pem");
        await File.WriteAllTextAsync(strangerPem, stranger.SignX509Svid(CaHarness.Workload, WorkloadKey(), TimeSpan.FromHours(1))[0].ExportCertificatePem(), Ct);
        Assert.NotEqual(0, (await Proc.OpensslVerifyAsync(now, bundlePem, null, strangerPem)).Exit);
        Assert.NotEqual(0, (await Proc.OpensslVerifyAsync(now + TimeSpan.FromDays(2), bundlePem, null, leafPem)).Exit);
    }

    [Theory]
    [InlineData(KeyType.EcP256, "ES256")]
    [InlineData(KeyType.EcP384, "ES384")]
    [InlineData(KeyType.Rsa2048, "RS256")]
    public async Task Jwt_svids_of_each_key_type_pass_the_validator(KeyType type, string alg)
    {
        await using var h = await CaHarness.CreateAsync();
        var ca = await h.StartCaAsync(new CaOptions { JwtKeyType = type }, new MemoryKeyManager());
        string[] aud = ["spiffe://example.org/db"];
        var (token, exp) = ca.MintJwtSvid(CaHarness.Workload, aud, TimeSpan.FromMinutes(5));
        Assert.Equal(alg, AlgOf(token));
        var v = JwtSvidValidator.Validate(token, ca.Bundle, aud, h.Time.GetUtcNow());
        Assert.True(v.IsValid, v.Error);
        Assert.Equal(CaHarness.Workload, v.Svid!.Id);
        Assert.Equal(exp, v.Svid.ExpiresAt);

        // The bundle's JWKS round-trips through the SPIFFE bundle format a relying party would fetch.
        var parsed = Writ.Spiffe.Bundles.TrustBundle.ParseSpiffeJson(CaHarness.Td, ca.Bundle.ToSpiffeJson());
        Assert.True(JwtSvidValidator.Validate(token, parsed, aud, h.Time.GetUtcNow()).IsValid);

        // Attacker: a token with the right kid but signed by another key of the same type is refused.
        var forger = new JwtSigningKey(KidOf(token), KeyTypes.Generate(type));
        var forged = JwtSvidMinter.Mint(forger, CaHarness.Workload, aud, h.Time.GetUtcNow(), exp);
        Assert.False(JwtSvidValidator.Validate(forged, ca.Bundle, aud, h.Time.GetUtcNow()).IsValid);
        Assert.False(JwtSvidValidator.Validate(token, ca.Bundle, ["spiffe://example.org/other"], h.Time.GetUtcNow()).IsValid);
    }

    [Fact]
    public async Task Changing_key_types_takes_effect_at_the_next_rotation_with_old_and_new_credentials_valid()
    {
        var ttl = TimeSpan.FromHours(6);
        await using var h = await CaHarness.CreateAsync();
        var ec = await h.StartCaAsync(new CaOptions { CaTtl = ttl, JwtKeyTtl = ttl }, new DiskKeyManager(h.KeyPath));
        var ecLeaf = ec.SignX509Svid(CaHarness.Workload, WorkloadKey(), TimeSpan.FromHours(24));
        var (ecToken, _) = ec.MintJwtSvid(CaHarness.Workload, ["a"], TimeSpan.FromHours(24));
        Assert.Equal("ES256", AlgOf(ecToken));

        // The operator switches to RSA and restarts: the current authorities stay, their successors are RSA.
        var rsaOptions = new CaOptions { CaTtl = ttl, JwtKeyTtl = ttl, KeyType = KeyType.Rsa2048, JwtKeyType = KeyType.Rsa2048 };
        var ca = await h.StartCaAsync(rsaOptions, new DiskKeyManager(h.KeyPath));
        Assert.Equal("ES256", AlgOf(ca.MintJwtSvid(CaHarness.Workload, ["a"], TimeSpan.FromMinutes(5)).Token));
        foreach (var at in new[] { ttl / 2, ttl * 5 / 6 })
        {
            h.Time.SetUtcNow(CaHarness.Start + at);
            await ca.RotateAsync(Ct);
        }
        var now = h.Time.GetUtcNow();
        var rsaLeaf = ca.SignX509Svid(CaHarness.Workload, WorkloadKey(), TimeSpan.FromMinutes(30));
        Assert.Equal("1.2.840.113549.1.1.1", IssuerIn(ca.Bundle, rsaLeaf[0])!.PublicKey.Oid.Value);
        var (rsaToken, _) = ca.MintJwtSvid(CaHarness.Workload, ["a"], TimeSpan.FromMinutes(5));
        Assert.Equal("RS256", AlgOf(rsaToken));

        Assert.True(X509SvidValidator.Validate(rsaLeaf, ca.Bundle, now).IsValid);
        Assert.True(X509SvidValidator.Validate(ecLeaf, ca.Bundle, now).IsValid);
        Assert.True(JwtSvidValidator.Validate(rsaToken, ca.Bundle, ["a"], now).IsValid);
        Assert.True(JwtSvidValidator.Validate(ecToken, ca.Bundle, ["a"], now).IsValid);
        var bundlePem = Path.Combine(h.Dir, "bundle.pem");
        var leafPem = Path.Combine(h.Dir, "rsa-leaf.pem");
        await File.WriteAllTextAsync(bundlePem, ca.Bundle.ToPem(), Ct);
        await File.WriteAllTextAsync(leafPem, rsaLeaf[0].ExportCertificatePem(), Ct);
        var ok = await Proc.OpensslVerifyAsync(now, bundlePem, null, leafPem);
        Assert.True(ok.Exit == 0, ok.Output);
    }

    [Fact]
    public async Task An_attacker_ca_with_a_copied_subject_does_not_pass()
    {
        // Same subject and SPIFFE ID as the real CA, different key: issuer-name matching alone must not be enough.
        await using var h = await CaHarness.CreateAsync();
        var ca = await h.StartCaAsync(new CaOptions(), new MemoryKeyManager());
        var real = Assert.Single(ca.Bundle.X509Authorities);
        using var evilKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var req = new CertificateRequest(real.SubjectName, evilKey, HashAlgorithmName.SHA256);
        foreach (var ext in real.Extensions.Where(e => e is not X509SubjectKeyIdentifierExtension and not X509AuthorityKeyIdentifierExtension))
        {
            req.CertificateExtensions.Add(ext);
        }
        req.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(req.PublicKey, false));
        var now = h.Time.GetUtcNow();
        using var evilCa = req.CreateSelfSigned(now - TimeSpan.FromMinutes(1), now + TimeSpan.FromHours(1));
        var forged = X509SvidMinter.SignLeaf(evilCa, evilKey, CaHarness.Workload, WorkloadKey(), now, TimeSpan.FromMinutes(10));

        Assert.False(X509SvidValidator.Validate([forged], ca.Bundle, now).IsValid);
        var bundlePem = Path.Combine(h.Dir, "bundle.pem");
        var forgedPem = Path.Combine(h.Dir, "forged.pem");
        await File.WriteAllTextAsync(bundlePem, ca.Bundle.ToPem(), Ct);
        await File.WriteAllTextAsync(forgedPem, forged.ExportCertificatePem(), Ct);
        Assert.NotEqual(0, (await Proc.OpensslVerifyAsync(now, bundlePem, null, forgedPem)).Exit);
    }
}
