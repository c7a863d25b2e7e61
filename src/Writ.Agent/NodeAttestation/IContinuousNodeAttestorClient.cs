namespace Writ.Agent.NodeAttestation;

/// <summary>
/// The agent side of a continuous node attestor (server: <c>IContinuousNodeAttestor</c>): answers the rechecks the
/// server sends over Sync (<c>SyncUpdate.node_recheck</c>, tpm: a fresh quote over the server's nonce), and may attest
/// again whenever the agent needs a new SVID (restart, renewal), since its evidence is not single-use. An agent with
/// such an attestor keeps its session (mTLS) key only in memory, never in the data dir: it attests on every start and
/// renews by attesting again, so a copy of the data dir holds nothing that acts as the node.
/// </summary>
public interface IContinuousNodeAttestorClient : INodeAttestorClient
{
    /// <summary>The answer to one recheck payload, sent back with <c>AnswerNodeRecheck</c>.</summary>
    Task<ReadOnlyMemory<byte>> AnswerRecheckAsync(ReadOnlyMemory<byte> payload, CancellationToken ct);
}
