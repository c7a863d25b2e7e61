using System.Text.Json;

namespace Writ.Agent.NodeAttestation;

/// <summary>
/// <c>k8s_psat</c> (<c>--node-attestor k8s_psat --k8s-psat-cluster NAME [--k8s-psat-token-path PATH]</c>): the evidence is
/// <c>{"cluster": NAME, "token": TOKEN}</c>, the DaemonSet pod's projected service-account token read from its file at
/// every attestation (the kubelet rotates it in place). No challenge: the server checks the token with the cluster's
/// TokenReview API or its issuer's keys.
/// </summary>
public sealed class K8sPsatAttestorClient(string cluster, string tokenPath) : INodeAttestorClient
{
    public const string TypeName = "k8s_psat";

    /// <summary>Bytes of a token file the agent reads (a projected token is 1–2 KB).</summary>
    public const int MaxTokenBytes = 16 * 1024;

    public string Type => TypeName;

    public string Description => "k8s_psat service-account token";

    /// <summary>Reusable: the token file always holds the pod's current token.</summary>
    public string? SingleUseFingerprint => null;

    public string Cluster => cluster;

    public string TokenPath => tokenPath;

    public async Task<ReadOnlyMemory<byte>> EvidenceAsync(CancellationToken ct)
    {
        string token;
        try
        {
            // The path is a symlink into the kubelet's ..data directory: the opened stream has the token's own length.
            using var file = File.OpenRead(tokenPath);
            if (file.Length > MaxTokenBytes)
            {
                throw new AgentFatalException($"k8s_psat token file '{tokenPath}' has {file.Length} bytes, more than {MaxTokenBytes}: point --k8s-psat-token-path at the projected service-account token");
            }
            using var reader = new StreamReader(file, System.Text.Encoding.UTF8);
            token = (await reader.ReadToEndAsync(ct).ConfigureAwait(false)).Trim();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new AgentFatalException($"k8s_psat token file '{tokenPath}' cannot be read ({e.GetType().Name}): mount a projected service-account token there (docs/node-attestation.md) or set --k8s-psat-token-path");
        }
        if (token.Length == 0 || token.Any(ch => char.IsWhiteSpace(ch) || char.IsControl(ch)))
        {
            throw new AgentFatalException($"k8s_psat token file '{tokenPath}' holds no token: mount a projected service-account token there (docs/node-attestation.md)");
        }
        return JsonSerializer.SerializeToUtf8Bytes(new Dictionary<string, string> { ["cluster"] = cluster, ["token"] = token });
    }

    public Task<ReadOnlyMemory<byte>> AnswerAsync(ReadOnlyMemory<byte> challenge, CancellationToken ct) =>
        throw new AgentFatalException("the server sent a challenge to a k8s_psat attestation, which has none: check that --server names a Writ server of this version");
}
