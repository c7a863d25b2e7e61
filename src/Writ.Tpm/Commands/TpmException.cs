using System.Globalization;

namespace Writ.Tpm.Commands;

/// <summary>
/// A TPM command failed with a response code: the message names the command, the code (name, hex, which handle, session
/// or parameter) and what it means in plain words, e.g. "TPM2_ActivateCredential failed: TPM_RC_INTEGRITY (0x2df,
/// parameter 2): the credential was not made for this TPM's EK and this AK".
/// </summary>
public sealed class TpmException : Exception
{
    public TpmException(uint commandCode, uint responseCode)
        : base(Describe(commandCode, responseCode))
    {
        CommandCode = commandCode;
        ResponseCode = responseCode;
    }

    public uint CommandCode { get; }

    /// <summary>The raw TPM_RC.</summary>
    public uint ResponseCode { get; }

    /// <summary>The error without its handle/session/parameter number (format 1), e.g. 0x09f for TPM_RC_INTEGRITY.</summary>
    public uint BaseCode => TpmRc.Base(ResponseCode);

    public static string Describe(uint commandCode, uint rc)
    {
        var name = TpmRc.Name(rc);
        var where = TpmRc.Where(rc);
        var detail = where.Length > 0 ? $"0x{rc:x}, {where}" : $"0x{rc:x}";
        return $"{TpmCc.Name(commandCode)} failed: {name} ({detail}): {TpmRc.Explain(commandCode, rc)}";
    }
}

/// <summary>TPM_RC decoding (Part 2 §6.6): format 0 (bit 7 clear) and format 1 (bit 7 set: error number, parameter/handle/session number).</summary>
public static class TpmRc
{
    public const uint Success = 0;
    private const uint Fmt1 = 0x080;
    public const uint Value = 0x084;
    public const uint Handle = 0x08B;
    public const uint AuthFail = 0x08E;
    public const uint Size = 0x095;
    public const uint Integrity = 0x09F;
    public const uint BadAuth = 0x0A2;
    public const uint ObjectMemory = 0x902;
    public const uint SessionMemory = 0x903;
    public const uint Yielded = 0x908;
    public const uint Testing = 0x90A;
    public const uint Retry = 0x922;

    public static bool IsFormat1(uint rc) => (rc & Fmt1) != 0;

    public static uint Base(uint rc) => IsFormat1(rc) ? Fmt1 | (rc & 0x3F) : rc;

    /// <summary>"parameter 2", "handle 1", "session 1", or "" (format 0).</summary>
    public static string Where(uint rc)
    {
        if (!IsFormat1(rc))
        {
            return "";
        }
        var n = (rc >> 8) & 0xF;
        if ((rc & 0x40) != 0)
        {
            return $"parameter {n}";
        }
        if (n == 0)
        {
            return "";
        }
        return n < 8 ? $"handle {n}" : $"session {n - 8}";
    }

    public static string Name(uint rc) => Known.TryGetValue(Base(rc), out var k) ? k.Name
        : (rc & 0x100) == 0 && !IsFormat1(rc) ? "TPM 1.2 response code"
        : (rc & 0x400) != 0 && !IsFormat1(rc) ? "vendor-specific response code"
        : "TPM_RC_0x" + Base(rc).ToString("x", CultureInfo.InvariantCulture);

    /// <summary>A plain sentence for the operator; a few codes get a command-specific one.</summary>
    public static string Explain(uint commandCode, uint rc)
    {
        var b = Base(rc);
        if (commandCode == TpmCc.ActivateCredential && b is Integrity or Value or Size)
        {
            return "the credential was not made for this TPM's EK and this AK";
        }
        if (commandCode == TpmCc.ActivateCredential && b == 0x101)
        {
            return "the TPM went into failure mode (swtpm does so for a credential made for another TPM's RSA EK) and must be restarted";
        }
        if (commandCode == TpmCc.NvRead && b is AuthFail or BadAuth)
        {
            return "the NV index needs a password or policy Writ does not have";
        }
        return Known.TryGetValue(b, out var k) ? k.Sentence : "see the TPM 2.0 library specification, part 2, TPM_RC";
    }

