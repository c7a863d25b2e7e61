using Writ.Policy.Authorization;
using Writ.Policy.Json;
using Writ.Protocol.Agent;
using Writ.Server.Policy;
using Writ.Server.Storage;

namespace Writ.Authz.Tests;

/// <summary>
/// The agent decides calls with the policy set the server compiled and pushed (Cedar JSON policy-set format). These
/// tests compile with the server's own compiler and schema, carry the set through the JSON the Sync stream sends, and
/// decide with <see cref="CallPolicySet"/> as the agent does.
/// </summary>
public class CallPolicyTests
{
    private const string CallPolicy = """
        @id("web-reads-payments")
        permit (
          principal,
          action == Writ::Action::"call",
          resource
        )
        when {
          principal.spiffe_id == "spiffe://example.org/web" &&
          resource.path like "/payments/*" &&
          context.method == "GET" &&
          context.headers.contains("x-env=prod")
        };

        forbid (
          principal,
          action == Writ::Action::"call",
          resource
        )
        when { context.path like "/admin*" };
        """;

    private static CallPolicySet Pushed(params (string Name, string Text)[] files)
    {
        var records = files.Select(f => new PolicyFileRecord(f.Name, f.Text)).ToList();
        Assert.True(WritPolicyCompiler.TryCompile(records, out var compiled, out var errors), string.Join("; ", errors));
        var pushed = new CallPolicy { Version = 7, PolicySetJson = PolicyJson.ToJson(compiled!.Decisions), Sha256 = compiled.Sha256 };
        Assert.True(CallPolicySet.TryLoad(pushed, out var set, out var error), error);
        return set!;
    }

    private static CallFacts Facts(string caller = "spiffe://example.org/web", string resource = "spiffe://example.org/payments/api",
        string method = "GET", string path = "/balance", params (string Name, string Value)[] headers)
    {
        var f = new CallFacts
        {
            CallerSpiffeId = caller,
            Credential = CallCedar.X509Credential,
            CallerSerialHex = "0A",
            ResourceSpiffeId = resource,
            Method = method,
            Path = path,
            Host = "payments.internal",
            NowUnix = 1_800_000_000,
        };
        foreach (var (n, v) in headers)
            f.Headers[n] = v;
        return f;
    }

    [Fact]
    public void A_call_request_and_its_entities_conform_to_the_Writ_schema()
    {
        var facts = Facts(headers: ("x-env", "prod"));
        facts.CallerLocal = true;
        facts.CallerSelectors.Add("unix:uid:1000");
        facts.CallerInstanceId = "42:123";
        facts.CallerAgentId = "spiffe://example.org/writ/agent/join_token/abc";
        facts.CallerDnsNames.Add("web.internal");
        var (request, entities) = CallCedar.Query(facts);
        Assert.True(RequestValidator.TryValidate(request, WritPolicyCompiler.Schema, out var error), error);
        // Read back through Cedar's entities JSON with the schema: every attribute has the schema's type.
        Assert.True(Writ.Policy.Json.CedarJson.TryParseEntities(WritCedar.EntitiesJson(entities).ToJsonString(), WritPolicyCompiler.Schema, out _, out var why), why);
        Assert.Equal(CallCedar.Call, request.Action);
    }

    [Fact]
    public void The_default_policy_set_permits_no_call()
    {
        var set = Pushed(("default.cedar", WritPolicyCompiler.DefaultFiles[0].Text));
        var d = set.Decide(Facts(headers: ("x-env", "prod")));
        Assert.False(d.Allowed);
        Assert.Empty(d.DeterminingPolicies);
        Assert.Contains("deny by default", d.Reason, StringComparison.Ordinal);
        Assert.Equal(7, d.PolicyVersion);
    }

