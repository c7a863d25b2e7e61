using Writ.Protocol.Evidence;
using Writ.Server.Storage;
using Writ.Spiffe;

namespace Writ.Server.NodeAttestation;

/// <summary>
/// Sends one challenge to the agent and returns its answer (the agent API carries it over the attestation stream).
/// An attestor may call it zero or more times; every answer is size-checked before the attestor sees it.
/// </summary>
public delegate Task<ReadOnlyMemory<byte>> NodeChallenge(ReadOnlyMemory<byte> challenge, CancellationToken ct);

/// <summary>What an attestor is given: the agent's evidence payload, the server's trust domain and the time.</summary>
public sealed record NodeEvidence(ReadOnlyMemory<byte> Payload, TrustDomain TrustDomain, DateTimeOffset Now)
{
    /// <summary>
    /// The agent's CSR (DER, already verified) the SVID will be issued for, so a proof of possession can be bound to it
    /// (x509pop, tpm sign over its SHA-256): evidence proven for one agent key cannot get an SVID for another.
    /// </summary>
    public ReadOnlyMemory<byte> Csr { get; init; }
}

/// <summary>
/// What an attestor proved about a node: its attestation type, the agent's SPIFFE ID (in the server's trust domain, under
/// <c>/writ/agent/TYPE/</c>), the node selectors and aliases entries may be parented to, and the single-use evidence to
/// burn when (and only when) the node is stored.
/// </summary>
public sealed record AttestedNodeFacts(string Type, SpiffeId AgentId, IReadOnlyList<Selector> Selectors, IReadOnlyList<string> Aliases, SingleUseEvidence? Burn)
{
    /// <summary>
    /// What an attestor keeps about the node, stored with it as <see cref="AttestedNode.AttestorState"/> and replaced at
    /// every re-attestation: a continuous attestor's baseline for its rechecks (tpm: the AK public area, the EK hash, the
    /// attested PCR values), or a re-attestable one's memory of the evidence last used (k8s_psat: the token's hash and
    /// issue time, so neither it nor an older token attests the node again). Opaque to everything else.
    /// </summary>
    public byte[]? AttestorState { get; init; }
}

/// <summary>
/// A server-side node attestor, shaped as SPIRE's: evidence in, zero or more challenge/response rounds, attested facts
/// out. It only checks evidence; it never writes: the Cedar decision, the burn of single-use evidence and the node record
/// are <see cref="NodeAttestationService"/>'s, so a denied attempt leaves the evidence usable. A refusal is a
/// <see cref="Writ.Protocol.Errors.WritException"/> with a stable <c>WRIT-ATTEST-…</c> code; any other exception is a bug,
/// reported to the agent as <c>WRIT-ATTEST-FAILED</c> without details. The service cuts off an attestor that overruns
/// its time limit whether or not it honours the cancellation token.
/// </summary>
public interface INodeAttestor
{
    /// <summary>The attestation type agents name (<c>join_token</c>, later <c>tpm</c>, <c>k8s_psat</c>, …): <c>[a-z0-9_]+</c>.</summary>
    string Type { get; }

    /// <summary>
    /// Whether an already attested (not banned, not drifted) node may attest again with fresh evidence of this type and
    /// keep its agent ID (SPIRE's "re-attestable": tpm, x509pop). False for single-use evidence such as a join token.
    /// </summary>
    bool Reattestable => false;

    /// <summary>
    /// Why <paramref name="facts"/> may not attest the existing <paramref name="node"/> again although they name its agent
    /// ID (x509pop: a certificate from another CA of the bundle whose template values collide), or null when they may.
    /// </summary>
    string? ReattestConflict(AttestedNode node, AttestedNodeFacts facts) => null;

    Task<AttestedNodeFacts> AttestAsync(NodeEvidence evidence, NodeChallenge challenge, CancellationToken ct);
}
