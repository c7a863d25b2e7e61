using System.Security.Cryptography;
using Writ.Tpm.Marshalling;

namespace Writ.Tpm.Structures;

/// <summary>
/// The TPM hash algorithms Writ accepts (SHA-1, SHA-256, SHA-384, SHA-512): their digest sizes, .NET names, PCR bank
/// names (<c>sha256</c>, as in selectors and <c>PcrSelection.bank</c>) and hashing. Any other TPM_ALG_ID is refused.
/// </summary>
public static class TpmHash
{
    /// <summary>Whether <paramref name="alg"/> is a hash algorithm Writ knows.</summary>
    public static bool IsSupported(ushort alg) => alg is TpmAlg.Sha1 or TpmAlg.Sha256 or TpmAlg.Sha384 or TpmAlg.Sha512;

    /// <summary>The digest size in bytes; <see cref="TpmFormatException"/> for an algorithm Writ does not know.</summary>
    public static int DigestSize(ushort alg) => alg switch
    {
        TpmAlg.Sha1 => 20,
        TpmAlg.Sha256 => 32,
        TpmAlg.Sha384 => 48,
        TpmAlg.Sha512 => 64,
        _ => throw Unsupported(alg),
    };

    /// <summary>The .NET name of the hash algorithm, for signature verification and HMAC.</summary>
    public static HashAlgorithmName Name(ushort alg) => alg switch
    {
        TpmAlg.Sha1 => HashAlgorithmName.SHA1,
        TpmAlg.Sha256 => HashAlgorithmName.SHA256,
        TpmAlg.Sha384 => HashAlgorithmName.SHA384,
        TpmAlg.Sha512 => HashAlgorithmName.SHA512,
        _ => throw Unsupported(alg),
    };

    /// <summary>The PCR bank name (<c>sha1</c>, <c>sha256</c>, <c>sha384</c>, <c>sha512</c>).</summary>
    public static string BankName(ushort alg) => alg switch
    {
        TpmAlg.Sha1 => "sha1",
        TpmAlg.Sha256 => "sha256",
        TpmAlg.Sha384 => "sha384",
        TpmAlg.Sha512 => "sha512",
        _ => throw Unsupported(alg),
    };

    /// <summary>The hash algorithm of a PCR bank name (exact, lowercase); false for any other string.</summary>
    public static bool TryParseBank(string? bank, out ushort alg)
    {
        alg = bank switch
        {
            "sha1" => TpmAlg.Sha1,
            "sha256" => TpmAlg.Sha256,
            "sha384" => TpmAlg.Sha384,
            "sha512" => TpmAlg.Sha512,
            _ => 0,
        };
        return alg != 0;
    }

    /// <summary>The digest of <paramref name="data"/> with <paramref name="alg"/>.</summary>
    public static byte[] Hash(ushort alg, ReadOnlySpan<byte> data) => CryptographicOperations.HashData(Name(alg), data);

    /// <summary>An HMAC of <paramref name="data"/> with <paramref name="alg"/>.</summary>
    public static byte[] Hmac(ushort alg, ReadOnlySpan<byte> key, ReadOnlySpan<byte> data) => CryptographicOperations.HmacData(Name(alg), key, data);

    private static TpmFormatException Unsupported(ushort alg) => new($"hash algorithm 0x{alg:x4} is not supported (sha1, sha256, sha384, sha512 are)");
}