    [Fact]
    public void A_pushed_call_policy_decides_with_its_ids_kept_through_the_json()
    {
        var set = Pushed(("default.cedar", WritPolicyCompiler.DefaultFiles[0].Text), ("calls.cedar", CallPolicy));
        var allowed = set.Decide(Facts(headers: ("x-env", "prod")));
        Assert.True(allowed.Allowed, allowed.Reason);
        Assert.Equal(["web-reads-payments"], allowed.DeterminingPolicies);

        // Each condition of the permit can fail on its own.
        Assert.False(set.Decide(Facts(caller: "spiffe://example.org/batch", headers: ("x-env", "prod"))).Allowed);
        Assert.False(set.Decide(Facts(resource: "spiffe://example.org/ledger/api", headers: ("x-env", "prod"))).Allowed);
        Assert.False(set.Decide(Facts(method: "POST", headers: ("x-env", "prod"))).Allowed);
        Assert.False(set.Decide(Facts(headers: ("x-env", "dev"))).Allowed);
        Assert.False(set.Decide(Facts()).Allowed);

        // Forbid wins, and the unnamed forbid keeps the id the server gave it (FILE#N).
        var forbidden = set.Decide(Facts(path: "/admin/keys", headers: ("x-env", "prod")));
        Assert.False(forbidden.Allowed);
        Assert.Equal(["calls.cedar#1"], forbidden.DeterminingPolicies);
        Assert.Contains("forbidden by calls.cedar#1", forbidden.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void A_caller_from_another_trust_domain_with_the_same_path_is_not_the_permitted_caller()
    {
        var set = Pushed(("calls.cedar", CallPolicy));
        Assert.False(set.Decide(Facts(caller: "spiffe://evil.org/web", headers: ("x-env", "prod"))).Allowed);
    }

    [Fact]
    public void A_policy_misusing_the_call_context_is_refused_by_the_server_compiler()
    {
        var records = new List<PolicyFileRecord>
        {
            new("bad.cedar", """permit (principal, action == Writ::Action::"call", resource) when { context.method == 3 };"""),
        };
        Assert.False(WritPolicyCompiler.TryCompile(records, out _, out var errors));
        Assert.Contains(errors, e => e.StartsWith("bad.cedar:", StringComparison.Ordinal));
    }

    [Fact]
    public void Headers_reach_the_context_as_sorted_name_value_pairs_and_nothing_else()
    {
        var (request, _) = CallCedar.Query(Facts(headers: [("x-b", "2"), ("x-a", "1=1")]));
        var headers = Assert.IsType<Writ.Policy.Evaluation.SetValue>(request.Context.Fields["headers"]);
        Assert.Equal(["x-a=1=1", "x-b=2"], headers.Items.Select(v => ((Writ.Policy.Evaluation.StringValue)v).Value).Order(StringComparer.Ordinal));
    }

    [Fact]
    public void A_caller_id_that_does_not_parse_still_builds_a_request_with_an_empty_trust_domain()
    {
        var (_, entities) = CallCedar.Query(Facts(caller: "not a spiffe id"));
        var principal = entities[0];
        Assert.Equal("", ((Writ.Policy.Evaluation.StringValue)principal.Attributes["trust_domain"]).Value);
    }

    [Theory]
    [InlineData("")]
    [InlineData("{")]
    [InlineData("""{"staticPolicies": 3}""")]
    public void A_policy_set_that_does_not_load_is_refused_with_a_reason(string json)
    {
        Assert.False(CallPolicySet.TryLoad(new CallPolicy { Version = 1, PolicySetJson = json }, out var set, out var error));
        Assert.Null(set);
        Assert.False(string.IsNullOrWhiteSpace(error));
    }

    [Fact]
    public void A_caller_calling_itself_is_decided_over_one_entity()
    {
        var set = Pushed(("calls.cedar", CallPolicy));
        var (_, entities) = CallCedar.Query(Facts(caller: "spiffe://example.org/payments/api"));
        Assert.Single(entities);
        Assert.False(set.Decide(Facts(caller: "spiffe://example.org/payments/api", headers: ("x-env", "prod"))).Allowed);
    }

    [Fact]
    public void Without_a_pushed_policy_every_call_is_denied()
    {
        var d = CallPolicySet.None.Decide(Facts(headers: ("x-env", "prod")));
        Assert.False(d.Allowed);
        Assert.Equal(0, d.PolicyVersion);
    }

    [Fact]
    public void Decision_ids_are_unique_and_shaped_apart_from_issuance_ids()
    {
        var ids = Enumerable.Range(0, 1000).Select(_ => CallDecision.NewId()).ToList();
        Assert.Equal(ids.Count, ids.Distinct(StringComparer.Ordinal).Count());
        Assert.All(ids, id => Assert.Matches("^c-[0-9a-f]{20}$", id));
    }
}
