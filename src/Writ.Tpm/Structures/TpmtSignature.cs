using System.Security.Cryptography;
using Writ.Tpm.Marshalling;

namespace Writ.Tpm.Structures;

/// <summary>
/// A TPMT_SIGNATURE (Part 2 §11.3.4) by an RSA (RSASSA-PKCS1-v1_5, RSASSA-PSS) or ECC (ECDSA) TPM key, and its
/// verification against a <see cref="TpmPublic"/>. Signatures with SHA-1 are refused. Immutable.
/// </summary>
public sealed class TpmtSignature
{
    private readonly byte[] _rsa;
    private readonly byte[] _r;
    private readonly byte[] _s;

    private TpmtSignature(ushort sigAlg, ushort hashAlg, byte[] rsa, byte[] r, byte[] s)
    {
        SigAlg = sigAlg;
        HashAlg = hashAlg;
        _rsa = rsa;
        _r = r;
        _s = s;
    }

    /// <summary><see cref="TpmAlg.RsaSsa"/>, <see cref="TpmAlg.RsaPss"/> or <see cref="TpmAlg.EcDsa"/>.</summary>
    public ushort SigAlg { get; }

    /// <summary>The hash the signed digest was made with.</summary>
    public ushort HashAlg { get; }

    /// <summary>The RSA signature (empty for ECDSA).</summary>
    public ReadOnlySpan<byte> RsaSignature => _rsa;

    /// <summary>ECDSA r, big-endian as the TPM gave it (empty for RSA).</summary>
    public ReadOnlySpan<byte> R => _r;

    /// <summary>ECDSA s, big-endian as the TPM gave it (empty for RSA).</summary>
    public ReadOnlySpan<byte> S => _s;

    /// <summary>
    /// Parses a TPMT_SIGNATURE. <see cref="TpmFormatException"/> on truncated input, trailing bytes, a scheme other than
    /// RSASSA, RSAPSS or ECDSA, or a hash other than SHA-256, SHA-384 or SHA-512.
    /// </summary>
    public static TpmtSignature Parse(ReadOnlySpan<byte> tpmtSignature)
    {
        var rd = new TpmReader(tpmtSignature);
        var sigAlg = rd.ReadUInt16();
        if (sigAlg is not (TpmAlg.RsaSsa or TpmAlg.RsaPss or TpmAlg.EcDsa))
            throw new TpmFormatException($"signature scheme 0x{sigAlg:x4} is not supported (RSASSA, RSAPSS, ECDSA are)");
        var hash = rd.ReadUInt16();
        if (hash is not (TpmAlg.Sha256 or TpmAlg.Sha384 or TpmAlg.Sha512))
            throw new TpmFormatException($"signature hash 0x{hash:x4} is not accepted (sha256, sha384, sha512 are)");
        TpmtSignature sig;
        if (sigAlg == TpmAlg.EcDsa)
        {
            var r = rd.ReadSized();
            var s = rd.ReadSized();
            if (r.Length is 0 or > 66 || s.Length is 0 or > 66)
                throw new TpmFormatException($"ECDSA signature has a {r.Length}-byte r and a {s.Length}-byte s; 1 to 66 bytes expected");
            sig = new TpmtSignature(sigAlg, hash, [], r.ToArray(), s.ToArray());
        }
        else
        {
            var rsa = rd.ReadSized();
            if (rsa.Length is not (128 or 256 or 384 or 512))
                throw new TpmFormatException($"RSA signature is {rsa.Length} bytes; the size of a 1024–4096-bit modulus expected");
            sig = new TpmtSignature(sigAlg, hash, rsa.ToArray(), [], []);
        }
        rd.ExpectEnd("TPMT_SIGNATURE");
        return sig;
    }

    /// <summary>
    /// Whether this is a valid signature by <paramref name="key"/> over <paramref name="message"/> (hashed with
    /// <see cref="HashAlg"/>, as TPM2_Quote and TPM2_Certify sign TPMS_ATTEST). False, never an exception, for a wrong
    /// key, a scheme the key may not use, or a bad signature.
    /// </summary>
    public bool Verify(TpmPublic key, ReadOnlySpan<byte> message) => VerifyDigest(key, TpmHash.Hash(HashAlg, message));

    /// <summary>
    /// Whether this is a valid signature by <paramref name="key"/> over a digest the signer was given
    /// (TPM2_Sign signs the digest it is handed, without hashing again). The digest must be <see cref="HashAlg"/>'s size.
    /// </summary>
    public bool VerifyDigest(TpmPublic key, ReadOnlySpan<byte> digest)
    {
        ArgumentNullException.ThrowIfNull(key);
        if (digest.Length != TpmHash.DigestSize(HashAlg))
            return false;
        // A key restricted to one scheme cannot have made a signature with another.
        if (key.Scheme.Algorithm != TpmAlg.Null && (key.Scheme.Algorithm != SigAlg || key.Scheme.HashAlg != HashAlg))
            return false;
        try
        {
            if (SigAlg == TpmAlg.EcDsa)
            {
                if (key.Ecc is null)
                    return false;
                var size = key.Ecc.CoordinateSize;
                var p1363 = new byte[2 * size];
                if (!Pad(_r, p1363.AsSpan(0, size)) || !Pad(_s, p1363.AsSpan(size)))
                    return false;
                using var ecdsa = key.CreateECDsa();
                return ecdsa.VerifyHash(digest, p1363, DSASignatureFormat.IeeeP1363FixedFieldConcatenation);
            }
            if (key.Rsa is null || _rsa.Length != key.Rsa.Modulus.Length)
                return false;
            using var rsa = key.CreateRsa();
            return rsa.VerifyHash(digest, _rsa, TpmHash.Name(HashAlg), SigAlg == TpmAlg.RsaPss ? RSASignaturePadding.Pss : RSASignaturePadding.Pkcs1);
        }
        catch (TpmFormatException)
        {
            return false;
        }
        catch (CryptographicException)
        {
            return false;
        }
    }

    /// <summary>Left-pads a big-endian integer into <paramref name="into"/>; false when it does not fit (leading zeros aside).</summary>
    private static bool Pad(ReadOnlySpan<byte> value, Span<byte> into)
    {
        while (value.Length > into.Length && value[0] == 0)
            value = value[1..];
        if (value.Length > into.Length)
            return false;
        into.Clear();
        value.CopyTo(into[(into.Length - value.Length)..]);
        return true;
    }
}
