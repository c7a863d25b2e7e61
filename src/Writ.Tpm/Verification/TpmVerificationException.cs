namespace Writ.Tpm.Verification;

/// <summary>
/// TPM evidence that is well-formed but does not prove what it must (a quote over another nonce, a signature by another
/// key, a PCR digest that does not match the reported values, a key with the wrong attributes). <see cref="Code"/> is a
/// stable <c>WRIT-TPM-…</c> code (docs/errors.md); the message is one line that says what was wrong and what to do.
/// </summary>
public sealed class TpmVerificationException : Exception
{
    public TpmVerificationException(string code, string message)
        : base(message)
    {
        ArgumentException.ThrowIfNullOrEmpty(code);
        Code = code;
    }

    /// <summary>The stable error code, e.g. <c>WRIT-TPM-QUOTE-NONCE</c>.</summary>
    public string Code { get; }
}

/// <summary>The stable codes of <see cref="TpmVerificationException"/>; each has a row in docs/errors.md.</summary>
public static class TpmErrorCodes
{
    public const string EkUnsupported = "WRIT-TPM-EK-UNSUPPORTED";
    public const string AkAttributes = "WRIT-TPM-AK-ATTRIBUTES";
    public const string AgentKeyAttributes = "WRIT-TPM-AGENT-KEY-ATTRIBUTES";
    public const string QuoteFormat = "WRIT-TPM-QUOTE-FORMAT";
    public const string QuoteSignature = "WRIT-TPM-QUOTE-SIGNATURE";
    public const string QuoteType = "WRIT-TPM-QUOTE-TYPE";
    public const string QuoteNonce = "WRIT-TPM-QUOTE-NONCE";
    public const string QuotePcrs = "WRIT-TPM-QUOTE-PCRS";
    public const string QuoteDigest = "WRIT-TPM-QUOTE-DIGEST";
    public const string CertifyFormat = "WRIT-TPM-CERTIFY-FORMAT";
    public const string CertifySignature = "WRIT-TPM-CERTIFY-SIGNATURE";
    public const string CertifyType = "WRIT-TPM-CERTIFY-TYPE";
    public const string CertifyNonce = "WRIT-TPM-CERTIFY-NONCE";
    public const string CertifyName = "WRIT-TPM-CERTIFY-NAME";
}
