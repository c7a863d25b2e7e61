namespace Writ.Server.Issuance;

/// <summary>
/// The stable codes of issuance refusals (docs/errors.md, "Issuance"): thrown as <see cref="Writ.Protocol.Errors.WritException"/>
/// by single-credential calls, and carried per CSR in a <c>SignX509Svids</c> answer (<c>SvidDenial.error_code</c>).
/// </summary>
public static class IssuanceErrors
{
    /// <summary>Refused by the entry match (expired entry, selector missing from the evidence) or by Cedar policy.</summary>
    public const string Denied = "WRIT-ISSUE-DENIED";

    /// <summary>Over <c>issuance.rate_per_agent</c> or <c>issuance.rate_per_workload</c>.</summary>
    public const string RateLimited = "WRIT-ISSUE-RATE-LIMITED";

    /// <summary>The entry does not exist or is not parented to the calling agent (the same answer for both).</summary>
    public const string EntryUnauthorized = "WRIT-ISSUE-ENTRY-UNAUTHORIZED";

    /// <summary>The CSR is empty, badly signed, or asks for another identity.</summary>
    public const string BadCsr = "WRIT-ISSUE-BAD-CSR";

    /// <summary>The workload evidence sent with the request breaks the evidence rules.</summary>
    public const string BadEvidence = "WRIT-ISSUE-BAD-EVIDENCE";

    /// <summary>The request (a CSR with its evidence) is over <c>issuance.max_request_bytes</c>.</summary>
    public const string TooLarge = "WRIT-ISSUE-TOO-LARGE";

    /// <summary>An admin mint (<c>writ x509 mint</c>, <c>writ jwt mint</c>) refused by a Cedar forbid policy.</summary>
    public const string MintDenied = "WRIT-MINT-DENIED";
}
