namespace Writ.Server.NodeAttestation;

/// <summary>The stable codes of continuous node attestation (node posture); listed in docs/errors.md.</summary>
public static class NodePostureCodes
{
    /// <summary>A drifted node tried to attest again: only an admin's readmit lets it back.</summary>
    public const string NodeDrifted = "WRIT-ATTEST-NODE-DRIFTED";

    /// <summary>A drifted (quarantined) node asked for an SVID.</summary>
    public const string AgentDrifted = "WRIT-AGENT-DRIFTED";

    /// <summary>An agent of a continuous attestor asked to renew: it must attest again (fresh hardware proof).</summary>
    public const string Reattest = "WRIT-AGENT-REATTEST";

    /// <summary>Drift code: no good answer to a recheck within the grace period.</summary>
    public const string RecheckMissing = "WRIT-NODE-RECHECK-MISSING";

    /// <summary>An answer to a recheck this node does not have outstanding (unknown, answered, expired or another node's).</summary>
    public const string RecheckUnknown = "WRIT-NODE-RECHECK-UNKNOWN";

    /// <summary>A recheck answer larger than node attestation accepts.</summary>
    public const string RecheckTooLarge = "WRIT-NODE-RECHECK-TOO-LARGE";

    /// <summary>The server failed to appraise an answer (a bug or a timeout): the node is not marked drifted for it.</summary>
    public const string RecheckFailed = "WRIT-NODE-RECHECK-FAILED";

    /// <summary>Readmit of a node that is not drifted (active, banned or unknown).</summary>
    public const string NotDrifted = "WRIT-AGENT-NOT-DRIFTED";
}
