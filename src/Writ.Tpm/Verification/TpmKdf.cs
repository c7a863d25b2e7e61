using System.Buffers.Binary;
using System.Security.Cryptography;
using Writ.Tpm.Structures;

namespace Writ.Tpm.Verification;

/// <summary>The TPM's key derivation functions (Part 1 §11.4.10): KDFa (SP 800-108 counter mode, HMAC) and KDFe (SP 800-56A concatenation).</summary>
public static class TpmKdf
{
    /// <summary>KDFa(hashAlg, key, label, contextU, contextV, bits): HMAC_key([i]32 || label || 0x00 || contextU || contextV || [bits]32) for i = 1, 2, …</summary>
    public static byte[] KdfA(ushort hashAlg, ReadOnlySpan<byte> key, string label, ReadOnlySpan<byte> contextU, ReadOnlySpan<byte> contextV, int bits)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bits);
        if (bits % 8 != 0)
            throw new ArgumentOutOfRangeException(nameof(bits), "KDFa here derives whole bytes");
        using var hmac = IncrementalHash.CreateHMAC(TpmHash.Name(hashAlg), key);
        return Derive(hmac, label, default, contextU, contextV, bits, withBits: true);
    }

    /// <summary>KDFe(hashAlg, Z, use, partyU, partyV, bits): H([i]32 || Z || use || 0x00 || partyU || partyV) for i = 1, 2, …</summary>
    public static byte[] KdfE(ushort hashAlg, ReadOnlySpan<byte> z, string use, ReadOnlySpan<byte> partyUInfo, ReadOnlySpan<byte> partyVInfo, int bits)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bits);
        if (bits % 8 != 0)
            throw new ArgumentOutOfRangeException(nameof(bits), "KDFe here derives whole bytes");
        using var hash = IncrementalHash.CreateHash(TpmHash.Name(hashAlg));
        return Derive(hash, use, z, partyUInfo, partyVInfo, bits, withBits: false);
    }

    private static byte[] Derive(IncrementalHash h, string label, ReadOnlySpan<byte> z, ReadOnlySpan<byte> u, ReadOnlySpan<byte> v, int bits, bool withBits)
    {
        var output = new byte[bits / 8];
        Span<byte> word = stackalloc byte[4];
        var labelBytes = System.Text.Encoding.ASCII.GetBytes(label + "\0");
        var done = 0;
        for (uint counter = 1; done < output.Length; counter++)
        {
            BinaryPrimitives.WriteUInt32BigEndian(word, counter);
            h.AppendData(word);
            h.AppendData(z);
            h.AppendData(labelBytes);
            h.AppendData(u);
            h.AppendData(v);
            if (withBits)
            {
                BinaryPrimitives.WriteUInt32BigEndian(word, (uint)bits);
                h.AppendData(word);
            }
            var block = h.GetHashAndReset();
            var n = Math.Min(block.Length, output.Length - done);
            block.AsSpan(0, n).CopyTo(output.AsSpan(done));
            done += n;
        }
        return output;
    }
}
