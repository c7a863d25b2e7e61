using System.Diagnostics;
using System.Formats.Asn1;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Writ.Spiffe.X509;

namespace Writ.Spiffe.Tests.X509;

/// <summary>
/// The fast X.509-SVID path (per-CA DER template + one signature) against the reference <see cref="CertificateRequest"/>
/// encoder, the validator and openssl; and the fast CSR check against attackers.
/// </summary>
public sealed class FastPathTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("writ-fastpath-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    public static TheoryData<string, bool> Cases => new()
    {
        { "p256", false }, { "p256", true }, { "p384", false }, { "p384", true }, { "intermediate", true },
    };

    private static TestCa NewCa(string kind) => kind switch
    {
        "p256" => new TestCa("example.org", () => ECDsa.Create(ECCurve.NamedCurves.nistP256)),
        "p384" => new TestCa("example.org", () => ECDsa.Create(ECCurve.NamedCurves.nistP384)),
        _ => new TestCa("example.org", intermediate: true),
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void Tbs_is_byte_for_byte_what_CertificateRequest_encodes(string kind, bool withDns)
    {
        var ca = NewCa(kind);
        var rng = new Random(kind.GetHashCode(StringComparison.Ordinal) ^ (withDns ? 1 : 0));
        for (var i = 0; i < 50; i++)
        {
            using var key = i % 3 == 2 ? ECDsa.Create(ECCurve.NamedCurves.nistP384) : ECDsa.Create(ECCurve.NamedCurves.nistP256);
            var pk = new PublicKey(key);
            var id = RandomId(rng, ca.TrustDomain);
            var dns = withDns ? RandomDns(rng) : null;
            var notBefore = TestCa.Now.AddMilliseconds(rng.Next(0, 86_400_000));
            var notAfter = notBefore.AddSeconds(rng.Next(1, 86_400)).AddMilliseconds(rng.Next(0, 999));
            var serial = new byte[16];
            X509SvidMinter.RandomSerial(serial);

            var reference = X509SvidMinter.Create(ca.SigningCert, ca.SigningKey, id, pk, notBefore, notAfter, dns, serial);
            var template = X509LeafTemplate.For(ca.SigningCert, (ECDsa)ca.SigningKey);
            var tbs = template.Tbs(serial, notBefore, notAfter, pk.ExportSubjectPublicKeyInfo(), pk.EncodedKeyValue.RawData, id.ToString(), dns);

            Assert.Equal(Convert.ToHexString(TbsOf(reference.RawData)), Convert.ToHexString(tbs));
        }
    }

    [Fact]
    public void Validity_after_2049_is_GeneralizedTime_exactly_as_the_reference_writes_it()
    {
        var td = TrustDomain.Parse("example.org");
        using var caKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var ca = X509Authorities.CreateSelfSignedCa(td, caKey, new DateTimeOffset(2049, 1, 1, 0, 0, 0, TimeSpan.Zero), new DateTimeOffset(2051, 1, 1, 0, 0, 0, TimeSpan.Zero));
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var pk = new PublicKey(key);
        var id = SpiffeId.Parse("spiffe://example.org/late");
        var notBefore = new DateTimeOffset(2049, 12, 31, 23, 59, 59, 500, TimeSpan.Zero);
        var notAfter = notBefore.AddHours(1);
        var serial = new byte[16];
        X509SvidMinter.RandomSerial(serial);
        var reference = X509SvidMinter.Create(ca, caKey, id, pk, notBefore, notAfter, null, serial);
        var tbs = X509LeafTemplate.For(ca, caKey).Tbs(serial, notBefore, notAfter, pk.ExportSubjectPublicKeyInfo(), pk.EncodedKeyValue.RawData, id.ToString(), null);
        Assert.Equal(Convert.ToHexString(TbsOf(reference.RawData)), Convert.ToHexString(tbs));
        Assert.Contains("180F32303530", Convert.ToHexString(tbs), StringComparison.Ordinal);   // GeneralizedTime "2050…"
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Every_fast_path_leaf_validates_and_decodes_like_the_reference(string kind, bool withDns)
    {
        var ca = NewCa(kind);
        var rng = new Random(17);
        for (var i = 0; i < 100; i++)
        {
            using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
            var pk = new PublicKey(key);
            var id = RandomId(rng, ca.TrustDomain);
            var dns = withDns ? RandomDns(rng) : null;
            var fast = X509SvidMinter.SignLeaf(ca.SigningCert, ca.SigningKey, id, pk, TestCa.Now, TimeSpan.FromHours(1), dns);
            var slow = X509SvidMinter.SignLeafWithCertificateRequest(ca.SigningCert, ca.SigningKey, id, pk, TestCa.Now, TimeSpan.FromHours(1), dns);

            IReadOnlyList<X509Certificate2> chain = ca.Intermediate is null ? [fast] : [fast, ca.Intermediate];
            var r = X509SvidValidator.Validate(chain, ca.Bundle, TestCa.Now);
            Assert.True(r.IsValid, r.Error);
            Assert.Equal(id, r.Id);
            Assert.Equal(slow.Subject, fast.Subject);
            Assert.Equal(slow.Issuer, fast.Issuer);
            Assert.Equal(slow.NotBefore, fast.NotBefore);
            Assert.Equal(slow.NotAfter, fast.NotAfter);
            Assert.Equal(slow.SignatureAlgorithm.Value, fast.SignatureAlgorithm.Value);
            Assert.Equal(slow.PublicKey.ExportSubjectPublicKeyInfo(), fast.PublicKey.ExportSubjectPublicKeyInfo());
            Assert.Equal(
                slow.Extensions.Select(e => (e.Oid!.Value, e.Critical, Convert.ToHexString(e.RawData))),
                fast.Extensions.Select(e => (e.Oid!.Value, e.Critical, Convert.ToHexString(e.RawData))));
            Assert.Equal(16, fast.SerialNumberBytes.Length);
            Assert.NotEqual(slow.SerialNumber, fast.SerialNumber);
            // The signature really is the CA's over the TBS (not just well-formed).
            using var caPub = ca.SigningCert.GetECDsaPublicKey()!;
            var (tbs, sig) = TbsAndSignature(fast.RawData);
            Assert.True(caPub.VerifyData(tbs, sig, ca.SigningKey.KeySize == 384 ? HashAlgorithmName.SHA384 : HashAlgorithmName.SHA256,
                DSASignatureFormat.Rfc3279DerSequence));
        }
    }

    [Fact]
    public void A_tampered_fast_path_leaf_is_refused_by_the_validator()
    {
        // The control for the test above: the validator checks the signature, so a changed byte is caught.
        var ca = NewCa("p256");
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var leaf = X509SvidMinter.SignLeaf(ca.Root, ca.RootKey, SpiffeId.Parse("spiffe://example.org/a"), new PublicKey(key), TestCa.Now, TimeSpan.FromHours(1));
        var der = leaf.RawData;
        var at = der.AsSpan().IndexOf("spiffe://example.org/a"u8);
        der[at + 21] = (byte)'b';   // spiffe://example.org/b: another identity, same signature
        var forged = X509CertificateLoader.LoadCertificate(der);
        var r = X509SvidValidator.Validate([forged], ca.Bundle, TestCa.Now);
        Assert.False(r.IsValid);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Openssl_verifies_and_reads_every_fast_path_leaf(string kind, bool withDns)
    {
        var ca = NewCa(kind);
        var rng = new Random(99);
        var root = Write("root.pem", ca.Root);
        var leaves = new List<(string Path, SpiffeId Id, string[]? Dns)>();
        for (var i = 0; i < 20; i++)
        {
            using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
            var id = RandomId(rng, ca.TrustDomain);
            var dns = withDns ? RandomDns(rng) : null;
            var leaf = X509SvidMinter.SignLeaf(ca.SigningCert, ca.SigningKey, id, new PublicKey(key), TestCa.Now, TimeSpan.FromHours(1), dns);
            leaves.Add((Write($"leaf{i}.pem", leaf), id, dns));
        }
        var at = TestCa.Now.ToUnixTimeSeconds().ToString(System.Globalization.CultureInfo.InvariantCulture);
        foreach (var purpose in new[] { "sslclient", "sslserver" })
        {
            List<string> args = ["verify", "-attime", at, "-purpose", purpose, "-x509_strict", "-CAfile", root];
            if (ca.Intermediate is not null)
            {
                args.AddRange(["-untrusted", Write("intermediate.pem", ca.Intermediate)]);
            }
            args.AddRange(leaves.Select(l => l.Path));
            var (code, output) = OpenSsl(args);
            Assert.True(code == 0, output);
            Assert.Equal(leaves.Count, output.Split('\n').Count(l => l.EndsWith(": OK", StringComparison.Ordinal)));
        }
        foreach (var (path, id, dns) in leaves.Take(5))
        {
            var (code, text) = OpenSsl(["x509", "-noout", "-text", "-in", path]);
            Assert.Equal(0, code);
            Assert.Contains("URI:" + id, text, StringComparison.Ordinal);
            Assert.Single(text.Split("URI:").Skip(1));
            foreach (var d in dns ?? [])
            {
                Assert.Contains("DNS:" + d, text, StringComparison.Ordinal);
            }
            Assert.Contains("X509v3 Key Usage: critical", text, StringComparison.Ordinal);
            Assert.Contains("X509v3 Basic Constraints: critical", text, StringComparison.Ordinal);
            Assert.Contains("CA:FALSE", text, StringComparison.Ordinal);
            Assert.Contains("TLS Web Server Authentication, TLS Web Client Authentication", text, StringComparison.Ordinal);
            Assert.Contains("X509v3 Subject Key Identifier", text, StringComparison.Ordinal);
            Assert.Contains("X509v3 Authority Key Identifier", text, StringComparison.Ordinal);
            Assert.Contains(ca.SigningKey.KeySize == 384 ? "ecdsa-with-SHA384" : "ecdsa-with-SHA256", text, StringComparison.Ordinal);
        }
    }

    [Theory]
    [InlineData("p256")]
    [InlineData("p384")]
    [InlineData("rsa2048")]
    public void SignLeafDer_is_a_valid_leaf_with_the_same_profile(string kind)
    {
        var ca = kind switch
        {
            "rsa2048" => new TestCa("example.org", () => RSA.Create(2048)),
            _ => NewCa(kind),
        };
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var id = SpiffeId.Parse("spiffe://example.org/der");
        var now = TestCa.Now.AddMilliseconds(730);
        var signed = X509SvidMinter.SignLeafDer(ca.Root, ca.RootKey, id, new PublicKey(key), now, TimeSpan.FromHours(1), ["der.example.org"]);
        var leaf = X509CertificateLoader.LoadCertificate(signed.Der);
        Assert.Equal(leaf.SerialNumber, signed.SerialNumber);
        Assert.Equal(leaf.NotAfter.ToUniversalTime(), signed.NotAfter.UtcDateTime);
        Assert.Equal(leaf.NotBefore.ToUniversalTime(), signed.NotBefore.UtcDateTime);
        Assert.Equal(TimeSpan.Zero, signed.NotAfter.Offset);
        var r = X509SvidValidator.Validate([leaf], ca.Bundle, TestCa.Now);
        Assert.True(r.IsValid, r.Error);
        Assert.Equal(id, r.Id);
        var reference = X509SvidMinter.SignLeafWithCertificateRequest(ca.Root, ca.RootKey, id, new PublicKey(key), TestCa.Now, TimeSpan.FromHours(1), ["der.example.org"]);
        Assert.Equal(
            reference.Extensions.Select(e => (e.Oid!.Value, e.Critical, Convert.ToHexString(e.RawData))),
            leaf.Extensions.Select(e => (e.Oid!.Value, e.Critical, Convert.ToHexString(e.RawData))));
    }

    [Fact]
    public void Concurrent_issuance_with_one_ca_key_gives_valid_distinct_leaves()
    {
        var ca = NewCa("p256");
        var leaves = new X509Certificate2[400];
        Parallel.For(0, leaves.Length, i =>
        {
            using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
            leaves[i] = X509SvidMinter.SignLeaf(ca.Root, ca.RootKey, SpiffeId.Parse($"spiffe://example.org/w/{i}"), new PublicKey(key), TestCa.Now, TimeSpan.FromHours(1));
        });
        for (var i = 0; i < leaves.Length; i++)
        {
            var r = X509SvidValidator.Validate([leaves[i]], ca.Bundle, TestCa.Now);
            Assert.True(r.IsValid, r.Error);
            Assert.Equal($"spiffe://example.org/w/{i}", r.Id!.ToString());
        }
        Assert.Equal(leaves.Length, leaves.Select(l => l.SerialNumber).Distinct().Count());
    }

    [Fact]
    public void A_new_key_for_the_same_ca_certificate_is_used_not_the_cached_one()
    {
        var ca = NewCa("p256");
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var id = SpiffeId.Parse("spiffe://example.org/w");
        var good = X509SvidMinter.SignLeaf(ca.Root, ca.RootKey, id, new PublicKey(key), TestCa.Now, TimeSpan.FromHours(1));
        Assert.True(X509SvidValidator.Validate([good], ca.Bundle, TestCa.Now).IsValid);
        using var other = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var bad = X509SvidMinter.SignLeaf(ca.Root, other, id, new PublicKey(key), TestCa.Now, TimeSpan.FromHours(1));
        Assert.False(X509SvidValidator.Validate([bad], ca.Bundle, TestCa.Now).IsValid);
    }

    [Fact]
    public void NotAfter_is_capped_at_the_ca_and_NotBefore_backdated_on_the_fast_path()
    {
        var ca = NewCa("p256");
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var leaf = X509SvidMinter.SignLeaf(ca.Root, ca.RootKey, SpiffeId.Parse("spiffe://example.org/w"), new PublicKey(key), TestCa.Now, TimeSpan.FromDays(365));
        Assert.Equal(ca.Root.NotAfter, leaf.NotAfter);
        Assert.Equal((TestCa.Now - X509SvidMinter.Backdate).UtcDateTime, leaf.NotBefore.ToUniversalTime());
    }

    [Fact]
    public void Non_ascii_dns_name_is_refused_on_the_fast_path()
    {
        var ca = NewCa("p256");
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        Assert.Throws<ArgumentException>(() => X509SvidMinter.SignLeaf(ca.Root, ca.RootKey, SpiffeId.Parse("spiffe://example.org/w"),
            new PublicKey(key), TestCa.Now, TimeSpan.FromHours(1), ["bücher.example"]));
    }

    // ---- CSR fast check ----

    [Theory]
    [InlineData(256)]
    [InlineData(384)]
    public void Fast_csr_check_accepts_our_csrs_and_returns_their_key(int bits)
    {
        using var key = ECDsa.Create(bits == 256 ? ECCurve.NamedCurves.nistP256 : ECCurve.NamedCurves.nistP384);
        var der = Csr.Create(key);
        Assert.Equal(CsrFastPath.Result.Valid, CsrFastPath.TryVerify(der, out var pk));
        Assert.Equal(key.ExportSubjectPublicKeyInfo(), pk!.ExportSubjectPublicKeyInfo());
    }

    [Theory]
    [InlineData(256)]
    [InlineData(384)]
    public void OpenSsl_import_gives_a_key_that_verifies_only_its_own_signatures(int bits)
    {
        Assert.SkipUnless(OperatingSystem.IsLinux(), "the OpenSSL import is for Linux");
        using var key = ECDsa.Create(bits == 256 ? ECCurve.NamedCurves.nistP256 : ECCurve.NamedCurves.nistP384);
        var p = key.ExportParameters(false);
        byte[] point = [0x04, .. p.Q.X!, .. p.Q.Y!];
        using var imported = OpenSslEcImport.TryImport(point, bits == 384);
        Assert.NotNull(imported);   // on this machine .NET runs on OpenSSL 3: the fast import must be in use
        Assert.True(OpenSslEcImport.Enabled);
        Assert.Equal(bits, imported.KeySize);
        var data = "message"u8.ToArray();
        var sig = key.SignData(data, HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence);
        Assert.True(imported.VerifyData(data, sig, HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence));
        Assert.False(imported.VerifyData("massage"u8, sig, HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence));
        using var other = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        Assert.False(imported.VerifyData(data, other.SignData(data, HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence),
            HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence));
        Assert.Equal(key.ExportSubjectPublicKeyInfo(), imported.ExportSubjectPublicKeyInfo());
    }

    [Fact]
    public void OpenSsl_import_refuses_points_off_the_curve_and_odd_encodings()
    {
        Assert.SkipUnless(OperatingSystem.IsLinux(), "the OpenSSL import is for Linux");
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var p = key.ExportParameters(false);
        byte[] point = [0x04, .. p.Q.X!, .. p.Q.Y!];
        point[^1] ^= 0x01;
        Assert.Throws<CryptographicException>(() => OpenSslEcImport.TryImport(point, p384: false));
        byte[] zero = [0x04, .. new byte[64]];
        Assert.Throws<CryptographicException>(() => OpenSslEcImport.TryImport(zero, p384: false));
        // Compressed points and wrong lengths are left to .NET's import.
        byte[] compressed = [0x02, .. p.Q.X!];
        Assert.Null(OpenSslEcImport.TryImport(compressed, p384: false));
        point[^1] ^= 0x01;
        Assert.Null(OpenSslEcImport.TryImport(point, p384: true));
    }

    [Fact]
    public void Fast_csr_check_refuses_a_swapped_key()
    {
        using var attacker = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var victim = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var der = Csr.Create(attacker);
        var at = der.AsSpan().IndexOf(attacker.ExportSubjectPublicKeyInfo());
        victim.ExportSubjectPublicKeyInfo().CopyTo(der, at);
        Assert.Equal(CsrFastPath.Result.BadSignature, CsrFastPath.TryVerify(der, out var pk));
        Assert.Null(pk);
        Assert.False(Csr.TryVerify(der, out _, out _));
    }

    [Fact]
    public void Fast_csr_check_refuses_a_point_off_the_curve()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var der = Csr.Create(key);
        var spki = key.ExportSubjectPublicKeyInfo();
        var at = der.AsSpan().IndexOf(spki);
        der[at + spki.Length - 1] ^= 0x01;   // last byte of Y: no longer on P-256
        Assert.Equal(CsrFastPath.Result.BadKey, CsrFastPath.TryVerify(der, out _));
        Assert.False(Csr.TryVerify(der, out _, out var error));
        Assert.DoesNotContain("Exception", error, StringComparison.Ordinal);
        // OpenSSL and .NET agree the point is bad, so the fast import stays in use.
        Assert.True(OpenSslEcImport.Enabled || !OperatingSystem.IsLinux());
    }

    [Fact]
    public void Fast_csr_check_refuses_a_signature_from_another_csr()
    {
        using var a = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var b = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var da = Csr.Create(a);
        var db = Csr.Create(b);
        // Graft b's signature algorithm + signature after a's request info.
        var (criA, _) = SplitCsr(da);
        var (criB, tailB) = SplitCsr(db);
        var w = new AsnWriter(AsnEncodingRules.DER);
        using (w.PushSequence())
        {
            w.WriteEncodedValue(criA);
            w.WriteEncodedValue(tailB[0]);
            w.WriteEncodedValue(tailB[1]);
        }
        Assert.NotEqual(criA, criB);
        Assert.False(Csr.TryVerify(w.Encode(), out _, out _));
    }

    [Fact]
    public void Csrs_the_fast_check_does_not_handle_take_the_general_path()
    {
        using var rsa = RSA.Create(2048);
        Assert.Equal(CsrFastPath.Result.NotHandled, CsrFastPath.TryVerify(Csr.Create(rsa), out _));
        Assert.True(Csr.TryVerify(Csr.Create(rsa), out _, out var e1), e1);
        using var p521 = ECDsa.Create(ECCurve.NamedCurves.nistP521);
        Assert.Equal(CsrFastPath.Result.NotHandled, CsrFastPath.TryVerify(Csr.Create(p521), out _));
        Assert.False(Csr.TryVerify(Csr.Create(p521), out _, out _));
        // A request with attributes (an extension request) is checked by the general path.
        using var ec = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var req = new CertificateRequest("O=x", ec, HashAlgorithmName.SHA256);
        req.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, false));
        var withAttrs = req.CreateSigningRequest();
        Assert.Equal(CsrFastPath.Result.NotHandled, CsrFastPath.TryVerify(withAttrs, out _));
        Assert.True(Csr.TryVerify(withAttrs, out _, out var e2), e2);
        // Trailing bytes are refused, not ignored.
        var ok = Csr.Create(ec);
        Assert.False(Csr.TryVerify([.. ok, 0x00], out _, out var e3));
        Assert.Contains("trailing", e3, StringComparison.Ordinal);
    }

    private static (byte[] Cri, byte[][] Tail) SplitCsr(byte[] der)
    {
        var seq = new AsnReader(der, AsnEncodingRules.DER).ReadSequence();
        return (seq.ReadEncodedValue().ToArray(), [seq.ReadEncodedValue().ToArray(), seq.ReadEncodedValue().ToArray()]);
    }

    private static byte[] TbsOf(byte[] cert) => TbsAndSignature(cert).Tbs;

    private static (byte[] Tbs, byte[] Signature) TbsAndSignature(byte[] cert)
    {
        var seq = new AsnReader(cert, AsnEncodingRules.DER).ReadSequence();
        var tbs = seq.ReadEncodedValue().ToArray();
        seq.ReadSequence();
        var sig = seq.ReadBitString(out _);
        return (tbs, sig);
    }

    private static SpiffeId RandomId(Random rng, TrustDomain td)
    {
        const string chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";
        var segments = rng.Next(1, 6);
        var path = string.Concat(Enumerable.Range(0, segments).Select(_ =>
            "/" + new string(Enumerable.Range(0, rng.Next(1, rng.Next(2) == 0 ? 12 : 140)).Select(_ => chars[rng.Next(chars.Length)]).ToArray())));
        return SpiffeId.Parse(td.IdString + path);
    }

    private static string[] RandomDns(Random rng) =>
        Enumerable.Range(0, rng.Next(1, 4)).Select(i => $"svc{rng.Next(100000)}-{i}.ns.example.org").ToArray();

    private string Write(string name, X509Certificate2 cert) => OpenSslCli.WritePem(_dir, name, cert);

    private static (int Code, string Output) OpenSsl(IEnumerable<string> args) => OpenSslCli.Run(args);
}
