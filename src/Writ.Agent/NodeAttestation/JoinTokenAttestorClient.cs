using System.Security.Cryptography;
using System.Text;

namespace Writ.Agent.NodeAttestation;

/// <summary><c>join_token</c>: the evidence is the token (UTF-8); there is no challenge.</summary>
public sealed class JoinTokenAttestorClient : INodeAttestorClient
{
    private readonly string _token;

    public JoinTokenAttestorClient(string token)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(token);
        _token = token.Trim();
    }

    public string Type => "join_token";

    public string Description => "join token";

    public string? SingleUseFingerprint => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(_token)));

    public Task<ReadOnlyMemory<byte>> EvidenceAsync(CancellationToken ct) => Task.FromResult<ReadOnlyMemory<byte>>(Encoding.UTF8.GetBytes(_token));

    public Task<ReadOnlyMemory<byte>> AnswerAsync(ReadOnlyMemory<byte> challenge, CancellationToken ct) =>
        throw new AgentFatalException("the server sent a challenge to a join-token attestation: check that --server names a Writ server");
}
