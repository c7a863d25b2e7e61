using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging.Abstractions;
using Writ.Server.NodeAttestation;
using Writ.Server.NodeAttestation.K8sPsat;
using Writ.Server.Storage;

namespace Writ.Server.Tests.NodeAttestation.K8sPsat;

/// <summary>
/// The node attestor conformance suite for <c>k8s_psat</c> validating through the cluster's API (TokenReview, pod and node
/// GETs) with a kubeconfig, against an API server on loopback HTTPS; plus the attacks on it, each refused with its code.
/// </summary>
public class K8sPsatApiConformanceTests(K8sTestClusterFixture fixture) : NodeAttestorConformance, IClassFixture<K8sTestClusterFixture>
{
    private const string Type = K8sPsatNodeAttestor.TypeName;
    private const string ClusterName = "prod-eu";

    private K8sTestCluster Cluster => fixture.Cluster;

    protected override bool SingleUse => false;

    protected override DateTimeOffset? ClockStart => DateTimeOffset.UtcNow;

    private JsonObject ClusterConfig(params string[] labelKeys) => new()
    {
        ["name"] = ClusterName,
        ["service_accounts"] = new JsonArray("writ:writ-agent", "infra:writ"),
        ["kubeconfig"] = Cluster.KubeconfigPath,
        ["node_label_keys"] = new JsonArray([.. labelKeys.Select(k => (JsonNode)k)]),
    };

    protected override INodeAttestor CreateAttestor(IWritStore store, TimeProvider time)
    {
        Cluster.CheckBoundObjects = true;
        Cluster.IgnoreRequestedAudiences = false;
        Cluster.FailWith = null;
        return K8sPsatNodeAttestor.Create(K8sTestCluster.Options(ClusterConfig("topology.kubernetes.io/zone")), null, NullLogger.Instance);
    }

    private AgentEvidence Make(string token, string cluster = ClusterName) => new(K8sTestCluster.Evidence(cluster, token));

    protected override Task<AgentEvidence> ValidEvidenceAsync() => Task.FromResult(Make(Cluster.ApiToken(Cluster.AddPod())));

    /// <summary>A token of another cluster (its API server does not know it) naming this cluster.</summary>
    protected override Task<AgentEvidence> ForeignTrustDomainEvidenceAsync() =>
        Task.FromResult(Make(fixture.Cluster.OfflineToken(Cluster.AddPod(), issuer: fixture.OtherIssuer)));

    protected override Task<AgentEvidence?> ExpiredEvidenceAsync() =>
        Task.FromResult<AgentEvidence?>(Make(Cluster.ApiToken(Cluster.AddPod(), expiresIn: TimeSpan.FromMinutes(-1))));

    protected override Task<AgentEvidence?> NotYetValidEvidenceAsync() =>
        Task.FromResult<AgentEvidence?>(Make(Cluster.ApiToken(Cluster.AddPod(), notBefore: DateTimeOffset.UtcNow.AddHours(1))));

    private async Task<AttestOutcome> RefusedAsync(AgentEvidence evidence, string code, int nodesBefore = 0)
    {
        var outcome = await AttestAsync(Type, evidence);
        Assert.False(outcome.Attested, $"attested {outcome.AgentId}, expected {code}");
        Assert.True(code == outcome.Code, $"expected {code}, got {outcome.Code}: {outcome.Message}");
        Assert.DoesNotContain('\n', outcome.Message!);
        Assert.Equal(nodesBefore, (await H.Store.Nodes.ListAsync(Ct)).Count);
        return outcome;
    }

    [Fact]
    public async Task An_agent_pod_attests_its_node_with_the_node_uid_id_pod_selectors_and_node_labels_through_the_server_credentials()
    {
        var pod = Cluster.AddPod(nodeLabels: new Dictionary<string, string> { ["topology.kubernetes.io/zone"] = "eu-west-1a", ["secret-label"] = "x" });
        while (Cluster.Authorizations.TryDequeue(out _))
        {
        }
        var outcome = await AttestAsync(Type, Make(Cluster.ApiToken(pod)));
        Assert.True(outcome.Attested, $"{outcome.Code}: {outcome.Message}");
        Assert.Equal($"spiffe://example.org/writ/agent/k8s_psat/{ClusterName}/{pod.NodeUid}", outcome.AgentId);
        var node = Assert.Single(await H.Store.Nodes.ListAsync(Ct));
        Assert.Equal(
            new[]
            {
                $"k8s_psat:agent_node_label:topology.kubernetes.io/zone:eu-west-1a",
                $"k8s_psat:agent_node_name:{pod.NodeName}",
                $"k8s_psat:agent_node_uid:{pod.NodeUid}",
                "k8s_psat:agent_ns:writ",
                $"k8s_psat:agent_pod_name:{pod.Name}",
                $"k8s_psat:agent_pod_uid:{pod.Uid}",
                "k8s_psat:agent_sa:writ-agent",
                $"k8s_psat:cluster:{ClusterName}",
            },
            node.Selectors.Select(s => s.ToString()).Order(StringComparer.Ordinal));
        Assert.Equal([$"spiffe://example.org/writ/agent/k8s_psat/{ClusterName}"], node.Aliases);
        // TokenReview, the pod and the node, each with the server's own credentials from the kubeconfig.
        var seen = Cluster.Authorizations.ToArray();
        Assert.Equal(3, seen.Length);
        Assert.All(seen, a => Assert.Equal($"Bearer {K8sTestCluster.ServerBearer}", a));
    }

