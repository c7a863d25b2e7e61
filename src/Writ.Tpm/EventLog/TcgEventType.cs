namespace Writ.Tpm.EventLog;

/// <summary>Event types of the TCG PC Client Platform Firmware Profile (§10.4.1) that Writ reads or writes.</summary>
public static class TcgEventType
{
    public const uint PrebootCert = 0x00000000;
    public const uint PostCode = 0x00000001;
    public const uint NoAction = 0x00000003;
    public const uint Separator = 0x00000004;
    public const uint Action = 0x00000005;
    public const uint EventTag = 0x00000006;
    public const uint SCrtmContents = 0x00000007;
    public const uint SCrtmVersion = 0x00000008;
    public const uint CpuMicrocode = 0x00000009;
    public const uint Ipl = 0x0000000D;
    public const uint EfiVariableDriverConfig = 0x80000001;
    public const uint EfiVariableBoot = 0x80000002;
    public const uint EfiBootServicesApplication = 0x80000003;
    public const uint EfiBootServicesDriver = 0x80000004;
    public const uint EfiGptEvent = 0x80000006;
    public const uint EfiAction = 0x80000007;
    public const uint EfiPlatformFirmwareBlob = 0x80000008;
    public const uint EfiHandoffTables = 0x80000009;
    public const uint EfiVariableAuthority = 0x800000E0;

    /// <summary>
    /// Types whose digest the profile defines as the hash of the event data itself, so a changed data with the digest
    /// kept is detectable (other types measure something the log does not carry, e.g. an image).
    /// </summary>
    public static bool DigestCoversData(uint type) => type is Separator or EfiAction or EfiVariableDriverConfig;
}
