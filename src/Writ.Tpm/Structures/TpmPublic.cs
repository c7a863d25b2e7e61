using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Writ.Tpm.Marshalling;

namespace Writ.Tpm.Structures;

/// <summary>A TPMT_SYM_DEF_OBJECT: the symmetric algorithm of a storage key (AES-128-CFB for the TCG default EKs), or <see cref="TpmAlg.Null"/>.</summary>
/// <param name="Algorithm">AES, SM4, Camellia or NULL.</param>
/// <param name="KeyBits">The key size in bits (0 when NULL).</param>
/// <param name="Mode">The block mode, e.g. CFB (0 when NULL).</param>
public readonly record struct TpmSymmetric(ushort Algorithm, ushort KeyBits, ushort Mode);

/// <summary>A key's scheme (TPMT_RSA_SCHEME, TPMT_ECC_SCHEME or TPMT_KDF_SCHEME): the algorithm and its hash, or <see cref="TpmAlg.Null"/>.</summary>
/// <param name="Algorithm">E.g. ECDSA, RSASSA, OAEP, or NULL (any scheme the command names).</param>
/// <param name="HashAlg">The scheme's hash (0 when the scheme has none).</param>
public readonly record struct TpmScheme(ushort Algorithm, ushort HashAlg);

/// <summary>The RSA half of a public area: key size, public exponent (65537 when the TPM says 0) and modulus.</summary>
public sealed class TpmRsaKey
{
    internal TpmRsaKey(ushort keyBits, uint exponent, byte[] modulus)
    {
        KeyBits = keyBits;
        Exponent = exponent;
        _modulus = modulus;
    }

    private readonly byte[] _modulus;

    public ushort KeyBits { get; }

    /// <summary>The public exponent (the TPM's 0 already turned into 65537).</summary>
    public uint Exponent { get; }

    /// <summary>The modulus, big-endian, exactly <see cref="KeyBits"/>/8 bytes.</summary>
    public ReadOnlySpan<byte> Modulus => _modulus;

    internal byte[] ExponentBytes()
    {
        var e = new byte[4];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(e, Exponent);
        var skip = 0;
        while (skip < 3 && e[skip] == 0)
            skip++;
        return e[skip..];
    }
}

/// <summary>The ECC half of a public area: curve, key-derivation scheme and the public point.</summary>
public sealed class TpmEccKey
{
    internal TpmEccKey(ushort curve, TpmScheme kdf, byte[] x, byte[] y)
    {
        Curve = curve;
        Kdf = kdf;
        _x = x;
        _y = y;
    }

    private readonly byte[] _x;
    private readonly byte[] _y;

    /// <summary>The TPM_ECC_CURVE (NIST P-256, P-384 or P-521).</summary>
    public ushort Curve { get; }

    /// <summary>The TPMT_KDF_SCHEME (NULL for the TCG default templates).</summary>
    public TpmScheme Kdf { get; }

    /// <summary>The X coordinate, big-endian, left-padded to the curve's size.</summary>
    public ReadOnlySpan<byte> X => _x;

    /// <summary>The Y coordinate, big-endian, left-padded to the curve's size.</summary>
    public ReadOnlySpan<byte> Y => _y;

    /// <summary>The size of a coordinate (and of an ECDSA r or s) in bytes.</summary>
    public int CoordinateSize => CurveSize(Curve);

    internal ECCurve NetCurve => NetCurveOf(Curve);

    internal static int CurveSize(ushort curve) => curve switch
    {
        TpmEccCurve.NistP256 => 32,
        TpmEccCurve.NistP384 => 48,
        TpmEccCurve.NistP521 => 66,
        _ => throw new TpmFormatException($"ECC curve 0x{curve:x4} is not supported (NIST P-256, P-384, P-521 are)"),
    };

    internal static ECCurve NetCurveOf(ushort curve) => curve switch
    {
        TpmEccCurve.NistP256 => ECCurve.NamedCurves.nistP256,
        TpmEccCurve.NistP384 => ECCurve.NamedCurves.nistP384,
        TpmEccCurve.NistP521 => ECCurve.NamedCurves.nistP521,
        _ => throw new TpmFormatException($"ECC curve 0x{curve:x4} is not supported (NIST P-256, P-384, P-521 are)"),
    };
}