    [Fact]
    public async Task A_restarted_agent_pod_on_the_same_node_keeps_the_agent_id_and_another_node_gets_another()
    {
        var first = Cluster.AddPod();
        var a = await AttestAsync(Type, Make(Cluster.ApiToken(first)));
        Assert.True(a.Attested, $"{a.Code}: {a.Message}");

        // The DaemonSet replaced its pod on the same node: a new pod, a new token.
        Cluster.Pods.TryRemove($"{first.Namespace}/{first.Name}", out _);
        var second = Cluster.AddPod(nodeName: first.NodeName);
        var b = await AttestAsync(Type, Make(Cluster.ApiToken(second)));
        Assert.True(b.Attested, $"{b.Code}: {b.Message}");
        Assert.Equal(a.AgentId, b.AgentId);
        var node = Assert.Single(await H.Store.Nodes.ListAsync(Ct));
        Assert.Contains(node.Selectors, s => s.ToString() == $"k8s_psat:agent_pod_uid:{second.Uid}");

        var elsewhere = await AttestAsync(Type, Make(Cluster.ApiToken(Cluster.AddPod())));
        Assert.True(elsewhere.Attested, $"{elsewhere.Code}: {elsewhere.Message}");
        Assert.NotEqual(a.AgentId, elsewhere.AgentId);
        Assert.Equal(2, (await H.Store.Nodes.ListAsync(Ct)).Count);
    }

    [Fact]
    public async Task Attack_a_token_older_than_the_one_that_last_attested_the_node_is_refused()
    {
        var pod = Cluster.AddPod();
        var old = Cluster.ApiToken(pod, notBefore: DateTimeOffset.UtcNow.AddMinutes(-10));
        var current = Cluster.ApiToken(pod);
        Assert.True((await AttestAsync(Type, Make(current))).Attested);
        var outcome = await RefusedAsync(Make(old), NodeAttestationCodes.NodeExists, nodesBefore: 1);
        Assert.Contains("issued before", outcome.Message, StringComparison.Ordinal);
        Assert.True((await AttestAsync(Type, Make(Cluster.ApiToken(pod)))).Attested, "a newer token of the node attests it again");
    }

    [Fact]
    public async Task Attack_a_service_account_not_in_the_list_is_refused()
    {
        var outcome = await RefusedAsync(Make(Cluster.ApiToken(Cluster.AddPod(ns: "default", sa: "default"))), K8sPsatCodes.ServiceAccountNotAllowed);
        Assert.Contains("default:default", outcome.Message, StringComparison.Ordinal);
        // Same name, other namespace.
        await RefusedAsync(Make(Cluster.ApiToken(Cluster.AddPod(ns: "dev", sa: "writ-agent"))), K8sPsatCodes.ServiceAccountNotAllowed);
        Assert.True((await AttestAsync(Type, Make(Cluster.ApiToken(Cluster.AddPod(ns: "infra", sa: "writ"))))).Attested, "the second listed account attests");
    }

    [Fact]
    public async Task Attack_a_legacy_token_not_bound_to_a_pod_is_refused() =>
        await RefusedAsync(Make(Cluster.ApiToken(Cluster.AddPod(), podBound: false)), K8sPsatCodes.NotPodBound);

    [Fact]
    public async Task Attack_a_token_the_TokenReview_does_not_authenticate_is_refused()
    {
        var outcome = await RefusedAsync(Make("eyJhbGciOiJSUzI1NiJ9.eyJpYXQiOjF9.c2lnbmF0dXJl"), K8sPsatCodes.TokenInvalid);
        Assert.Contains("did not authenticate", outcome.Message, StringComparison.Ordinal);
        await RefusedAsync((await ExpiredEvidenceAsync())!, K8sPsatCodes.TokenInvalid);
        await RefusedAsync(await ForeignTrustDomainEvidenceAsync(), K8sPsatCodes.TokenInvalid);
    }

