using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Writ.Protocol.X509Pop;

/// <summary>
/// The x509pop proof of possession, shared by the agent (signs) and the server (verifies): a signature by the node
/// certificate's key over <c>"writ-x509pop" || nonce || SHA-256(agent CSR DER)</c>. The domain prefix keeps the signature
/// from meaning anything to other protocols that trust the same key; the nonce makes it good for one attempt; the CSR
/// digest binds it to the agent key the SVID is issued for. Algorithms: ECDSA P-256/SHA-256, ECDSA P-384/SHA-384 (DER
/// signature), RSA ≥ 2048 bits with RSASSA-PSS/SHA-256.
/// </summary>
public static class X509PopProof
{
    public const int NonceSize = 32;

    public const int MinRsaBits = 2048;

    private static ReadOnlySpan<byte> Domain => "writ-x509pop"u8;

    /// <summary>What is signed, before the algorithm's hash.</summary>
    public static byte[] Message(ReadOnlySpan<byte> nonce, ReadOnlySpan<byte> csrSha256) => [.. Domain, .. nonce, .. csrSha256];

    /// <summary>Signs <paramref name="message"/> with a node key of a supported kind; other keys throw <see cref="NotSupportedException"/>.</summary>
    public static byte[] Sign(AsymmetricAlgorithm key, byte[] message) => key switch
    {
        ECDsa ec => ec.SignData(message, EcdsaHash(ec) ?? throw Unsupported(key), DSASignatureFormat.Rfc3279DerSequence),
        RSA rsa when rsa.KeySize >= MinRsaBits => rsa.SignData(message, HashAlgorithmName.SHA256, RSASignaturePadding.Pss),
        _ => throw Unsupported(key),
    };

    /// <summary>Whether <paramref name="signature"/> is the leaf key's proof over <paramref name="message"/>.</summary>
    public static bool Verify(X509Certificate2 leaf, byte[] message, byte[] signature)
    {
        using var ec = leaf.GetECDsaPublicKey();
        if (ec is not null)
        {
            return EcdsaHash(ec) is { } h && ec.VerifyData(message, signature, h, DSASignatureFormat.Rfc3279DerSequence);
        }
        using var rsa = leaf.GetRSAPublicKey();
        return rsa is { KeySize: >= MinRsaBits } && rsa.VerifyData(message, signature, HashAlgorithmName.SHA256, RSASignaturePadding.Pss);
    }

    /// <summary>Why the certificate's key cannot make an x509pop proof, or null when it can.</summary>
    public static string? UnsupportedKey(X509Certificate2 cert)
    {
        using var ec = cert.GetECDsaPublicKey();
        if (ec is not null)
        {
            return EcdsaHash(ec) is null ? "its EC key is on a curve other than P-256 or P-384" : null;
        }
        using var rsa = cert.GetRSAPublicKey();
        if (rsa is not null)
        {
            return rsa.KeySize < MinRsaBits ? $"its RSA key has {rsa.KeySize} bits, fewer than {MinRsaBits}" : null;
        }
        return $"its key algorithm ({cert.PublicKey.Oid.FriendlyName ?? cert.PublicKey.Oid.Value}) is neither ECDSA nor RSA";
    }

    /// <summary>SHA-256 for P-256, SHA-384 for P-384, null for any other curve.</summary>
    private static HashAlgorithmName? EcdsaHash(ECDsa key)
    {
        var curve = key.ExportParameters(false).Curve;
        return IsCurve(curve, ECCurve.NamedCurves.nistP256) ? HashAlgorithmName.SHA256
            : IsCurve(curve, ECCurve.NamedCurves.nistP384) ? HashAlgorithmName.SHA384
            : null;
    }

    private static bool IsCurve(ECCurve curve, ECCurve named) =>
        curve.IsNamed && (curve.Oid.Value is { } v ? v == named.Oid.Value : curve.Oid.FriendlyName == named.Oid.FriendlyName);

    private static NotSupportedException Unsupported(AsymmetricAlgorithm key) =>
        new($"an x509pop node key must be ECDSA P-256, ECDSA P-384 or RSA of {MinRsaBits} bits or more, not {key.GetType().Name} of {key.KeySize} bits");
}
