using Writ.Tpm.Marshalling;

namespace Writ.Tpm.Structures;

/// <summary>TPMS_CLOCK_INFO: the TPM's clock and its reset/restart counters when it signed (a reboot changes ResetCount).</summary>
public readonly record struct TpmClockInfo(ulong Clock, uint ResetCount, uint RestartCount, bool Safe);

/// <summary>TPMS_QUOTE_INFO: the PCRs a quote covers and the digest of their values.</summary>
public sealed class TpmQuoteInfo
{
    private readonly byte[] _pcrDigest;

    internal TpmQuoteInfo(IReadOnlyList<TpmPcrSelection> pcrSelections, byte[] pcrDigest)
    {
        PcrSelections = pcrSelections;
        _pcrDigest = pcrDigest;
    }

    /// <summary>The quoted banks and PCRs, in the order the TPM hashed them (banks in list order, indices ascending).</summary>
    public IReadOnlyList<TpmPcrSelection> PcrSelections { get; }

    /// <summary>H_signHash(the selected PCR values concatenated in selection order).</summary>
    public ReadOnlySpan<byte> PcrDigest => _pcrDigest;
}

/// <summary>TPMS_CERTIFY_INFO: the name and qualified name of the key a TPM2_Certify vouches for.</summary>
public sealed class TpmCertifyInfo
{
    private readonly byte[] _name;
    private readonly byte[] _qualifiedName;

    internal TpmCertifyInfo(byte[] name, byte[] qualifiedName)
    {
        _name = name;
        _qualifiedName = qualifiedName;
    }

    /// <summary>The certified object's name (nameAlg || H(TPMT_PUBLIC)).</summary>
    public ReadOnlySpan<byte> Name => _name;

    public ReadOnlySpan<byte> QualifiedName => _qualifiedName;
}

/// <summary>
/// A TPMS_ATTEST (Part 2 §10.12.12): what a TPM signs for TPM2_Quote and TPM2_Certify. Parsing checks only the form;
/// that it is genuine (magic, signature, nonce) is <see cref="Verification.TpmAttestationCheck"/>'s job. Immutable.
/// </summary>
public sealed class TpmsAttest
{
    private readonly byte[] _qualifiedSigner;
    private readonly byte[] _extraData;

    private TpmsAttest(uint magic, ushort type, byte[] qualifiedSigner, byte[] extraData, TpmClockInfo clockInfo, ulong firmwareVersion,
        TpmQuoteInfo? quote, TpmCertifyInfo? certify)
    {
        Magic = magic;
        Type = type;
        _qualifiedSigner = qualifiedSigner;
        _extraData = extraData;
        ClockInfo = clockInfo;
        FirmwareVersion = firmwareVersion;
        Quote = quote;
        Certify = certify;
    }

    /// <summary>TPM_GENERATED_VALUE (0xFF544347) when the TPM produced the structure.</summary>
    public uint Magic { get; }

    /// <summary><see cref="TpmSt.AttestQuote"/> or <see cref="TpmSt.AttestCertify"/>.</summary>
    public ushort Type { get; }

    /// <summary>The qualified name of the signing key.</summary>
    public ReadOnlySpan<byte> QualifiedSigner => _qualifiedSigner;

    /// <summary>The caller's qualifying data: the verifier's nonce.</summary>
    public ReadOnlySpan<byte> ExtraData => _extraData;

    public TpmClockInfo ClockInfo { get; }

    public ulong FirmwareVersion { get; }

    /// <summary>The quote's PCR selection and digest; null unless <see cref="Type"/> is a quote.</summary>
    public TpmQuoteInfo? Quote { get; }

    /// <summary>The certified key's names; null unless <see cref="Type"/> is a certification.</summary>
    public TpmCertifyInfo? Certify { get; }

    /// <summary>
    /// Parses a TPMS_ATTEST of type quote or certify (no size prefix). <see cref="TpmFormatException"/> on truncated
    /// input, trailing bytes or any other attestation type.
    /// </summary>
    public static TpmsAttest Parse(ReadOnlySpan<byte> attest)
    {
        var r = new TpmReader(attest);
        var magic = r.ReadUInt32();
        var type = r.ReadUInt16();
        var signer = ReadName(ref r, "qualified signer");
        var extra = r.ReadSized();
        if (extra.Length > 64)
            throw new TpmFormatException($"attestation has {extra.Length} bytes of qualifying data; at most 64 expected");
        var clock = new TpmClockInfo(r.ReadUInt64(), r.ReadUInt32(), r.ReadUInt32(), ReadYesNo(ref r));
        var firmware = r.ReadUInt64();
        TpmQuoteInfo? quote = null;
        TpmCertifyInfo? certify = null;
        switch (type)
        {
            case TpmSt.AttestQuote:
            {
                var selections = TpmPcrSelection.Read(ref r);
                var digest = r.ReadSized();
                if (digest.Length > 64)
                    throw new TpmFormatException($"quote has a {digest.Length}-byte PCR digest; at most 64 expected");
                quote = new TpmQuoteInfo(selections, digest.ToArray());
                break;
            }
            case TpmSt.AttestCertify:
                certify = new TpmCertifyInfo(ReadName(ref r, "certified name"), ReadName(ref r, "certified qualified name"));
                break;
            default:
                throw new TpmFormatException($"attestation has type 0x{type:x4}; a quote (0x8018) or a certification (0x8017) expected");
        }
        r.ExpectEnd("TPMS_ATTEST");
        return new TpmsAttest(magic, type, signer.ToArray(), extra.ToArray(), clock, firmware, quote, certify);
    }

    private static byte[] ReadName(ref TpmReader r, string what)
    {
        var name = r.ReadSized();
        if (name.Length > 2 + 64)
            throw new TpmFormatException($"attestation's {what} is {name.Length} bytes; a name is at most 66");
        return name.ToArray();
    }

    private static bool ReadYesNo(ref TpmReader r) => r.ReadUInt8() switch
    {
        0 => false,
        1 => true,
        var b => throw new TpmFormatException($"attestation's clock safe flag is {b}; 0 or 1 expected"),
    };
}
