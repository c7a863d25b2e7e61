using System.Numerics;
using System.Security.Cryptography;
using Writ.Tpm.Structures;

namespace Writ.Tpm.Verification;

/// <summary>
/// RSAES-OAEP encryption with a label (RFC 8017 §7.1.1, MGF1 with the same hash), which the TPM's credential protocol
/// needs ("IDENTITY\0") and .NET's RSA.Encrypt cannot do. Public-key only: the modular exponentiation is BigInteger's.
/// </summary>
internal static class RsaOaep
{
    public static byte[] Encrypt(TpmRsaKey key, ushort hashAlg, ReadOnlySpan<byte> message, ReadOnlySpan<byte> label)
    {
        var k = key.Modulus.Length;
        var hLen = TpmHash.DigestSize(hashAlg);
        if (message.Length > k - 2 * hLen - 2)
            throw new ArgumentException($"OAEP message of {message.Length} bytes does not fit a {k * 8}-bit key", nameof(message));
        var em = new byte[k];
        var seed = em.AsSpan(1, hLen);
        var db = em.AsSpan(1 + hLen);
        TpmHash.Hash(hashAlg, label).CopyTo(db);
        db[db.Length - message.Length - 1] = 0x01;
        message.CopyTo(db[(db.Length - message.Length)..]);
        RandomNumberGenerator.Fill(seed);
        Xor(db, Mgf1(hashAlg, seed, db.Length));
        Xor(seed, Mgf1(hashAlg, db, hLen));

        var n = new BigInteger(key.Modulus, isUnsigned: true, isBigEndian: true);
        var c = BigInteger.ModPow(new BigInteger(em, isUnsigned: true, isBigEndian: true), key.Exponent, n);
        var bytes = c.ToByteArray(isUnsigned: true, isBigEndian: true);
        var result = new byte[k];
        bytes.CopyTo(result.AsSpan(k - bytes.Length));
        return result;
    }

    internal static byte[] Mgf1(ushort hashAlg, ReadOnlySpan<byte> seed, int length)
    {
        var mask = new byte[length];
        using var h = IncrementalHash.CreateHash(TpmHash.Name(hashAlg));
        Span<byte> counter = stackalloc byte[4];
        var done = 0;
        for (uint i = 0; done < length; i++)
        {
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(counter, i);
            h.AppendData(seed);
            h.AppendData(counter);
            var block = h.GetHashAndReset();
            var n = Math.Min(block.Length, length - done);
            block.AsSpan(0, n).CopyTo(mask.AsSpan(done));
            done += n;
        }
        return mask;
    }

    private static void Xor(Span<byte> target, ReadOnlySpan<byte> mask)
    {
        for (var i = 0; i < target.Length; i++)
            target[i] ^= mask[i];
    }
}
