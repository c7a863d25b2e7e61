using Writ.Policy.Evaluation;
using Writ.Server.Issuance;
using Writ.Server.Policy;
using Writ.Server.Storage;
using Writ.Protocol.Evidence;

namespace Writ.Server.Tests.Policy;

/// <summary>
/// The Kubernetes and OIDC attributes of Writ::Node and Writ::Workload: derived from k8s_psat:, k8s: and oidc: selectors
/// only, absent (fail closed) when a selector that should name one value names two, validated strictly at push time.
/// </summary>
public sealed class WritCedarKubernetesTests
{
    private const string ServerId = "spiffe://example.org/writ/server";
    private const string AgentId = "spiffe://example.org/writ/agent/k8s_psat/prod/5e1a9c2e-0d3b-4f7a-9b1c-6a2d8e4f0b17";
    private const string Digest = "sha256:3f1c2a9d8e7b6c5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a";

    private static readonly string[] PsatSelectors =
    [
        "k8s_psat:cluster:prod", "k8s_psat:agent_ns:writ-system", "k8s_psat:agent_sa:writ-agent", "k8s_psat:agent_pod_name:writ-agent-x7k2p",
        "k8s_psat:agent_pod_uid:8d0f6a3e-1c2b-4e5f-a6b7-c8d9e0f1a2b3", "k8s_psat:agent_node_name:node-1",
        "k8s_psat:agent_node_uid:5e1a9c2e-0d3b-4f7a-9b1c-6a2d8e4f0b17", "k8s_psat:agent_node_label:topology.kubernetes.io/zone:eu-west-1a",
        "k8s_psat:agent_node_label:node-role.kubernetes.io/worker:",
    ];

    private static readonly string[] PodSelectors =
    [
        "k8s:ns:prod", "k8s:sa:orders", "k8s:pod-name:orders-7f9c-abcde", "k8s:pod-uid:0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d",
        "k8s:pod-label:app:orders", "k8s:pod-label:app.kubernetes.io/version:1.4.2", "k8s:pod-owner:ReplicaSet:orders-7f9c",
        "k8s:container-name:orders", "k8s:container-image:registry.example.org/orders:1.4.2", "k8s:container-image-id:" + Digest,
        "k8s:node-name:node-1", "k8s:image-signed-by:release", "k8s:image-signed-by:qa",
    ];

    private static WorkloadEvidence Ev(params string[] selectors) =>
        WorkloadEvidence.TryCreate(selectors.Select(s => { var i = s.IndexOf(':', StringComparison.Ordinal); return (s[..i], s[(i + 1)..]); }), [], "42:7",
            out var ev, out var error) ? ev! : throw new ArgumentException(error);

    private static RecordValue Record(Entity e, string name) => Assert.IsType<RecordValue>(e.Attributes[name]);

    private static string Str(RecordValue r, string name) => Assert.IsType<StringValue>(r.Fields[name]).Value;

    private static string[] Set(RecordValue r, string name) =>
        [.. Assert.IsType<SetValue>(r.Fields[name]).Items.Select(v => Assert.IsType<StringValue>(v).Value).Order(StringComparer.Ordinal)];

    [Fact]
    public void A_k8s_psat_node_gets_the_k8s_record_from_its_selectors()
    {
        var node = WritCedar.Node(new NodeFacts(AgentId, "k8s_psat", PsatSelectors, []));
        var k8s = Record(node, "k8s");
        Assert.Equal("prod", Str(k8s, "cluster"));
        Assert.Equal("writ-system", Str(k8s, "namespace"));
        Assert.Equal("writ-agent", Str(k8s, "service_account"));
        Assert.Equal("writ-agent-x7k2p", Str(k8s, "pod_name"));
        Assert.Equal("8d0f6a3e-1c2b-4e5f-a6b7-c8d9e0f1a2b3", Str(k8s, "pod_uid"));
        Assert.Equal("node-1", Str(k8s, "node_name"));
        Assert.Equal("5e1a9c2e-0d3b-4f7a-9b1c-6a2d8e4f0b17", Str(k8s, "node_uid"));
        Assert.Equal(["node-role.kubernetes.io/worker=", "topology.kubernetes.io/zone=eu-west-1a"], Set(k8s, "node_labels"));
        Assert.False(node.Attributes.ContainsKey("tpm"));

        // Attack: a node attested otherwise (a join token) whose selectors look like a cluster's gets no k8s record.
        Assert.False(WritCedar.Node(new NodeFacts("spiffe://example.org/writ/agent/join_token/t1", "join_token", PsatSelectors, [])).Attributes.ContainsKey("k8s"));
        // A k8s_psat node without k8s_psat: selectors has none either.
        Assert.False(WritCedar.Node(new NodeFacts(AgentId, "k8s_psat", [], [])).Attributes.ContainsKey("k8s"));
    }