/// <summary>
/// A TPMT_PUBLIC (Part 2 §12.2.4): the public area of an RSA or ECC TPM key (an EK, an AK, the agent's key), parsed
/// from bytes that may come from an attacker. Gives the key's TPM name (what MakeCredential and Certify bind to), its
/// X.509 SubjectPublicKeyInfo, .NET key objects and the EK hash of Writ's agent IDs. Immutable.
/// </summary>
public sealed class TpmPublic
{
    private readonly byte[] _bytes;
    private readonly byte[] _authPolicy;

    private TpmPublic(byte[] bytes, ushort type, ushort nameAlg, TpmaObject attributes, byte[] authPolicy, TpmSymmetric symmetric,
        TpmScheme scheme, TpmRsaKey? rsa, TpmEccKey? ecc)
    {
        _bytes = bytes;
        Type = type;
        NameAlg = nameAlg;
        Attributes = attributes;
        _authPolicy = authPolicy;
        Symmetric = symmetric;
        Scheme = scheme;
        Rsa = rsa;
        Ecc = ecc;
    }

    /// <summary>The marshalled TPMT_PUBLIC exactly as parsed (no TPM2B size prefix).</summary>
    public ReadOnlySpan<byte> Bytes => _bytes;

    /// <summary><see cref="TpmAlg.Rsa"/> or <see cref="TpmAlg.Ecc"/>.</summary>
    public ushort Type { get; }

    /// <summary>The hash of the key's name (SHA-256 for the TCG default templates).</summary>
    public ushort NameAlg { get; }

    public TpmaObject Attributes { get; }

    /// <summary>The key's authorization policy digest (the EK's PolicySecret(endorsement) policy; empty for most keys).</summary>
    public ReadOnlySpan<byte> AuthPolicy => _authPolicy;

    /// <summary>The symmetric algorithm of a storage or decryption key (what MakeCredential encrypts with); NULL for signing keys.</summary>
    public TpmSymmetric Symmetric { get; }

    /// <summary>The RSA or ECC scheme the key is restricted to, or NULL.</summary>
    public TpmScheme Scheme { get; }

    /// <summary>The RSA parameters and modulus; null for an ECC key.</summary>
    public TpmRsaKey? Rsa { get; }

    /// <summary>The ECC curve and point; null for an RSA key.</summary>
    public TpmEccKey? Ecc { get; }

    /// <summary>
    /// Parses a TPMT_PUBLIC without its TPM2B size prefix. Throws <see cref="TpmFormatException"/> when the bytes are
    /// truncated, have trailing bytes, or describe anything but an RSA or ECC key with a known name hash.
    /// </summary>
    public static TpmPublic Parse(ReadOnlySpan<byte> tpmtPublic)
    {
        var r = new TpmReader(tpmtPublic);
        var type = r.ReadUInt16();
        var nameAlg = r.ReadUInt16();
        if (!TpmHash.IsSupported(nameAlg))
            throw new TpmFormatException($"public area has name algorithm 0x{nameAlg:x4}; sha1, sha256, sha384, sha512 are supported");
        var attributes = (TpmaObject)r.ReadUInt32();
        var authPolicy = r.ReadSized().ToArray();
        if (authPolicy.Length > 64)
            throw new TpmFormatException($"public area has a {authPolicy.Length}-byte auth policy; a digest is at most 64 bytes");
        var symmetric = ReadSymmetric(ref r);
        TpmScheme scheme;
        TpmRsaKey? rsa = null;
        TpmEccKey? ecc = null;
        switch (type)
        {
            case TpmAlg.Rsa:
            {
                scheme = ReadScheme(ref r, "RSA scheme", TpmAlg.RsaSsa, TpmAlg.RsaPss, TpmAlg.Oaep, TpmAlg.RsaEs);
                var keyBits = r.ReadUInt16();
                if (keyBits is not (1024 or 2048 or 3072 or 4096))
                    throw new TpmFormatException($"RSA public area has {keyBits} key bits (1024, 2048, 3072 or 4096 expected)");
                var exponent = r.ReadUInt32();
                if (exponent == 0)
                    exponent = 65537;
                if (exponent < 3 || exponent % 2 == 0)
                    throw new TpmFormatException($"RSA public area has exponent {exponent}; an odd exponent of at least 3 is expected");
                var modulus = r.ReadSized();
                if (modulus.Length != keyBits / 8)
                    throw new TpmFormatException($"RSA public area has a {modulus.Length}-byte modulus for {keyBits} key bits");
                if ((modulus[0] & 0x80) == 0)
                    throw new TpmFormatException($"RSA public area's modulus is shorter than its {keyBits} key bits");
                rsa = new TpmRsaKey(keyBits, exponent, modulus.ToArray());
                break;
            }
            case TpmAlg.Ecc:
            {
                scheme = ReadScheme(ref r, "ECC scheme", TpmAlg.EcDsa, TpmAlg.Ecdh, TpmAlg.EcDaa, TpmAlg.Sm2, TpmAlg.EcSchnorr, TpmAlg.EcMqv);
                var curve = r.ReadUInt16();
                var size = TpmEccKey.CurveSize(curve);
                var kdf = ReadScheme(ref r, "KDF scheme", TpmAlg.Mgf1, TpmAlg.Kdf1Sp80056A, TpmAlg.Kdf2, TpmAlg.Kdf1Sp800108);
                var x = Coordinate(r.ReadSized(), size, "X");
                var y = Coordinate(r.ReadSized(), size, "Y");
                ecc = new TpmEccKey(curve, kdf, x, y);
                break;
            }
            default:
                throw new TpmFormatException($"public area has type 0x{type:x4}; only RSA (0x0001) and ECC (0x0023) keys are supported");
        }
        r.ExpectEnd("TPMT_PUBLIC");
        return new TpmPublic(tpmtPublic.ToArray(), type, nameAlg, attributes, authPolicy, symmetric, scheme, rsa, ecc);
    }

