using System.Security.Cryptography;
using System.Text;
using Writ.Protocol.Errors;
using Writ.Protocol.Evidence;
using Writ.Server.Storage;
using Writ.Spiffe;

namespace Writ.Server.NodeAttestation;

/// <summary>
/// <c>join_token</c>: the evidence is the token's secret (UTF-8), printed once by <c>writ token generate</c>. The token must
/// exist, be unexpired and unused; it is burnt only when the node is stored (after an allowing decision), so a refused
/// attempt leaves it usable. Agent ID <c>spiffe://TD/writ/agent/join_token/TOKEN-ID</c>, selector
/// <c>join_token:TOKEN-ID</c>, alias the token's alias when it has one. No challenge.
/// </summary>
public sealed class JoinTokenNodeAttestor(IJoinTokenStore tokens) : INodeAttestor
{
    public const string TypeName = "join_token";

    /// <summary>A secret longer than this is no token of ours (generated ones are 43 characters).</summary>
    public const int MaxTokenLength = 256;

    public string Type => TypeName;

    public async Task<AttestedNodeFacts> AttestAsync(NodeEvidence evidence, NodeChallenge challenge, CancellationToken ct)
    {
        var secret = Decode(evidence.Payload);
        var hash = HashToken(secret);
        var check = await tokens.CheckAsync(hash, evidence.Now, ct).ConfigureAwait(false);
        if (check.Outcome != JoinTokenOutcome.Usable || check.Token is not { } token)
        {
            throw check.Outcome switch
            {
                JoinTokenOutcome.AlreadyUsed => Used(),
                JoinTokenOutcome.Expired => new WritException(NodeAttestationCodes.TokenExpired, WritErrorKind.PermissionDenied,
                    "join token has expired: generate a new one with 'writ token generate'"),
                _ => new WritException(NodeAttestationCodes.TokenUnknown, WritErrorKind.PermissionDenied,
                    "join token is not known to this server: check the token, or generate one with 'writ token generate'"),
            };
        }
        var agentId = SpiffeId.FromSegments(evidence.TrustDomain, "writ", "agent", TypeName, token.Id);
        return new AttestedNodeFacts(TypeName, agentId, [new Selector(TypeName, token.Id)], token.Alias is { Length: > 0 } a ? [a] : [],
            new SingleUseEvidence(SingleUseEvidence.JoinToken, hash));
    }

    /// <summary>The refusal of a token that was used (also when another agent burnt it after our check).</summary>
    public static WritException Used() => new(NodeAttestationCodes.TokenUsed, WritErrorKind.PermissionDenied,
        "join token was already used (tokens are single-use): generate a new one with 'writ token generate'");

    /// <summary>Join tokens are stored only as SHA-256 hashes; the secret itself is never written.</summary>
    public static byte[] HashToken(string token) => SHA256.HashData(Encoding.UTF8.GetBytes(token.Trim()));

    private static string Decode(ReadOnlyMemory<byte> payload)
    {
        string secret;
        try
        {
            secret = new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(payload.Span).Trim();
        }
        catch (DecoderFallbackException)
        {
            secret = "";
        }
        if (secret.Length == 0 || secret.Length > MaxTokenLength || secret.Any(char.IsControl))
        {
            throw new WritException(NodeAttestationCodes.TokenMalformed, WritErrorKind.InvalidArgument,
                "the join token is empty or malformed: pass the token printed by 'writ token generate'");
        }
        return secret;
    }
}