    [Fact]
    public void A_node_selector_with_two_values_leaves_its_attribute_out()
    {
        var k8s = Record(WritCedar.Node(new NodeFacts(AgentId, "k8s_psat", [.. PsatSelectors, "k8s_psat:cluster:staging", "k8s_psat:agent_sa:"], [])), "k8s");
        Assert.False(k8s.Fields.ContainsKey("cluster"));
        Assert.Equal("writ-agent", Str(k8s, "service_account"));   // an empty value is no value
        Assert.Equal("writ-system", Str(k8s, "namespace"));
    }

    [Fact]
    public void A_pod_gets_the_k8s_record_from_its_selectors()
    {
        var w = WritCedar.Workload(AgentId, Ev([.. PodSelectors, "unix:uid:1000"]));
        var k8s = Record(w, "k8s");
        Assert.Equal("prod", Str(k8s, "namespace"));
        Assert.Equal("orders", Str(k8s, "service_account"));
        Assert.Equal("orders-7f9c-abcde", Str(k8s, "pod_name"));
        Assert.Equal("0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d", Str(k8s, "pod_uid"));
        Assert.Equal("orders", Str(k8s, "container_name"));
        Assert.Equal("registry.example.org/orders:1.4.2", Str(k8s, "container_image"));
        Assert.Equal(Digest, Str(k8s, "container_image_id"));
        Assert.Equal("node-1", Str(k8s, "node_name"));
        Assert.Equal(["app.kubernetes.io/version=1.4.2", "app=orders"], Set(k8s, "pod_labels"));
        Assert.Equal(["ReplicaSet/orders-7f9c"], Set(k8s, "owners"));
        Assert.Equal(["qa", "release"], Set(k8s, "image_signed_by"));
        Assert.Equal("0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d", Assert.IsType<StringValue>(w.Attributes["pod_uid"]).Value);
        Assert.False(w.Attributes.ContainsKey("oidc"));

        // Outside Kubernetes there is no k8s record.
        Assert.False(WritCedar.Workload(AgentId, Ev("unix:uid:1000")).Attributes.ContainsKey("k8s"));
        // Only the pod UID (the cgroup attestor without the kubelet): the record has it, and empty sets.
        var cgroupOnly = Record(WritCedar.Workload(AgentId, Ev("k8s:pod-uid:p-1")), "k8s");
        Assert.Equal("p-1", Str(cgroupOnly, "pod_uid"));
        Assert.False(cgroupOnly.Fields.ContainsKey("namespace"));
        Assert.Empty(Set(cgroupOnly, "pod_labels"));
        Assert.Empty(Set(cgroupOnly, "image_signed_by"));
    }

    [Fact]
    public void Ambiguous_pod_selectors_fail_closed()
    {
        // Two namespaces: no namespace (a policy asking for one is not satisfied), the rest stays.
        var twoNs = Record(WritCedar.Workload(AgentId, Ev([.. PodSelectors, "k8s:ns:kube-system"])), "k8s");
        Assert.False(twoNs.Fields.ContainsKey("namespace"));
        Assert.Equal("orders", Str(twoNs, "service_account"));

        // Two pods (the cgroup says one, the kubelet another): no pod UID at either level, and no labels or owners,
        // which describe one pod.
        var twoPods = WritCedar.Workload(AgentId, Ev([.. PodSelectors, "k8s:pod-uid:ffffffff-0000-0000-0000-000000000000"]));
        var k8s = Record(twoPods, "k8s");
        Assert.False(k8s.Fields.ContainsKey("pod_uid"));
        Assert.False(twoPods.Attributes.ContainsKey("pod_uid"));
        Assert.Empty(Set(k8s, "pod_labels"));
        Assert.Empty(Set(k8s, "owners"));

        // Two image digests: a signature cannot be credited to either.
        var twoImages = Record(WritCedar.Workload(AgentId, Ev([.. PodSelectors, "k8s:container-image-id:sha256:" + new string('0', 64)])), "k8s");
        Assert.False(twoImages.Fields.ContainsKey("container_image_id"));
        Assert.Empty(Set(twoImages, "image_signed_by"));
        Assert.Equal("prod", Str(twoImages, "namespace"));
    }

    [Fact]
    public void Only_workloads_the_server_attested_get_the_oidc_record()
    {
        var ev = Ev("oidc:iss:https://token.actions.githubusercontent.com", "oidc:sub:repo:org/x:ref:refs/heads/main",
            "oidc:claim:repository:org/x", "oidc:claim:ref:refs/heads/main", "oidc:claim:runner_environment:github-hosted");
        var oidc = Record(WritCedar.Workload(ServerId, ev), "oidc");
        Assert.Equal("https://token.actions.githubusercontent.com", Str(oidc, "issuer"));
        Assert.Equal("repo:org/x:ref:refs/heads/main", Str(oidc, "subject"));
        Assert.Equal(["ref=refs/heads/main", "repository=org/x", "runner_environment=github-hosted"], Set(oidc, "claims"));
        Assert.False(WritCedar.Workload(ServerId, ev).Attributes.ContainsKey("k8s"));

        // Attack: an agent reporting oidc: selectors for a local process does not make it a CI job.
        Assert.False(WritCedar.Workload(AgentId, ev).Attributes.ContainsKey("oidc"));
        Assert.False(WritCedar.Workload("spiffe://example.org/writ/server/x", ev).Attributes.ContainsKey("oidc"));
        // Two subjects: no subject.
        Assert.False(Record(WritCedar.Workload(ServerId, Ev("oidc:iss:https://i.example", "oidc:sub:a", "oidc:sub:b")), "oidc").Fields.ContainsKey("subject"));
    }

