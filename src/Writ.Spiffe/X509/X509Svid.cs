using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Writ.Spiffe.Internal;

namespace Writ.Spiffe.X509;

/// <summary>An X.509-SVID: the ID, the chain (leaf first, then intermediates), and the leaf's private key when we hold it.</summary>
public sealed record X509Svid(SpiffeId Id, IReadOnlyList<X509Certificate2> Chain, AsymmetricAlgorithm? PrivateKey, string Hint = "")
{
    /// <summary>The leaf's NotAfter.</summary>
    public DateTimeOffset ExpiresAt => new(Leaf.NotAfter.ToUniversalTime());

    public X509Certificate2 Leaf => Chain.Count > 0 ? Chain[0] : throw new InvalidOperationException("the SVID has an empty chain");

    /// <summary>The chain as PEM, leaf first.</summary>
    public string ChainPem() => Pem.Certificates(Chain);

    /// <summary>The private key as PKCS#8 PEM ("PRIVATE KEY").</summary>
    public string PrivateKeyPem() => PemEncoding.WriteString("PRIVATE KEY", PrivateKeyPkcs8());

    /// <summary>The private key as PKCS#8 DER (what the Workload API sends).</summary>
    public byte[] PrivateKeyPkcs8() =>
        (PrivateKey ?? throw new InvalidOperationException("this SVID carries no private key")).ExportPkcs8PrivateKey();

    /// <summary>The chain as concatenated DER (what the Workload API sends).</summary>
    public byte[] ChainDer() => Chain.SelectMany(c => c.RawData).ToArray();

    /// <summary>
    /// Parses PEM certificates (leaf first) and an optional PEM private key. When <paramref name="keyPem"/> is null, a private key
    /// block inside <paramref name="chainPem"/> is used if present. The leaf must carry exactly one SPIFFE URI SAN and the key must
    /// match the leaf's public key.
    /// </summary>
    public static bool TryParsePem(string chainPem, string? keyPem, out X509Svid? svid, out string? error)
    {
        svid = null;
        var blocks = Pem.ReadBlocks(chainPem ?? "", out error);
        if (blocks is null)
        {
            return false;
        }
        var chain = new List<X509Certificate2>();
        foreach (var b in blocks.Where(b => b.Label == "CERTIFICATE"))
        {
            var cert = Pem.TryLoadCertificate(b.Data, out error);
            if (cert is null)
            {
                return false;
            }
            chain.Add(cert);
        }
        if (chain.Count == 0)
        {
            error = "no PEM CERTIFICATE block found: give the SVID chain in PEM, leaf first";
            return false;
        }
        var id = X509SvidValidator.IdOf(chain[0], out error);
        if (id is null)
        {
            return false;
        }
        AsymmetricAlgorithm? key = null;
        var keyBlocks = keyPem is null ? blocks : Pem.ReadBlocks(keyPem, out error);
        if (keyBlocks is null)
        {
            return false;
        }
        var keyBlock = keyBlocks.FirstOrDefault(b => b.Label.EndsWith("PRIVATE KEY", StringComparison.Ordinal));
        if (keyPem is not null && keyBlock.Text is null)
        {
            error = "no PEM private key block found in the key text: give the SVID's key as PEM (PKCS#8 'PRIVATE KEY')";
            return false;
        }
        if (keyBlock.Text is not null)
        {
            key = ImportPrivateKey(keyBlock.Text, out error);
            if (key is null)
            {
                return false;
            }
            var keySpki = KeyAlgorithms.Spki(KeyAlgorithms.PublicKeyOf(key));
            if (!keySpki.AsSpan().SequenceEqual(KeyAlgorithms.Spki(chain[0].PublicKey)))
            {
                key.Dispose();
                error = "the private key does not match the leaf certificate's public key: give the key the SVID was issued for";
                return false;
            }
        }
        svid = new X509Svid(id, chain, key);
        return true;
    }

    /// <summary>
    /// Parses the Workload API encoding: concatenated DER certificates (leaf first) and an optional PKCS#8 DER key (empty = none).
    /// Same rules as <see cref="TryParsePem"/>.
    /// </summary>
    public static bool TryParseDer(ReadOnlySpan<byte> chainDer, ReadOnlySpan<byte> pkcs8Key, out X509Svid? svid, out string? error)
    {
        svid = null;
        var chain = Der.SplitCertificates(chainDer, out error);
        if (chain is null)
        {
            return false;
        }
        if (chain.Count == 0)
        {
            error = "the SVID chain is empty: send the leaf certificate first";
            return false;
        }
        var id = X509SvidValidator.IdOf(chain[0], out error);
        if (id is null)
        {
            return false;
        }
        AsymmetricAlgorithm? key = null;
        if (!pkcs8Key.IsEmpty)
        {
            key = ImportPkcs8(pkcs8Key, out error);
            if (key is null)
            {
                return false;
            }
            if (!KeyAlgorithms.Spki(KeyAlgorithms.PublicKeyOf(key)).AsSpan().SequenceEqual(KeyAlgorithms.Spki(chain[0].PublicKey)))
            {
                key.Dispose();
                error = "the private key does not match the leaf certificate's public key: give the key the SVID was issued for";
                return false;
            }
        }
        svid = new X509Svid(id, chain, key);
        return true;
    }

    private static AsymmetricAlgorithm? ImportPkcs8(ReadOnlySpan<byte> pkcs8, out string? error)
    {
        error = null;
        foreach (var create in new Func<AsymmetricAlgorithm>[] { () => ECDsa.Create(), () => RSA.Create() })
        {
            var k = create();
            try
            {
                k.ImportPkcs8PrivateKey(pkcs8, out var read);
                if (read == pkcs8.Length)
                {
                    return k;
                }
            }
            catch (CryptographicException)
            {
            }
            k.Dispose();
        }
        error = "private key is not an unencrypted PKCS#8 EC or RSA key";
        return null;
    }

    private static AsymmetricAlgorithm? ImportPrivateKey(string pem, out string? error)
    {
        error = null;
        foreach (var create in new Func<AsymmetricAlgorithm>[] { () => ECDsa.Create(), () => RSA.Create() })
        {
            var k = create();
            try
            {
                k.ImportFromPem(pem);
                return k;
            }
            catch (Exception e) when (e is CryptographicException or ArgumentException)
            {
                k.Dispose();
            }
        }
        error = "private key cannot be parsed: give an unencrypted PKCS#8 EC or RSA key in PEM";
        return null;
    }
}
