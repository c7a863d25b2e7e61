namespace Writ.Server.NodeAttestation;

/// <summary>The stable error codes of node attestation and agent renewal (listed in docs/errors.md).</summary>
public static class NodeAttestationCodes
{
    public const string UnknownType = "WRIT-ATTEST-UNKNOWN-TYPE";
    public const string TooLarge = "WRIT-ATTEST-TOO-LARGE";
    public const string Timeout = "WRIT-ATTEST-TIMEOUT";
    public const string Failed = "WRIT-ATTEST-FAILED";
    public const string Denied = "WRIT-ATTEST-DENIED";
    public const string BadCsr = "WRIT-ATTEST-BAD-CSR";
    public const string BadRequest = "WRIT-ATTEST-BAD-REQUEST";
    public const string ForeignId = "WRIT-ATTEST-FOREIGN-ID";
    public const string NodeExists = "WRIT-ATTEST-NODE-EXISTS";
    public const string TokenMalformed = "WRIT-ATTEST-TOKEN-MALFORMED";
    public const string TokenUnknown = "WRIT-ATTEST-TOKEN-UNKNOWN";
    public const string TokenUsed = "WRIT-ATTEST-TOKEN-USED";
    public const string TokenExpired = "WRIT-ATTEST-TOKEN-EXPIRED";
    public const string AgentBanned = "WRIT-AGENT-BANNED";
    public const string AgentSuperseded = "WRIT-AGENT-SUPERSEDED";
}
