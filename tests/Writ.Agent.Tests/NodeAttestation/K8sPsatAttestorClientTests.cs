using System.Text.Json;
using Writ.Agent.NodeAttestation;
using Writ.Spiffe;

namespace Writ.Agent.Tests.NodeAttestation;

/// <summary>
/// The agent side of k8s_psat on a token volume laid out as the kubelet writes a projected volume (a timestamped
/// directory, the <c>..data</c> symlink swapped atomically on rotation, <c>token</c> → <c>..data/token</c>).
/// </summary>
public sealed class K8sPsatAttestorClientTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("writ-psat-agent-").FullName;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string TokenPath => Path.Combine(_dir, "token");

    private int _generation;

    /// <summary>Writes <paramref name="token"/> the way the kubelet's atomic writer does.</summary>
    private void Project(string token)
    {
        var generation = Path.Combine(_dir, $"..2026_12_07_17_00_{_generation++:00}.000000001");
        Directory.CreateDirectory(generation);
        File.WriteAllText(Path.Combine(generation, "token"), token);
        // The kubelet renames a new ..data link over the old one; the test swaps it (the agent reads between swaps).
        var data = Path.Combine(_dir, "..data");
        if (new FileInfo(data).LinkTarget is not null)
        {
            File.Delete(data);
        }
        File.CreateSymbolicLink(data, Path.GetFileName(generation));
        if (!File.Exists(TokenPath))
        {
            File.CreateSymbolicLink(TokenPath, "..data/token");
        }
    }

    private static (string Cluster, string Token) Parse(ReadOnlyMemory<byte> evidence)
    {
        using var doc = JsonDocument.Parse(evidence);
        Assert.Equal(2, doc.RootElement.EnumerateObject().Count());
        return (doc.RootElement.GetProperty("cluster").GetString()!, doc.RootElement.GetProperty("token").GetString()!);
    }

    [Fact]
    public async Task Sends_the_cluster_and_the_current_token_rereading_the_file_after_the_kubelet_rotates_it()
    {
        Project("eyJhbGciOiJSUzI1NiJ9.eyJmaXJzdCI6MX0.c2ln\n");
        var client = new K8sPsatAttestorClient("prod-eu", TokenPath);
        Assert.Equal("k8s_psat", client.Type);
        Assert.Null(client.SingleUseFingerprint);
        Assert.Equal(("prod-eu", "eyJhbGciOiJSUzI1NiJ9.eyJmaXJzdCI6MX0.c2ln"), Parse(await client.EvidenceAsync(Ct)));

        Project("eyJhbGciOiJSUzI1NiJ9.eyJzZWNvbmQiOjJ9.c2ln");
        Assert.Equal(("prod-eu", "eyJhbGciOiJSUzI1NiJ9.eyJzZWNvbmQiOjJ9.c2ln"), Parse(await client.EvidenceAsync(Ct)));
        await Assert.ThrowsAsync<AgentFatalException>(() => client.AnswerAsync(new byte[] { 1 }, Ct));
    }

    [Fact]
    public async Task A_missing_empty_or_oversized_token_file_stops_the_agent_with_what_to_mount()
    {
        var missing = await Assert.ThrowsAsync<AgentFatalException>(() => new K8sPsatAttestorClient("c", TokenPath).EvidenceAsync(Ct));
        Assert.Contains($"k8s_psat token file '{TokenPath}' cannot be read", missing.Message, StringComparison.Ordinal);
        Assert.Contains("projected service-account token", missing.Message, StringComparison.Ordinal);

        Project("  \n");
        var empty = await Assert.ThrowsAsync<AgentFatalException>(() => new K8sPsatAttestorClient("c", TokenPath).EvidenceAsync(Ct));
        Assert.Contains("holds no token", empty.Message, StringComparison.Ordinal);

        Project(new string('a', K8sPsatAttestorClient.MaxTokenBytes + 1));
        var big = await Assert.ThrowsAsync<AgentFatalException>(() => new K8sPsatAttestorClient("c", TokenPath).EvidenceAsync(Ct));
        Assert.Contains("more than", big.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void The_agent_options_pick_the_k8s_psat_client_with_its_cluster_and_token_path()
    {
        var options = new AgentOptions
        {
            ServerAddress = "127.0.0.1:8081",
            TrustDomain = TrustDomain.Parse("example.org"),
            DataDir = _dir,
            SocketPath = Path.Combine(_dir, "agent.sock"),
            NodeAttestor = "k8s_psat",
            K8sPsatCluster = "prod-eu",
            K8sPsatTokenPath = TokenPath,
        };
        var client = Assert.IsType<K8sPsatAttestorClient>(NodeAttestorClients.FromOptions(options));
        Assert.Equal("prod-eu", client.Cluster);
        Assert.Equal(TokenPath, client.TokenPath);
        Assert.Contains("k8s_psat", NodeAttestorClients.Names);
        Assert.Throws<ArgumentException>(() => NodeAttestorClients.FromOptions(options with { K8sPsatCluster = null }));
    }
}
