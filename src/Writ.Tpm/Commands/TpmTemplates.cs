using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Writ.Tpm.Marshalling;

namespace Writ.Tpm.Commands;

/// <summary>
/// TPMT_PUBLIC templates: the TCG EK Credential Profile (2.5, §2.2.1.4) low-range default EK templates, and Writ's
/// attestation key and agent key (ECC NIST P-256, ECDSA-SHA256, created under the EK).
/// </summary>
public static class TpmTemplates
{
    /// <summary>Policy A (SHA-256): TPM2_PolicySecret(TPM_RH_ENDORSEMENT), the default EK's authPolicy.</summary>
    public static readonly byte[] EkPolicyA = Convert.FromHexString("837197674484B3F81A90CC8D46A5D724FD52D76E06520B64F2A1DA1B331469AA");

    /// <summary>fixedTPM | fixedParent | sensitiveDataOrigin | adminWithPolicy | restricted | decrypt.</summary>
    public const TpmaObject EkAttributes = TpmaObject.FixedTpm | TpmaObject.FixedParent | TpmaObject.SensitiveDataOrigin
        | TpmaObject.AdminWithPolicy | TpmaObject.Restricted | TpmaObject.Decrypt;

    /// <summary>Policy B (SHA-384) of the high-range EK templates (TCG EK Credential Profile 2.5, Table 3).</summary>
    public static readonly byte[] EkPolicyBSha384 = Convert.FromHexString(
        "B26E7D28D11A50BC53D882BCF5FD3A1A074148BB35D3B4E4CB1C0AD9BDE419CACB47BA09699646150F9FC000F3F80E12");

    /// <summary>The high-range EK templates add userWithAuth: the EK is used with its (empty) auth value, no policy session.</summary>
    public const TpmaObject EkHighAttributes = EkAttributes | TpmaObject.UserWithAuth;

    /// <summary>fixedTPM | fixedParent | sensitiveDataOrigin | userWithAuth | restricted | sign: the AK.</summary>
    public const TpmaObject AkAttributes = TpmaObject.FixedTpm | TpmaObject.FixedParent | TpmaObject.SensitiveDataOrigin
        | TpmaObject.UserWithAuth | TpmaObject.Restricted | TpmaObject.SignEncrypt;

    /// <summary>The AK's bits without restricted: the agent key signs what the agent gives it (its CSR binding).</summary>
    public const TpmaObject AgentKeyAttributes = AkAttributes & ~TpmaObject.Restricted;

    /// <summary>Template L-1: RSA 2048, AES-128-CFB, the EK certificate at NV 0x01C00002.</summary>
    public static byte[] EkRsa2048() => new TpmWriter()
        .WriteUInt16(TpmAlg.Rsa).WriteUInt16(TpmAlg.Sha256).WriteUInt32((uint)EkAttributes).WriteSized(EkPolicyA)
        .WriteUInt16(TpmAlg.Aes).WriteUInt16(128).WriteUInt16(TpmAlg.Cfb)
        .WriteUInt16(TpmAlg.Null)
        .WriteUInt16(2048).WriteUInt32(0)
        .WriteSized(new byte[256])
        .ToArray();

    /// <summary>Template L-2: ECC NIST P-256, AES-128-CFB, the EK certificate at NV 0x01C0000A.</summary>
    public static byte[] EkEccP256() => new TpmWriter()
        .WriteUInt16(TpmAlg.Ecc).WriteUInt16(TpmAlg.Sha256).WriteUInt32((uint)EkAttributes).WriteSized(EkPolicyA)
        .WriteUInt16(TpmAlg.Aes).WriteUInt16(128).WriteUInt16(TpmAlg.Cfb)
        .WriteUInt16(TpmAlg.Null)
        .WriteUInt16(TpmEccCurve.NistP256).WriteUInt16(TpmAlg.Null)
        .WriteSized(new byte[32]).WriteSized(new byte[32])
        .ToArray();

    /// <summary>Template H-3: ECC NIST P-384, SHA-384, AES-256-CFB, empty unique; the EK certificate at NV 0x01C00016 (swtpm's ECC EK).</summary>
    public static byte[] EkEccP384High() => new TpmWriter()
        .WriteUInt16(TpmAlg.Ecc).WriteUInt16(TpmAlg.Sha384).WriteUInt32((uint)EkHighAttributes).WriteSized(EkPolicyBSha384)
        .WriteUInt16(TpmAlg.Aes).WriteUInt16(256).WriteUInt16(TpmAlg.Cfb)
        .WriteUInt16(TpmAlg.Null)
        .WriteUInt16(TpmEccCurve.NistP384).WriteUInt16(TpmAlg.Null)
        .WriteSized([]).WriteSized([])
        .ToArray();

