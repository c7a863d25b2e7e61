namespace Writ.Tpm.Structures;

/// <summary>TPM_ALG_ID values of schemes, KDFs and symmetric modes the structures parse (Part 2 §6.3), beyond <see cref="Marshalling.TpmAlg"/>.</summary>
public static class TpmSchemeAlg
{
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
    public const ushort Cfb = 0x0043;
    public const ushort Ecb = 0x0044;
}

/// <summary>More TPM_ECC_CURVE values (Part 2 §6.4), beyond <see cref="Marshalling.TpmEccCurve"/>.</summary>
public static class TpmEccCurves
{
    public const ushort NistP521 = 0x0005;
}
