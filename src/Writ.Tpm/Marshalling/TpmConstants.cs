namespace Writ.Tpm.Marshalling;

/// <summary>TPM_ALG_ID values used by Writ (Part 2 §6.3).</summary>
public static class TpmAlg
{
    public const ushort Rsa = 0x0001;
    public const ushort Sha1 = 0x0004;
    public const ushort Hmac = 0x0005;
    public const ushort Aes = 0x0006;
    public const ushort KeyedHash = 0x0008;
    public const ushort Sha256 = 0x000B;
    public const ushort Sha384 = 0x000C;
    public const ushort Sha512 = 0x000D;
    public const ushort Null = 0x0010;
    public const ushort RsaSsa = 0x0014;
    public const ushort RsaPss = 0x0016;
    public const ushort Oaep = 0x0017;
    public const ushort EcDsa = 0x0018;
    public const ushort Ecdh = 0x0019;
    public const ushort Ecc = 0x0023;
    public const ushort SymCipher = 0x0025;
    public const ushort Cfb = 0x0043;

    // Schemes, KDFs and symmetric modes public areas may name (refused unless supported, but recognised).
    public const ushort Mgf1 = 0x0007;
    public const ushort Xor = 0x000A;
    public const ushort Sm4 = 0x0013;
    public const ushort RsaEs = 0x0015;
    public const ushort EcDaa = 0x001A;
    public const ushort Sm2 = 0x001B;
    public const ushort EcSchnorr = 0x001C;
    public const ushort EcMqv = 0x001D;
    public const ushort Kdf1Sp80056A = 0x0020;
    public const ushort Kdf2 = 0x0021;
    public const ushort Kdf1Sp800108 = 0x0022;
    public const ushort Camellia = 0x0026;
    public const ushort Ctr = 0x0040;
    public const ushort Ofb = 0x0041;
    public const ushort Cbc = 0x0042;
    public const ushort Ecb = 0x0044;
}

/// <summary>TPM_ECC_CURVE values (Part 2 §6.4).</summary>
public static class TpmEccCurve
{
    public const ushort NistP256 = 0x0003;
    public const ushort NistP384 = 0x0004;
    public const ushort NistP521 = 0x0005;
}

/// <summary>TPM_ST structure tags (Part 2 §6.9).</summary>
public static class TpmSt
{
    public const ushort NoSessions = 0x8001;
    public const ushort Sessions = 0x8002;
    public const ushort AttestCertify = 0x8017;
    public const ushort AttestQuote = 0x8018;
    public const ushort Hashcheck = 0x8024;
}

/// <summary>TPM_GENERATED_VALUE: the magic every TPMS_ATTEST the TPM signs starts with (Part 2 §6.2).</summary>
public static class TpmGenerated
{
    public const uint Value = 0xFF544347;
}

/// <summary>Permanent and range handles (Part 2 §7.4 and TCG EK Credential Profile NV indices).</summary>
public static class TpmHandle
{
    public const uint Owner = 0x40000001;
    public const uint Null = 0x40000007;
    public const uint PasswordSession = 0x40000009;
    public const uint Endorsement = 0x4000000B;
    public const uint EkCertRsaNv = 0x01C00002;
    public const uint EkCertEccNv = 0x01C0000A;
    public const uint EkCertEccP256HighNv = 0x01C00016;
}

/// <summary>TPMA_OBJECT bits (Part 2 §8.3).</summary>
[Flags]
public enum TpmaObject : uint
{
    None = 0,
    FixedTpm = 0x00000002,
    StClear = 0x00000004,
    FixedParent = 0x00000010,
    SensitiveDataOrigin = 0x00000020,
    UserWithAuth = 0x00000040,
    AdminWithPolicy = 0x00000080,
    NoDa = 0x00000400,
    EncryptedDuplication = 0x00000800,
    Restricted = 0x00010000,
    Decrypt = 0x00020000,
    SignEncrypt = 0x00040000,
}