    [Fact]
    public async Task Attack_a_token_for_another_audience_is_refused()
    {
        // An audience-aware API server refuses it; one that ignores spec.audiences authenticates it for its own audience.
        var token = Cluster.ApiToken(Cluster.AddPod(), audiences: [K8sTestCluster.ApiAudience]);
        await RefusedAsync(Make(token), K8sPsatCodes.TokenInvalid);
        Cluster.IgnoreRequestedAudiences = true;
        var outcome = await RefusedAsync(Make(token), K8sPsatCodes.TokenInvalid);
        Assert.Contains("did not confirm audience 'writ'", outcome.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Attack_a_token_of_a_deleted_or_replaced_pod_is_refused()
    {
        // The API server's own bound-object check refuses it at TokenReview ...
        var gone = Cluster.AddPod();
        var token = Cluster.ApiToken(gone);
        Cluster.Pods.TryRemove($"{gone.Namespace}/{gone.Name}", out _);
        await RefusedAsync(Make(token), K8sPsatCodes.TokenInvalid);
        // ... and when the review races the deletion, the attestor's own pod lookup does.
        Cluster.CheckBoundObjects = false;
        var outcome = await RefusedAsync(Make(token), K8sPsatCodes.PodGone);
        Assert.Contains("no longer exists", outcome.Message, StringComparison.Ordinal);

        var replaced = Cluster.AddPod();
        var old = Cluster.ApiToken(replaced);
        Cluster.Pods[$"{replaced.Namespace}/{replaced.Name}"].Metadata.Uid = Guid.NewGuid().ToString();
        Assert.Contains("replaced", (await RefusedAsync(Make(old), K8sPsatCodes.PodGone)).Message, StringComparison.Ordinal);

        var ended = Cluster.AddPod();
        Cluster.Pods[$"{ended.Namespace}/{ended.Name}"].Status.Phase = "Failed";
        await RefusedAsync(Make(Cluster.ApiToken(ended)), K8sPsatCodes.PodGone);
    }

    [Fact]
    public async Task Attack_a_token_naming_another_node_than_the_pod_runs_on_is_refused()
    {
        Cluster.CheckBoundObjects = false;
        var pod = Cluster.AddPod();
        Cluster.AddPod(nodeName: "node-other");
        Cluster.Pods[$"{pod.Namespace}/{pod.Name}"].Spec.NodeName = "node-other";
        await RefusedAsync(Make(Cluster.ApiToken(pod)), K8sPsatCodes.PodNode);

        // A node recreated under the same name is another node (its uid differs): it must not inherit the old agent ID.
        var moved = Cluster.AddPod();
        Cluster.Nodes[moved.NodeName].Metadata.Uid = Guid.NewGuid().ToString();
        await RefusedAsync(Make(Cluster.ApiToken(moved)), K8sPsatCodes.PodNode);

        var nodeGone = Cluster.AddPod();
        Cluster.Nodes.TryRemove(nodeGone.NodeName, out _);
        await RefusedAsync(Make(Cluster.ApiToken(nodeGone)), K8sPsatCodes.PodNode);
    }

    [Fact]
    public async Task Without_the_node_claims_the_node_uid_comes_from_the_API()
    {
        var pod = Cluster.AddPod();
        var outcome = await AttestAsync(Type, Make(Cluster.ApiToken(pod, nodeInfo: false)));
        Assert.True(outcome.Attested, $"{outcome.Code}: {outcome.Message}");
        Assert.Equal($"spiffe://example.org/writ/agent/k8s_psat/{ClusterName}/{pod.NodeUid}", outcome.AgentId);
    }

    [Fact]
    public async Task An_unknown_cluster_and_malformed_evidence_are_refused()
    {
        var token = Cluster.ApiToken(Cluster.AddPod());
        await RefusedAsync(Make(token, cluster: "staging"), K8sPsatCodes.UnknownCluster);
        await RefusedAsync(new AgentEvidence("not json"u8.ToArray()), K8sPsatCodes.Malformed);
        await RefusedAsync(new AgentEvidence("{\"cluster\":\"prod-eu\"}"u8.ToArray()), K8sPsatCodes.Malformed);
        await RefusedAsync(new AgentEvidence("[\"prod-eu\",\"token\"]"u8.ToArray()), K8sPsatCodes.Malformed);
        await RefusedAsync(new AgentEvidence(K8sTestCluster.Evidence(ClusterName, "")), K8sPsatCodes.Malformed);
    }

    [Fact]
    public async Task An_API_that_is_down_or_refuses_the_server_is_unavailable_and_stores_nothing()
    {
        var evidence = await ValidEvidenceAsync();
        Cluster.FailWith = 403;
        var forbidden = await RefusedAsync(evidence, K8sPsatCodes.Unavailable);
        Assert.Contains("HTTP 403", forbidden.Message, StringComparison.Ordinal);
        Cluster.FailWith = 503;
        await RefusedAsync(evidence, K8sPsatCodes.Unavailable);
        Cluster.FailWith = null;
        Assert.True((await AttestAsync(Type, evidence)).Attested, "the same token attests once the API answers");
    }

    /// <summary>
    /// Attack: a kubeconfig copied from a workstation with <c>insecure-skip-tls-verify: true</c> (or an http:// server)
    /// lets whoever answers on the network path between the Writ server and the API server reply to TokenReview with
    /// <c>authenticated: true</c> for any pod and node, and receives every agent's token and the server's credentials.
    /// Here the "API server" presents a certificate from a CA the kubeconfig does not name: the start is refused.
    /// </summary>
    [Theory]
    [InlineData("skip-tls-verify")]
    [InlineData("http")]
    public void Attack_a_kubeconfig_that_does_not_verify_the_API_server_is_refused_at_start(string how)
    {
        var server = how == "http" ? new UriBuilder(Cluster.Api.BaseUri) { Scheme = "http" }.Uri.ToString() : Cluster.Api.BaseUri.ToString();
        var config = new k8s.KubeConfigModels.K8SConfiguration
        {
            CurrentContext = "copied",
            Clusters = [new k8s.KubeConfigModels.Cluster { Name = "copied", ClusterEndpoint = new k8s.KubeConfigModels.ClusterEndpoint { Server = server, SkipTlsVerify = how != "http" } }],
            Users = [new k8s.KubeConfigModels.User { Name = "writ-server", UserCredentials = new k8s.KubeConfigModels.UserCredentials { Token = K8sTestCluster.ServerBearer } }],
            Contexts = [new k8s.KubeConfigModels.Context { Name = "copied", ContextDetails = new k8s.KubeConfigModels.ContextDetails { Cluster = "copied", User = "writ-server" } }],
        };
        var path = Path.Combine(Cluster.Dir, $"kubeconfig-{how}");
        File.WriteAllText(path, "apiVersion: v1\nkind: Config\n" + k8s.KubernetesYaml.Serialize(config));
        var options = K8sTestCluster.Options(new JsonObject
        {
            ["name"] = ClusterName,
            ["service_accounts"] = new JsonArray("writ:writ-agent"),
            ["kubeconfig"] = path,
        });

        var e = Assert.Throws<Writ.Protocol.StartupRefusedException>(() => K8sPsatNodeAttestor.Create(options, null, NullLogger.Instance).Dispose());
        Assert.Equal(K8sPsatCodes.ApiConfig, e.Code);
        Assert.Contains(how == "http" ? "https" : "insecure-skip-tls-verify", e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void The_server_registers_k8s_psat_only_when_clusters_are_configured()
    {
        Assert.DoesNotContain(Type, NodeAttestationService.ConfiguredRegistry(H.Store, H.Server.Options).Types);
        var options = K8sTestCluster.Options(ClusterConfig());
        Assert.Contains(Type, NodeAttestationService.ConfiguredRegistry(H.Store, H.Server.Options with { K8sPsat = options }).Types);
    }

    [Fact]
    public async Task A_refusal_never_carries_the_token()
    {
        var token = Cluster.ApiToken(Cluster.AddPod(ns: "default", sa: "default"));
        var outcome = await RefusedAsync(Make(token), K8sPsatCodes.ServiceAccountNotAllowed);
        Assert.DoesNotContain(token.Split('.')[2], outcome.Message, StringComparison.Ordinal);
        var refusals = await H.Store.Ledger.ListAsync(0, 1000, Writ.Server.Ledger.LedgerEvents.NodeAttestationRefused, null, Ct);
        Assert.DoesNotContain(refusals, r => r.DataJson.Contains(token.Split('.')[2], StringComparison.Ordinal));
    }
}

/// <summary>The same suite and attacks through the real gRPC AttestAgent stream.</summary>
public sealed class K8sPsatApiEndToEndTests(K8sTestClusterFixture fixture) : K8sPsatApiConformanceTests(fixture)
{
    private protected override Task OnStartedAsync() => H.StartGrpcAsync();

    private protected override Task<AttestOutcome> AttestAsync(string type, AgentEvidence evidence) => AttestOverGrpcAsync(H.Client!, type, evidence);
}
