namespace Writ.Tpm.Commands;

/// <summary>TPM_CC command codes of the commands Writ's client sends (Part 2 §6.5.2).</summary>
public static class TpmCc
{
    public const uint NvReadPublic = 0x00000169;
    public const uint NvRead = 0x0000014E;
    public const uint CreatePrimary = 0x00000131;
    public const uint Create = 0x00000153;
    public const uint Load = 0x00000157;
    public const uint Certify = 0x00000148;
    public const uint ActivateCredential = 0x00000147;
    public const uint PolicySecret = 0x00000151;
    public const uint Quote = 0x00000158;
    public const uint Sign = 0x0000015D;
    public const uint FlushContext = 0x00000165;
    public const uint ReadPublic = 0x00000173;
    public const uint StartAuthSession = 0x00000176;
    public const uint GetCapability = 0x0000017A;
    public const uint PcrRead = 0x0000017E;
    public const uint PcrExtend = 0x00000182;

    public static string Name(uint cc) => cc switch
    {
        NvReadPublic => "TPM2_NV_ReadPublic",
        NvRead => "TPM2_NV_Read",
        CreatePrimary => "TPM2_CreatePrimary",
        Create => "TPM2_Create",
        Load => "TPM2_Load",
        Certify => "TPM2_Certify",
        ActivateCredential => "TPM2_ActivateCredential",
        PolicySecret => "TPM2_PolicySecret",
        Quote => "TPM2_Quote",
        Sign => "TPM2_Sign",
        FlushContext => "TPM2_FlushContext",
        ReadPublic => "TPM2_ReadPublic",
        StartAuthSession => "TPM2_StartAuthSession",
        GetCapability => "TPM2_GetCapability",
        PcrRead => "TPM2_PCR_Read",
        PcrExtend => "TPM2_PCR_Extend",
        _ => $"TPM command 0x{cc:x}",
    };
}

/// <summary>TPM_CAP and TPM_PT values the client asks for (Part 2 §6.12, §6.13).</summary>
public static class TpmCap
{
    public const uint Handles = 0x00000001;
    public const uint TpmProperties = 0x00000006;

    /// <summary>TPM_PT_NV_BUFFER_MAX: the most bytes one TPM2_NV_Read returns.</summary>
    public const uint PtNvBufferMax = 0x0000012C;

    /// <summary>The first transient object handle (TPM_HT_TRANSIENT) and the first loaded session handle (TPM_HT_LOADED_SESSION).</summary>
    public const uint TransientFirst = 0x80000000;
    public const uint LoadedSessionFirst = 0x02000000;
    public const uint PolicySessionFirst = 0x03000000;
}
