using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Writ.Spiffe.Internal;

/// <summary>Which hash, signature generator and JOSE alg go with a key.</summary>
internal static class KeyAlgorithms
{
    public const string OidP256 = "1.2.840.10045.3.1.7";
    public const string OidP384 = "1.3.132.0.34";
    public const string OidP521 = "1.3.132.0.35";

    public static HashAlgorithmName HashFor(AsymmetricAlgorithm key) => key switch
    {
        ECDsa ec => ec.KeySize switch
        {
            256 => HashAlgorithmName.SHA256,
            384 => HashAlgorithmName.SHA384,
            521 => HashAlgorithmName.SHA512,
            _ => throw new ArgumentException($"EC key size {ec.KeySize} is not supported: use P-256, P-384 or P-521", nameof(key)),
        },
        RSA => HashAlgorithmName.SHA256,
        null => throw new ArgumentNullException(nameof(key)),
        _ => throw new ArgumentException($"key type {key.GetType().Name} is not supported: use ECDsa or RSA", nameof(key)),
    };

    public static X509SignatureGenerator GeneratorFor(AsymmetricAlgorithm key) => key switch
    {
        ECDsa ec => X509SignatureGenerator.CreateForECDsa(ec),
        RSA rsa => X509SignatureGenerator.CreateForRSA(rsa, RSASignaturePadding.Pkcs1),
        null => throw new ArgumentNullException(nameof(key)),
        _ => throw new ArgumentException($"key type {key.GetType().Name} is not supported: use ECDsa or RSA", nameof(key)),
    };

    public static PublicKey PublicKeyOf(AsymmetricAlgorithm key) => key switch
    {
        ECDsa ec => new PublicKey(ec),
        RSA rsa => new PublicKey(rsa),
        null => throw new ArgumentNullException(nameof(key)),
        _ => throw new ArgumentException($"key type {key.GetType().Name} is not supported: use ECDsa or RSA", nameof(key)),
    };

    /// <summary>The SubjectPublicKeyInfo of a certificate's key, for key matching.</summary>
    public static byte[] Spki(PublicKey pk) => pk.ExportSubjectPublicKeyInfo();

    /// <summary>Imports a SubjectPublicKeyInfo as ECDsa or RSA; null when it is neither.</summary>
    public static AsymmetricAlgorithm? ImportSpki(ReadOnlySpan<byte> spki)
    {
        try
        {
            var pk = PublicKey.CreateFromSubjectPublicKeyInfo(spki, out var read);
            if (read != spki.Length)
            {
                return null;
            }
            return (AsymmetricAlgorithm?)pk.GetECDsaPublicKey() ?? pk.GetRSAPublicKey();
        }
        catch (CryptographicException)
        {
            return null;
        }
    }

    /// <summary>Random positive serial: 16 bytes, first byte non-zero and below 0x80 (minimal DER, ≥ 120 random bits).</summary>
    public static byte[] RandomSerial()
    {
        var serial = RandomNumberGenerator.GetBytes(16);
        serial[0] = (byte)((serial[0] & 0x7F) | 0x01);
        return serial;
    }
}
