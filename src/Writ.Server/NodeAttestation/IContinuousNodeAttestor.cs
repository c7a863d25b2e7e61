using Writ.Protocol.Evidence;
using Writ.Server.Storage;

namespace Writ.Server.NodeAttestation;

/// <summary>What the server does to a node whose continuous attestation fails (config per attestor, e.g. <c>tpm.drift_action</c>).</summary>
public enum DriftAction
{
    /// <summary>No new SVIDs through the node; what it holds runs out. Ledger record and alert.</summary>
    Quarantine,

    /// <summary>Quarantine, and the agent SVID and every SVID issued through the node are revoked and pushed at once (as a ban).</summary>
    Revoke,
}

/// <summary>
/// A node attestor whose evidence the server checks again while the agent runs (tpm: a fresh quote over a new nonce
/// every <see cref="RecheckInterval"/>), and whose node may attest again (a restarted agent re-attests with the same
/// hardware and gets the same agent ID; single-use evidence such as a join token cannot). The recheck travels to the
/// agent as <c>SyncUpdate.node_recheck</c> and comes back through <c>AnswerNodeRecheck</c>; the scheduling, deadlines,
/// drift handling and ledger records are the node posture machinery's, the attestor only makes and appraises rechecks.
/// </summary>
public interface IContinuousNodeAttestor : INodeAttestor
{
    bool INodeAttestor.Reattestable => true;

    /// <summary>How often each node of this type is re-checked.</summary>
    TimeSpan RecheckInterval { get; }

    /// <summary>How long after a recheck was sent a missing answer is tolerated before the node counts as drifted.</summary>
    TimeSpan RecheckGrace { get; }

    /// <summary>What drift does to a node of this type.</summary>
    DriftAction DriftAction { get; }

    /// <summary>
    /// A fresh recheck for <paramref name="node"/> (its <see cref="AttestedNode.AttestorState"/> is what the attestor stored
    /// at attestation): the payload goes to the agent; <see cref="NodeRecheck.Expected"/> stays on the server.
    /// </summary>
    NodeRecheck NewRecheck(AttestedNode node, DateTimeOffset now);

    /// <summary>
    /// Appraises the agent's answer to <paramref name="recheck"/>. A refusal of the answer's form or signature is a
    /// drift too (<see cref="NodeAppraisal.Drifted"/>), never an exception: an exception is a bug.
    /// </summary>
    Task<NodeAppraisal> AppraiseAsync(AttestedNode node, NodeRecheck recheck, ReadOnlyMemory<byte> answer, CancellationToken ct);

    /// <summary>
    /// Appraises a re-attestation of the existing <paramref name="node"/> with fresh <paramref name="facts"/> against what
    /// was stored for it: a change a recheck would call drift (tpm: a PCR outside the node's reference sets) is drift here
    /// too, or restarting the agent would reset the node's baseline. Null (the default) when there is nothing to compare.
    /// </summary>
    Task<NodeAppraisal?> AppraiseReattestationAsync(AttestedNode node, AttestedNodeFacts facts, CancellationToken ct) => Task.FromResult<NodeAppraisal?>(null);
}

/// <summary>One outstanding recheck: its id (echoed by the agent), the payload sent, what the server expects (e.g. the nonce).</summary>
public sealed record NodeRecheck(string Id, ReadOnlyMemory<byte> Payload, ReadOnlyMemory<byte> Expected, DateTimeOffset IssuedAt);

/// <summary>
/// The outcome of a recheck. Healthy: the node's selectors now (may differ, e.g. a PCR inside the node's reference set
/// changed) and the attestor state to keep. Drifted: a stable code (<c>WRIT-TPM-…</c>) and a one-line reason for the
/// ledger, the alert and <c>writ agent show</c>.
/// </summary>
public sealed record NodeAppraisal(bool Healthy, IReadOnlyList<Selector> Selectors, byte[]? AttestorState, string? DriftCode, string? DriftReason)
{
    public static NodeAppraisal Ok(IReadOnlyList<Selector> selectors, byte[]? attestorState) => new(true, selectors, attestorState, null, null);

    public static NodeAppraisal Drifted(string code, string reason) => new(false, [], null, code, reason);
}
