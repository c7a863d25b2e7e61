using System.Security.Cryptography;
using Writ.Tpm.Marshalling;

namespace Writ.Tpm.EventLog;

/// <summary>PCR bank names (as tpm2-tools and Writ's selectors spell them) and their TPM_ALG_ID, digest size and hash.</summary>
public static class PcrBank
{
    public const string Sha1 = "sha1";
    public const string Sha256 = "sha256";
    public const string Sha384 = "sha384";
    public const string Sha512 = "sha512";

    /// <summary>The bank name of a hash algorithm; an algorithm Writ cannot compute is named <c>alg-0xNNNN</c>.</summary>
    public static string NameOf(ushort algorithm) => algorithm switch
    {
        TpmAlg.Sha1 => Sha1,
        TpmAlg.Sha256 => Sha256,
        TpmAlg.Sha384 => Sha384,
        TpmAlg.Sha512 => Sha512,
        _ => $"alg-0x{algorithm:x4}",
    };

    /// <summary>The TPM_ALG_ID of a bank Writ can compute, or null.</summary>
    public static ushort? AlgorithmOf(string bank) => bank switch
    {
        Sha1 => TpmAlg.Sha1,
        Sha256 => TpmAlg.Sha256,
        Sha384 => TpmAlg.Sha384,
        Sha512 => TpmAlg.Sha512,
        _ => null,
    };

    /// <summary>The digest size of a bank Writ can compute, or null.</summary>
    public static int? DigestSize(string bank) => bank switch
    {
        Sha1 => 20,
        Sha256 => 32,
        Sha384 => 48,
        Sha512 => 64,
        _ => null,
    };

    /// <summary>The hash of <paramref name="data"/> in <paramref name="bank"/>'s algorithm, or null for a bank Writ cannot compute.</summary>
    public static byte[]? Hash(string bank, ReadOnlySpan<byte> data) => bank switch
    {
#pragma warning disable CA5350 // SHA-1 is a PCR bank here, not a choice: a SHA-1-only TPM measures with it.
        Sha1 => SHA1.HashData(data),
#pragma warning restore CA5350
        Sha256 => SHA256.HashData(data),
        Sha384 => SHA384.HashData(data),
        Sha512 => SHA512.HashData(data),
        _ => null,
    };

    /// <summary>PCR extend: new = H(old || digest).</summary>
    internal static byte[] Extend(string bank, ReadOnlySpan<byte> current, ReadOnlySpan<byte> digest)
    {
        Span<byte> buffer = stackalloc byte[current.Length + digest.Length];
        current.CopyTo(buffer);
        digest.CopyTo(buffer[current.Length..]);
        return Hash(bank, buffer) ?? throw new TpmFormatException($"cannot replay the {bank} bank: Writ does not compute that hash");
    }
}