    /// <summary>
    /// The key's TPM name (Part 1 §16): nameAlg as 2 bytes big-endian, then H_nameAlg(TPMT_PUBLIC). What MakeCredential's
    /// objectName and a certification's certified name are.
    /// </summary>
    public byte[] Name()
    {
        var digest = TpmHash.Hash(NameAlg, _bytes);
        var name = new byte[2 + digest.Length];
        name[0] = (byte)(NameAlg >> 8);
        name[1] = (byte)NameAlg;
        digest.CopyTo(name, 2);
        return name;
    }

    /// <summary>The key as an X.509 SubjectPublicKeyInfo (DER): rsaEncryption, or id-ecPublicKey with the named curve and an uncompressed point.</summary>
    public byte[] SubjectPublicKeyInfo()
    {
        if (Rsa is not null)
        {
            using var rsa = CreateRsa();
            return rsa.ExportSubjectPublicKeyInfo();
        }
        using var ecdsa = CreateECDsa();
        return ecdsa.ExportSubjectPublicKeyInfo();
    }

    /// <summary>Writ's EK hash of this key: lowercase hex SHA-256 of its <see cref="SubjectPublicKeyInfo"/>.</summary>
    public string EkHash() => SpkiHash(SubjectPublicKeyInfo());

    /// <summary>Lowercase hex SHA-256 of a SubjectPublicKeyInfo DER (the EK hash of <c>tpm:ek_hash</c> and the agent ID).</summary>
    public static string SpkiHash(ReadOnlySpan<byte> subjectPublicKeyInfo) => Convert.ToHexStringLower(SHA256.HashData(subjectPublicKeyInfo));

    /// <summary>An RSA object for the public key. <see cref="InvalidOperationException"/> when this is not an RSA key.</summary>
    public RSA CreateRsa()
    {
        if (Rsa is null)
            throw new InvalidOperationException("the TPM key is not an RSA key");
        var rsa = RSA.Create();
        try
        {
            rsa.ImportParameters(new RSAParameters { Modulus = Rsa.Modulus.ToArray(), Exponent = Rsa.ExponentBytes() });
            return rsa;
        }
        catch (CryptographicException e)
        {
            rsa.Dispose();
            throw new TpmFormatException($"RSA public area is not a valid public key: {e.Message}");
        }
    }