    [Fact]
    public void Policies_over_the_new_attributes_are_validated_strictly()
    {
        static bool Compiles(string text, out IReadOnlyList<string> errors) => WritPolicyCompiler.TryCompile([new PolicyFileRecord("p.cedar", text)], out _, out errors);

        Assert.True(Compiles("""
            permit (principal is Writ::Workload, action, resource)
            when { principal has k8s.namespace && principal.k8s.namespace == "prod" && principal.k8s.pod_labels.contains("app=orders")
                   && principal.k8s.owners.contains("ReplicaSet/orders-7f9c") && principal.k8s.image_signed_by.contains("release") };
            """, out var errors), string.Join("\n", errors));
        Assert.True(Compiles("""
            permit (principal is Writ::Workload, action, resource)
            when { principal has oidc && principal.oidc.claims.contains("ref=refs/heads/main") && principal.oidc has subject && principal.oidc.subject like "repo:org/x:*" };
            """, out errors), string.Join("\n", errors));
        Assert.True(Compiles("""
            permit (principal is Writ::Node, action == Writ::Action::"AttestNode", resource)
            when { principal has k8s.node_uid && principal.k8s.node_uid != "" && principal.k8s.node_labels.contains("topology.kubernetes.io/zone=eu-west-1a") };
            """, out errors), string.Join("\n", errors));

        // A typo in an attribute name, a wrong type, and an unguarded optional attribute are refused at push time.
        Assert.False(Compiles("""permit (principal is Writ::Workload, action, resource) when { principal has k8s && principal.k8s.namepsace == "prod" };""", out errors));
        Assert.Contains(errors, e => e.Contains("namepsace", StringComparison.Ordinal));
        Assert.False(Compiles("""permit (principal is Writ::Workload, action, resource) when { principal has k8s && principal.k8s.pod_labels == "app=orders" };""", out _));
        Assert.False(Compiles("""permit (principal is Writ::Workload, action, resource) when { principal.k8s.namespace == "prod" };""", out _));
        Assert.False(Compiles("""permit (principal is Writ::Workload, action, resource) when { principal has k8s && principal.k8s.namespace == "prod" };""", out _));
        Assert.False(Compiles("""permit (principal is Writ::Workload, action, resource) when { principal has oidc && principal.oidc.issuer == "https://i" };""", out _));
    }

    [Fact]
    public void A_forbid_on_the_namespace_holds_when_the_namespace_is_ambiguous()
    {
        Assert.True(WritPolicyCompiler.TryCompile([.. WritPolicyCompiler.DefaultFiles, new PolicyFileRecord("ns.cedar", """
            @id("prod-ns-only")
            forbid (principal is Writ::Workload, action, resource)
            when { resource.path like "/prod/*" }
            unless { principal has k8s.namespace && principal.k8s.namespace == "prod" };
            """)], out var set, out var errors), string.Join("\n", errors));
        var entry = new RegistrationEntry { Id = "e1", SpiffeId = "spiffe://example.org/prod/orders", ParentId = AgentId, Selectors = [new Selector("k8s", "ns:prod")] };
        var node = WritCedar.Node(new NodeFacts(AgentId, "k8s_psat", PsatSelectors, []));
        (bool Allowed, IReadOnlyList<string> Determining, IReadOnlyList<string> Errors, TimeSpan? MaxTtl) Decide(params string[] selectors) => IssuanceDecider.Authorize(set!, WritCedar.Query(WritCedar.Workload(AgentId, Ev(selectors)),
            WritCedar.IssueX509Svid, WritCedar.Identity(IdentityFacts.Of(entry)), WritCedar.Context([], 3600, 1_700_000_000, bound: true), node));

        var good = Decide(PodSelectors);
        Assert.True(good.Allowed);
        Assert.Empty(good.Errors);
        // Attack: a process that also claims kube-system (or whose attestors disagree) gets no namespace, so the forbid holds.
        var ambiguous = Decide([.. PodSelectors, "k8s:ns:kube-system"]);
        Assert.False(ambiguous.Allowed);
        Assert.Empty(ambiguous.Errors);
        Assert.Contains("prod-ns-only", ambiguous.Determining);
        Assert.False(Decide("k8s:ns:staging", "k8s:pod-uid:p-1").Allowed);
        Assert.False(Decide("unix:uid:1000").Allowed);
    }
}