    private static readonly Dictionary<uint, (string Name, string Sentence)> Known = new()
    {
        [0x100] = ("TPM_RC_INITIALIZE", "the TPM was not started (TPM2_Startup missing)"),
        [0x101] = ("TPM_RC_FAILURE", "the TPM is in failure mode and must be reset"),
        [0x120] = ("TPM_RC_DISABLED", "the command is disabled"),
        [0x124] = ("TPM_RC_AUTH_TYPE", "the authorization session is of the wrong type"),
        [0x125] = ("TPM_RC_AUTH_MISSING", "the command needs an authorization session it did not get"),
        [0x126] = ("TPM_RC_POLICY", "the policy session does not satisfy the object's policy"),
        [0x127] = ("TPM_RC_PCR", "PCR check failed"),
        [0x128] = ("TPM_RC_PCR_CHANGED", "the PCRs changed during the command"),
        [0x12E] = ("TPM_RC_TOO_MANY_CONTEXTS", "the TPM has no room for another context"),
        [0x130] = ("TPM_RC_REBOOT", "the TPM needs a reboot"),
        [0x143] = ("TPM_RC_COMMAND_CODE", "the TPM does not implement this command"),
        [0x149] = ("TPM_RC_NV_AUTHORIZATION", "the NV index may not be read with this authorization"),
        [0x14A] = ("TPM_RC_NV_UNINITIALIZED", "the NV index was never written"),
        [0x14B] = ("TPM_RC_NV_SPACE", "the TPM's NV memory is full"),
        [0x152] = ("TPM_RC_PARENT", "the parent is not a storage key"),
        [0x081] = ("TPM_RC_ASYMMETRIC", "the key is not an asymmetric key of the kind the command needs"),
        [0x082] = ("TPM_RC_ATTRIBUTES", "the object's attributes do not allow this"),
        [0x083] = ("TPM_RC_HASH", "hash algorithm not supported or not allowed"),
        [Value] = ("TPM_RC_VALUE", "a value is out of range or wrong for the context"),
        [0x085] = ("TPM_RC_HIERARCHY", "the hierarchy is disabled or not allowed here"),
        [0x087] = ("TPM_RC_KEY_SIZE", "the key size is not supported"),
        [0x08A] = ("TPM_RC_TYPE", "the object is of the wrong type"),
        [Handle] = ("TPM_RC_HANDLE", "the handle does not name a loaded object or session"),
        [0x08D] = ("TPM_RC_RANGE", "a value is outside its allowed range"),
        [AuthFail] = ("TPM_RC_AUTH_FAIL", "the authorization (password or HMAC) is wrong"),
        [0x08F] = ("TPM_RC_NONCE", "the nonce is invalid"),
        [0x092] = ("TPM_RC_SCHEME", "the signing or encryption scheme is not supported by the key"),
        [Size] = ("TPM_RC_SIZE", "a size field is wrong"),
        [0x096] = ("TPM_RC_SYMMETRIC", "the symmetric algorithm is not supported"),
        [0x097] = ("TPM_RC_TAG", "the structure tag is wrong"),
        [0x098] = ("TPM_RC_SELECTOR", "a union selector is wrong"),
        [0x09A] = ("TPM_RC_INSUFFICIENT", "the input was too short"),
        [0x09B] = ("TPM_RC_SIGNATURE", "the signature does not verify"),
        [0x09C] = ("TPM_RC_KEY", "the key is wrong or does not fit the command"),
        [0x09D] = ("TPM_RC_POLICY_FAIL", "the policy does not match the object's authPolicy"),
        [Integrity] = ("TPM_RC_INTEGRITY", "an integrity check failed (the data was not made for this TPM or key)"),
        [0x0A0] = ("TPM_RC_TICKET", "the ticket is invalid"),
        [0x0A1] = ("TPM_RC_RESERVED_BITS", "reserved bits are set"),
        [BadAuth] = ("TPM_RC_BAD_AUTH", "the authorization is wrong (a bad password, or a policy that does not match)"),
        [0x0A3] = ("TPM_RC_EXPIRED", "the policy has expired"),
        [0x0A6] = ("TPM_RC_CURVE", "the elliptic curve is not supported"),
        [0x0A7] = ("TPM_RC_ECC_POINT", "the point is not on the curve"),
        [0x902] = ("TPM_RC_OBJECT_MEMORY", "the TPM has no room for another object: something leaks transient handles"),
        [0x903] = ("TPM_RC_SESSION_MEMORY", "the TPM has no room for another session: something leaks sessions"),
        [0x904] = ("TPM_RC_MEMORY", "the TPM is out of memory"),
        [0x905] = ("TPM_RC_SESSION_HANDLES", "the TPM has no free session handle"),
        [0x906] = ("TPM_RC_OBJECT_HANDLES", "the TPM has no free object handle"),
        [0x908] = ("TPM_RC_YIELDED", "the TPM yielded: retry"),
        [0x909] = ("TPM_RC_CANCELED", "the command was canceled"),
        [0x90A] = ("TPM_RC_TESTING", "the TPM is self-testing: retry"),
        [0x921] = ("TPM_RC_LOCKOUT", "the TPM is in dictionary-attack lockout"),
        [0x922] = ("TPM_RC_RETRY", "the TPM asks to retry the command"),
    };
}