    /// <summary>
    /// An ECDsa object for the public key; <see cref="TpmFormatException"/> when the point is not on the curve,
    /// <see cref="InvalidOperationException"/> when this is not an ECC key.
    /// </summary>
    public ECDsa CreateECDsa()
    {
        if (Ecc is null)
            throw new InvalidOperationException("the TPM key is not an ECC key");
        try
        {
            return ECDsa.Create(new ECParameters { Curve = Ecc.NetCurve, Q = new ECPoint { X = Ecc.X.ToArray(), Y = Ecc.Y.ToArray() } });
        }
        catch (CryptographicException e)
        {
            throw new TpmFormatException($"ECC public area is not a point on its curve: {e.Message}");
        }
    }

    /// <summary>
    /// Whether <paramref name="certificate"/> certifies this very key (same RSA modulus and exponent, or same curve and
    /// point): how a verifier ties an EK certificate to the EK public area the TPM used.
    /// </summary>
    public bool HasSameKey(X509Certificate2 certificate)
    {
        ArgumentNullException.ThrowIfNull(certificate);
        try
        {
            if (Rsa is not null)
            {
                using var other = certificate.GetRSAPublicKey();
                if (other is null)
                    return false;
                var p = other.ExportParameters(false);
                return Rsa.Modulus.SequenceEqual(p.Modulus) && Rsa.ExponentBytes().AsSpan().SequenceEqual(TrimLeadingZeros(p.Exponent));
            }
            // Not GetECDsaPublicKey: it is null for an EK certificate, whose key usage is keyAgreement, not signing.
            if (Ecc is null || certificate.PublicKey.Oid.Value != "1.2.840.10045.2.1")
                return false;
            using var ec = ECDsa.Create();
            ec.ImportSubjectPublicKeyInfo(certificate.PublicKey.ExportSubjectPublicKeyInfo(), out _);
            // Both re-exported by .NET: named curve and uncompressed point, whatever encoding the certificate used.
            return ec.ExportSubjectPublicKeyInfo().AsSpan().SequenceEqual(SubjectPublicKeyInfo());
        }
        catch (Exception e) when (e is CryptographicException or TpmFormatException)
        {
            return false;
        }
    }

    private static ReadOnlySpan<byte> TrimLeadingZeros(ReadOnlySpan<byte> b)
    {
        var i = 0;
        while (i < b.Length - 1 && b[i] == 0)
            i++;
        return b[i..];
    }

    private static byte[] Coordinate(ReadOnlySpan<byte> value, int size, string which)
    {
        if (value.Length == 0 || value.Length > size)
            throw new TpmFormatException($"ECC public area has a {value.Length}-byte {which} coordinate; 1 to {size} bytes expected for its curve");
        var padded = new byte[size];
        value.CopyTo(padded.AsSpan(size - value.Length));
        return padded;
    }

    internal static TpmSymmetric ReadSymmetric(ref TpmReader r)
    {
        var alg = r.ReadUInt16();
        if (alg == TpmAlg.Null)
            return new TpmSymmetric(alg, 0, 0);
        if (alg is not (TpmAlg.Aes or TpmAlg.Sm4 or TpmAlg.Camellia))
            throw new TpmFormatException($"public area has symmetric algorithm 0x{alg:x4}; AES, SM4, Camellia or NULL expected");
        var bits = r.ReadUInt16();
        var mode = r.ReadUInt16();
        if (mode is not (TpmAlg.Ctr or TpmAlg.Ofb or TpmAlg.Cbc or TpmAlg.Cfb or TpmAlg.Ecb or TpmAlg.Null))
            throw new TpmFormatException($"public area has symmetric mode 0x{mode:x4}");
        return new TpmSymmetric(alg, bits, mode);
    }

    private static TpmScheme ReadScheme(ref TpmReader r, string what, params ReadOnlySpan<ushort> allowed)
    {
        var alg = r.ReadUInt16();
        if (alg == TpmAlg.Null)
            return new TpmScheme(alg, 0);
        if (!allowed.Contains(alg))
            throw new TpmFormatException($"public area has {what} 0x{alg:x4}, not one allowed for its key type");
        if (alg == TpmAlg.RsaEs)
            return new TpmScheme(alg, 0);
        var hash = r.ReadUInt16();
        if (alg == TpmAlg.EcDaa)
            r.ReadUInt16();   // count
        return new TpmScheme(alg, hash);
    }
}
