using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Writ.Spiffe.X509;

namespace Writ.Spiffe.Tests.X509;

public sealed class CsrTests
{
    [Theory]
    [InlineData("p256")]
    [InlineData("p384")]
    [InlineData("rsa2048")]
    public void Supported_keys_verify(string kind)
    {
        using AsymmetricAlgorithm key = kind switch
        {
            "p256" => ECDsa.Create(ECCurve.NamedCurves.nistP256),
            "p384" => ECDsa.Create(ECCurve.NamedCurves.nistP384),
            _ => RSA.Create(2048),
        };
        Assert.True(Csr.TryVerify(Csr.Create(key), out var pk, out var error), error);
        var expected = key is ECDsa e ? new PublicKey(e) : new PublicKey((RSA)key);
        Assert.Equal(expected.ExportSubjectPublicKeyInfo(), pk.ExportSubjectPublicKeyInfo());
    }

    [Fact]
    public void Weak_or_unsupported_keys_are_refused()
    {
        using var rsa1024 = RSA.Create(1024);
        Assert.False(Csr.TryVerify(Csr.Create(rsa1024), out _, out var e1));
        Assert.Contains("2048", e1, StringComparison.Ordinal);
        using var p521 = ECDsa.Create(ECCurve.NamedCurves.nistP521);
        Assert.False(Csr.TryVerify(Csr.Create(p521), out _, out var e2));
        Assert.Contains("P-256 or P-384", e2, StringComparison.Ordinal);
    }

    [Fact]
    public void Csr_whose_key_was_swapped_fails_proof_of_possession()
    {
        // An attacker takes someone else's public key and puts it in a CSR they signed with their own key.
        using var attacker = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var victim = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var der = Csr.Create(attacker);
        var a = attacker.ExportSubjectPublicKeyInfo();
        var v = victim.ExportSubjectPublicKeyInfo();
        var at = der.AsSpan().IndexOf(a);
        Assert.True(at > 0);
        v.CopyTo(der, at);
        Assert.False(Csr.TryVerify(der, out var pk, out var error));
        Assert.Null(pk);
        Assert.Contains("signature does not verify", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Tampered_signature_is_refused()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var der = Csr.Create(key);
        der[^5] ^= 0x01;
        Assert.False(Csr.TryVerify(der, out _, out _));
    }

    [Fact]
    public void Trailing_data_is_refused()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        Assert.False(Csr.TryVerify([.. Csr.Create(key), 0x00], out _, out var error));
        Assert.Contains("trailing", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Garbage_never_throws()
    {
        Assert.False(Csr.TryVerify([], out _, out _));
        Assert.False(Csr.TryVerify(new byte[100_000], out _, out _));
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var good = Csr.Create(key);
        var rng = new Random(42);
        for (var i = 0; i < 300; i++)
        {
            var bytes = new byte[rng.Next(1, 400)];
            rng.NextBytes(bytes);
            Assert.False(Csr.TryVerify(bytes, out _, out var e));
            Assert.False(string.IsNullOrEmpty(e));
            // Truncations and single-byte mutations of a real CSR.
            Assert.False(Csr.TryVerify(good.AsSpan(0, rng.Next(0, good.Length)), out _, out _));
            var mutated = good.ToArray();
            mutated[rng.Next(mutated.Length)] ^= (byte)rng.Next(1, 256);
            _ = Csr.TryVerify(mutated, out _, out _); // may rarely still verify (e.g. an unused bit); it must just not throw
        }
    }
}
