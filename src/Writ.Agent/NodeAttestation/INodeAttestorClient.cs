namespace Writ.Agent.NodeAttestation;

/// <summary>
/// The agent side of a node attestor (the server side is <c>Writ.Server.NodeAttestation.INodeAttestor</c> of the same
/// type): produces the evidence the first AttestAgent request carries and answers the server's challenges.
/// </summary>
public interface INodeAttestorClient
{
    /// <summary>The attestation type the server picks its attestor by (<c>join_token</c>, …).</summary>
    string Type { get; }

    /// <summary>What the operator knows this evidence as, for messages ("join token").</summary>
    string Description { get; }

    /// <summary>
    /// A stable fingerprint (hex) of single-use evidence, so an agent never sends evidence it already used; null when the
    /// evidence may be sent again.
    /// </summary>
    string? SingleUseFingerprint { get; }

    /// <summary>
    /// The CSR (DER) the agent sends with this attestation, given before <see cref="EvidenceAsync"/>: an attestor whose
    /// answer binds the agent's key to its evidence (tpm signs its hash) keeps it; the others ignore it.
    /// </summary>
    void UseCsr(ReadOnlyMemory<byte> csrDer)
    {
    }

    Task<ReadOnlyMemory<byte>> EvidenceAsync(CancellationToken ct);

    /// <summary>The answer to one server challenge. An attestor without challenges refuses them.</summary>
    Task<ReadOnlyMemory<byte>> AnswerAsync(ReadOnlyMemory<byte> challenge, CancellationToken ct);
}
