using System.Text.Json.Nodes;
using Writ.Server.Issuance;
using Writ.Server.Policy;
using Writ.Server.Storage;
using Writ.Protocol.Evidence;

namespace Writ.Server.Tests.Policy;

/// <summary>The Cedar model of a request: attributes from evidence, the recorded JSON read back identically, hostile evidence refused.</summary>
public sealed class WritCedarTests
{
    private static readonly NodeFacts Node = new("spiffe://example.org/writ/agent/join_token/t1", "join_token", ["join_token:t1"], []);

    private static WorkloadEvidence Ev(IEnumerable<(string, string)> selectors, Dictionary<string, string>? facts = null, string instance = "42:7") =>
        WorkloadEvidence.TryCreate(selectors, facts ?? [], instance, out var ev, out var error) ? ev! : throw new ArgumentException(error);

    [Fact]
    public void Workload_attributes_come_from_the_evidence()
    {
        var ev = Ev([("unix", "uid:1000"), ("unix", "gid:50"), ("unix", "path:/usr/bin/app"), ("unix", "sha256:ABCDEF"), ("container", "id:c0ffee"),
            ("k8s", "pod-uid:p-1"), ("cgroup", "path:/kubepods/x")], new() { ["unix.pid"] = "42" });
        var w = WritCedar.Workload(Node.SpiffeId, ev);
        Assert.Equal("spiffe://example.org/writ/agent/join_token/t1#42:7", w.Uid.Id);
        Assert.Equal(1000, ((Writ.Policy.Evaluation.LongValue)w.Attributes["uid"]).Value);
        Assert.Equal(50, ((Writ.Policy.Evaluation.LongValue)w.Attributes["gid"]).Value);
        Assert.Equal(42, ((Writ.Policy.Evaluation.LongValue)w.Attributes["pid"]).Value);
        Assert.Equal("/usr/bin/app", ((Writ.Policy.Evaluation.StringValue)w.Attributes["exe_path"]).Value);
        Assert.Equal("abcdef", ((Writ.Policy.Evaluation.StringValue)w.Attributes["exe_sha256"]).Value);
        Assert.Equal("c0ffee", ((Writ.Policy.Evaluation.StringValue)w.Attributes["container_id"]).Value);
        Assert.Equal("p-1", ((Writ.Policy.Evaluation.StringValue)w.Attributes["pod_uid"]).Value);
        Assert.Equal("/kubepods/x", ((Writ.Policy.Evaluation.StringValue)w.Attributes["cgroup"]).Value);
        Assert.Contains(new Writ.Policy.Ast.EntityUid(WritCedar.NodeType, Node.SpiffeId), w.Parents);

        // Nothing known: required ids are -1, optional attributes absent (policies test them with `has`).
        var bare = WritCedar.Workload(Node.SpiffeId, Ev([("custom", "x")], instance: "x"));
        Assert.Equal(-1, ((Writ.Policy.Evaluation.LongValue)bare.Attributes["uid"]).Value);
        Assert.False(bare.Attributes.ContainsKey("exe_sha256"));
        // Attack: a process that exec'd a setuid binary is refused by the unix attestor (its effective uid no longer
        // matches the socket's peer credentials), which still reports its /proc facts. Those facts must not give it a
        // uid (or a container, pod or cgroup) a policy would accept: attributes come from selectors only.
        var refused = WritCedar.Workload(Node.SpiffeId, Ev([("cgroup", "path:/app")], new()
        {
            ["unix.uids"] = "1000 0 0 0", ["unix.gids"] = "1000 0 0 0", ["cgroup.container_id"] = "c0ffee", ["cgroup.pod_uid"] = "p-1", ["cgroup.path"] = "/other",
        }));
        Assert.Equal(-1, ((Writ.Policy.Evaluation.LongValue)refused.Attributes["uid"]).Value);
        Assert.Equal(-1, ((Writ.Policy.Evaluation.LongValue)refused.Attributes["gid"]).Value);
        Assert.False(refused.Attributes.ContainsKey("container_id"));
        Assert.False(refused.Attributes.ContainsKey("pod_uid"));
        Assert.Equal("/app", ((Writ.Policy.Evaluation.StringValue)refused.Attributes["cgroup"]).Value);
    }

