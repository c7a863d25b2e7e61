using System.Globalization;
using System.Text.Json.Nodes;
using k8s;
using k8s.Models;
using Microsoft.AspNetCore.Http;
using Writ.IntegrationTests.Harness;
using Writ.Server.Storage;
using Writ.Tests.Shared;

namespace Writ.IntegrationTests;

/// <summary>
/// The whole Kubernetes path with the real processes: `writ server run --k8s-clusters` trusting a cluster's
/// service-account issuer (offline validation: discovery + JWKS on loopback, real keys), `writ agent run --node-attestor
/// k8s_psat` with the pod-bound projected token a DaemonSet pod gets, the k8s workload attestor asking a kubelet-shaped
/// server, and workloads in real pod cgroups. One entry parented to the cluster alias serves the pod whose namespace,
/// service account and image digest match; a process in a pod of another namespace with the same labels gets nothing,
/// and its refusal is in the ledger.
/// </summary>
public sealed class KubernetesEndToEndTests
{
    private const string Cluster = "demo";
    private const string NodeName = "node-a";
    private const string ImageHex = "4c0fdaa8b6341bfdeca5f18f7837462c80cff90527ee35ef185571e1c327beac";

    [Fact]
    public async Task A_k8s_psat_agent_serves_the_pod_its_entry_names_and_refuses_a_pod_of_another_namespace()
    {
        using var dir = new TempDir();
        await using var issuer = await OidcTestIssuer.StartAsync(dir["issuer"]);
        var clusters = new JsonArray(new JsonObject
        {
            ["name"] = Cluster,
            ["service_accounts"] = new JsonArray("writ-system:writ-agent"),
            ["issuer"] = issuer.Issuer,
            ["ca_file"] = issuer.CaPemPath,
        }).ToJsonString();
        await using var server = await ServerProcess.StartAsync(dir["server"], "example.org", "--k8s-clusters", clusters);
        var bundle = await server.WritAsync("bundle", "show", "--format", "pem");
        Assert.True(bundle.ExitCode == 0, bundle.ToString());
        await File.WriteAllTextAsync(dir["bundle.pem"], bundle.Stdout);

        // The DaemonSet pod's projected token: audience writ, bound to its pod and node (Kubernetes 1.30+ claims).
        var nodeUid = Guid.NewGuid().ToString();
        var claims = issuer.Claims("system:serviceaccount:writ-system:writ-agent", "writ", TimeSpan.FromHours(1), new Dictionary<string, object?>
        {
            ["kubernetes.io"] = new Dictionary<string, object>
            {
                ["namespace"] = "writ-system",
                ["serviceaccount"] = new Dictionary<string, string> { ["name"] = "writ-agent", ["uid"] = Guid.NewGuid().ToString() },
                ["pod"] = new Dictionary<string, string> { ["name"] = "writ-agent-x7k2p", ["uid"] = Guid.NewGuid().ToString() },
                ["node"] = new Dictionary<string, string> { ["name"] = NodeName, ["uid"] = nodeUid },
            },
        });
        await File.WriteAllTextAsync(dir["psat-token"], issuer.Mint(claims));

        // The kubelet: two pods on this node with the same labels, one in prod, one in another namespace.
        await using var kubelet = await LoopbackHttps.StartAsync(dir["kubelet"], name: "kubelet");
        const string kubeletToken = "agent-service-account-token";
        await File.WriteAllTextAsync(dir["kubelet-token"], kubeletToken);
        string webUid = Guid.NewGuid().ToString(), webCid = Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(32));
        string evilUid = Guid.NewGuid().ToString(), evilCid = Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(32));
        var evil = K8sWorkloadAgentTests.Pod(evilUid, evilCid, ns: "attacker", name: "web-7d9f8-evil1");
        var list = new V1PodList { ApiVersion = "v1", Kind = "PodList", Metadata = new V1ListMeta(), Items = [K8sWorkloadAgentTests.Pod(webUid, webCid), evil] };
        kubelet.Handler = async ctx =>
        {
            if (ctx.Request.Headers.Authorization.ToString() != "Bearer " + kubeletToken)
            {
                ctx.Response.StatusCode = 401;
                return;
            }
            ctx.Response.ContentType = "application/json";
            await ctx.Response.WriteAsync(KubernetesJson.Serialize(list));
        };
        using var web = K8sWorkloadAgentTests.PodCgroup.Create(webUid, webCid);
        using var attacker = K8sWorkloadAgentTests.PodCgroup.Create(evilUid, evilCid);

        await using var agent = new AgentProcess(server.AgentApi, dir["agent"], dir["w.sock"], dir["bundle.pem"], null,
            "--node-attestor", "k8s_psat", "--k8s-psat-cluster", Cluster, "--k8s-psat-token-path", dir["psat-token"],
            "--workload-attestors", "unix,cgroup,k8s", "--k8s-kubelet-port", kubelet.Port.ToString(CultureInfo.InvariantCulture),
            "--k8s-kubelet-ca", kubelet.CaPemPath, "--k8s-token-path", dir["kubelet-token"], "--k8s-node-name", NodeName,
            "--k8s-pod-cache-ttl", "1s", "--attestor-timeout", "20s");
        await agent.StartAsync();
        Assert.Equal($"spiffe://example.org/writ/agent/k8s_psat/{Cluster}/{nodeUid}", agent.AgentId);
        var shown = await server.WritAsync("agent", "show", agent.AgentId, "--output", "json");
        Assert.True(shown.ExitCode == 0, shown.ToString());
        Assert.Contains($"k8s_psat:agent_node_name:{NodeName}", shown.Stdout, StringComparison.Ordinal);
        Assert.Contains("k8s_psat:agent_sa:writ-agent", shown.Stdout, StringComparison.Ordinal);

        // One entry for the whole cluster: parented to the cluster alias every k8s_psat agent of it serves.
        var entry = await server.WritAsync("entry", "create", "--spiffe-id", "spiffe://example.org/prod/web", "--parent-id",
            $"spiffe://example.org/writ/agent/k8s_psat/{Cluster}", "--selector", "k8s:ns:prod", "--selector", "k8s:sa:web",
            "--selector", $"k8s:container-image-id:sha256:{ImageHex}");
        Assert.True(entry.ExitCode == 0, entry.ToString());

        var served = await WorkloadTools.EventuallyAsync(async () =>
        {
            var r = await InPodClientAsync(web.Procs, agent.SocketPath);
            Assert.True(r.ExitCode == 0, r.ToString());
            return r;
        }, TimeSpan.FromSeconds(90), "an SVID for the workload in the prod pod");
        using (var doc = WorkloadTools.Json(served))
        {
            Assert.Equal(["spiffe://example.org/prod/web"], doc.RootElement.GetProperty("svids").EnumerateArray().Select(e => e.GetString()));
        }

        // The attacker's pod has the same labels, image and service account name, in another namespace: nothing.
        var refused = await InPodClientAsync(attacker.Procs, agent.SocketPath);
        Assert.Equal("PERMISSION_DENIED", WorkloadTools.StatusName(refused));
        var record = await WorkloadTools.EventuallyAsync(async () =>
        {
            await using var store = await WritStoreFactory.OpenAsync("sqlite", Path.Combine(server.DataDir, "writ.db"), TimeProvider.System, CancellationToken.None);
            var records = await store.Ledger.ListAsync(0, 1000, "workload.refused", null, CancellationToken.None);
            return records.FirstOrDefault(r => r.DataJson.Contains("\"k8s:ns:attacker\"", StringComparison.Ordinal))
                ?? throw new InvalidOperationException("no workload.refused record for the attacker's pod yet");
        }, TimeSpan.FromSeconds(90), "the refusal of the attacker's pod in the ledger");
        Assert.Equal(agent.AgentId, record.Actor);
        Assert.Contains($"\"k8s:pod-uid:{evilUid}\"", record.DataJson, StringComparison.Ordinal);
    }

    /// <summary>tests/interop/workload-client.mjs (a gRPC client nobody here wrote) started inside a pod's cgroup.</summary>
    private static Task<ProcResult> InPodClientAsync(string procs, string socket) =>
        Proc.RunAsync("sh", ["-c", $"echo $$ > {procs} && exec node {Path.Combine(WorkloadTools.InteropDir, "workload-client.mjs")} x509 {socket}"]);
}