    /// <summary>Whether an object made from <paramref name="template"/> is used with its auth value (userWithAuth) rather than a policy.</summary>
    internal static bool UsesAuthValue(ReadOnlySpan<byte> template) =>
        (System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(template[4..]) & (uint)TpmaObject.UserWithAuth) != 0;

    /// <summary>An ECC NIST P-256 ECDSA-SHA256 signing key with an empty auth value, under the EK.</summary>
    public static byte[] EccSigningKey(TpmaObject attributes) => new TpmWriter()
        .WriteUInt16(TpmAlg.Ecc).WriteUInt16(TpmAlg.Sha256).WriteUInt32((uint)attributes).WriteSized([])
        .WriteUInt16(TpmAlg.Null)
        .WriteUInt16(TpmAlg.EcDsa).WriteUInt16(TpmAlg.Sha256)
        .WriteUInt16(TpmEccCurve.NistP256).WriteUInt16(TpmAlg.Null)
        .WriteSized([]).WriteSized([])
        .ToArray();

    public static byte[] AttestationKey() => EccSigningKey(AkAttributes);

    public static byte[] AgentKey() => EccSigningKey(AgentKeyAttributes);

    /// <summary>
    /// Whether a TPMT_PUBLIC's key is the certificate's key (the agent checks its EK against its EK certificate before
    /// sending both). Reads only the public key; not a verifier of public areas.
    /// </summary>
    internal static bool SameKey(ReadOnlySpan<byte> tpmtPublic, X509Certificate2 cert)
    {
        var key = PublicKeyOf(tpmtPublic);
        if (key.Modulus is { } n)
        {
            using var rsa = cert.PublicKey.GetRSAPublicKey();
            return rsa is not null && rsa.ExportParameters(false).Modulus.AsSpan().SequenceEqual(n);
        }
        using var ec = cert.PublicKey.GetECDsaPublicKey();   // not cert.GetECDsaPublicKey(): an EK certificate's key usage is keyAgreement only
        if (ec is null)
        {
            return false;
        }
        var q = ec.ExportParameters(false).Q;
        return q.X.AsSpan().SequenceEqual(key.X) && q.Y.AsSpan().SequenceEqual(key.Y);
    }

    /// <summary>The RSA modulus or ECC point of a TPMT_PUBLIC (RSA or ECC only).</summary>
    internal static (byte[]? Modulus, byte[]? X, byte[]? Y, ushort Curve) PublicKeyOf(ReadOnlySpan<byte> tpmtPublic)
    {
        var r = new TpmReader(tpmtPublic);
        var type = r.ReadUInt16();
        r.ReadUInt16();
        r.ReadUInt32();
        r.ReadSized();
        if (r.ReadUInt16() != TpmAlg.Null)
        {
            r.ReadUInt16();
            r.ReadUInt16();
        }
        if (r.ReadUInt16() != TpmAlg.Null)
        {
            r.ReadUInt16();
        }
        switch (type)
        {
            case TpmAlg.Rsa:
                r.ReadUInt16();
                r.ReadUInt32();
                return (r.ReadSized().ToArray(), null, null, 0);
            case TpmAlg.Ecc:
                var curve = r.ReadUInt16();
                if (r.ReadUInt16() != TpmAlg.Null)
                {
                    r.ReadUInt16();
                }
                var x = r.ReadSized().ToArray();
                return (null, x, r.ReadSized().ToArray(), curve);
            default:
                throw new TpmFormatException($"a public area of type 0x{type:x4}, neither RSA nor ECC");
        }
    }

    /// <summary>An ECC P-256 TPMT_PUBLIC's key as .NET ECDsa (for checking the agent key's own signatures).</summary>
    internal static ECDsa EcdsaOf(ReadOnlySpan<byte> tpmtPublic)
    {
        var k = PublicKeyOf(tpmtPublic);
        if (k.X is null || k.Curve != TpmEccCurve.NistP256)
        {
            throw new TpmFormatException("not an ECC NIST P-256 public area");
        }
        return ECDsa.Create(new ECParameters { Curve = ECCurve.NamedCurves.nistP256, Q = new ECPoint { X = k.X, Y = k.Y } });
    }
}