    [Fact]
    public void A_recorded_request_replays_to_the_same_decision()
    {
        var entry = new RegistrationEntry { Id = "e1", SpiffeId = "spiffe://example.org/payments/api", ParentId = Node.SpiffeId, Selectors = [new Selector("unix", "uid:1000")], DnsNames = ["api.internal"] };
        var ev = Ev([("unix", "uid:1000"), ("unix", "sha256:aa")]);
        var query = WritCedar.Query(WritCedar.Workload(Node.SpiffeId, ev), WritCedar.IssueJwtSvid, WritCedar.Identity(IdentityFacts.Of(entry)),
            WritCedar.Context(["https://a", "https://b"], 300, 1_700_000_000, bound: true), WritCedar.Node(Node));
        Assert.True(WritPolicyCompiler.TryCompile([new("p.cedar", """
            @id("p") permit (principal is Writ::Workload, action, resource)
            when { principal.node.attestation == "join_token" && principal has exe_sha256 && principal.exe_sha256 == "aa"
                   && resource.dns_names.contains("api.internal") && context.audience.contains("https://b") && context.requested_ttl == 300 && context.bound };
            """)], out var set, out var errors), string.Join("\n", errors));
        var live = IssuanceDecider.Authorize(set!, query);
        Assert.True(live.Allowed);

        var request = JsonNode.Parse(WritCedar.Canonical(WritCedar.RequestJson(query.Request)));
        var entities = JsonNode.Parse(WritCedar.Canonical(WritCedar.EntitiesJson(query.EntityList)));
        Assert.True(WritCedar.TryReadQuery(request, entities, out var replayed, out var error), error);
        var again = IssuanceDecider.Authorize(set!, replayed!);
        Assert.True(again.Allowed);
        Assert.Equal(live.Determining, again.Determining);
        Assert.Empty(again.Errors);
    }

    [Theory]
    [InlineData("unix", "uid:1000\nunix:uid:0", "invalid selector")]       // a forged second line
    [InlineData("UNIX", "uid:0", "invalid selector")]
    [InlineData("unix", "", "invalid selector")]
    public void Hostile_selectors_are_refused(string type, string value, string expected)
    {
        Assert.False(WorkloadEvidence.TryCreate([(type, value)], [], "1:1", out _, out var error));
        Assert.Contains(expected, error, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', error!);
    }

    [Fact]
    public void Hostile_facts_and_sizes_are_refused()
    {
        Assert.False(WorkloadEvidence.TryCreate([("unix", "uid:1")], [new("unix.exe", "/bin/x\u001b[2J")], "1:1", out _, out _));
        Assert.False(WorkloadEvidence.TryCreate([("unix", "uid:1")], [], "1:1\n2", out _, out _));
        Assert.False(WorkloadEvidence.TryCreate(Enumerable.Range(0, WorkloadEvidence.MaxSelectors + 1).Select(i => ("x", "v" + i)), [], "1:1", out _, out _));
        Assert.False(WorkloadEvidence.TryCreate([("unix", "path:" + new string('a', WorkloadEvidence.MaxTextLength + 1))], [], "1:1", out _, out _));
        Assert.False(WorkloadEvidence.TryCreate([], Enumerable.Range(0, WorkloadEvidence.MaxFacts + 1).Select(i => KeyValuePair.Create("k" + i, "v")), "1:1", out _, out _));
        Assert.True(WorkloadEvidence.TryCreate([("unix", "uid:1"), ("unix", "uid:1")], [], "1:1", out var ok, out _));
        Assert.Single(ok!.Selectors);   // duplicates collapse
    }
}
