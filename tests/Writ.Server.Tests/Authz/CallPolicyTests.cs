using System.Text.Json.Nodes;
using Writ.Authz;
using Writ.Protocol.Agent;
using Writ.Server.Api;
using Writ.Server.Issuance;
using Writ.Server.Ledger;
using Writ.Server.Policy;
using Writ.Server.Storage;

namespace Writ.Server.Tests.Authz;

/// <summary>
/// The call policy as the server sends it over Sync, as agents load it (Writ.Authz), and as the server replays it from the
/// ledger: the three must decide alike. The schema checks call policies at push time.
/// </summary>
public sealed class CallPolicyTests
{
    internal static string ExamplesDir
    {
        get
        {
            var dir = new DirectoryInfo(AppContext.BaseDirectory);
            while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Writ.slnx")))
                dir = dir.Parent;
            return Path.Combine(dir?.FullName ?? throw new InvalidOperationException("Writ.slnx not found above the test binaries"), "docs", "examples", "policy", "writ");
        }
    }

    internal static PolicyFileRecord Example(string name) => new(name, File.ReadAllText(Path.Combine(ExamplesDir, name)));

    internal static CompiledPolicySet Compile(params PolicyFileRecord[] files) =>
        WritPolicyCompiler.TryCompile(files, out var set, out var errors) ? set! : throw new InvalidOperationException(string.Join("\n", errors));

    internal static CallFacts Facts(string caller = "spiffe://example.org/web", string resource = "spiffe://example.org/payments/api",
        string method = "GET", string path = "/v1/balance", string credential = CallCedar.X509Credential, params (string Name, string Value)[] headers)
    {
        var f = new CallFacts
        {
            CallerSpiffeId = caller, ResourceSpiffeId = resource, Method = method, Path = path, Host = "payments.example.org",
            Credential = credential, CallerSerialHex = "0A1B", NowUnix = 1_800_000_000, CallerAgentId = "spiffe://example.org/writ/agent/join_token/a1",
        };
        foreach (var (n, v) in headers)
            f.Headers[n] = v;
        return f;
    }

    private static (bool Allowed, IReadOnlyList<string> Determining) ServerDecides(CompiledPolicySet set, CallFacts facts)
    {
        // What the server replays: the ledger record's request and entities, read back.
        var d = new AccessDecision { DecisionId = CallDecision.NewId(), Facts = facts, Reason = "r", Surface = "ext_authz", DecidedAtUnixMs = 1, Code = "WRIT-AUTHZ-DENIED" };
        var data = JsonNode.Parse(AccessRecords.Decision("spiffe://example.org/writ/agent/join_token/a2", d, DateTimeOffset.UnixEpoch).DataJson)!;
        Assert.True(WritCedar.TryReadQuery(data["request"], data["entities"], out var query, out var error), error);
        var (allowed, determining, _, _) = IssuanceDecider.Authorize(set, query!);
        return (allowed, determining);
    }

    [Fact]
    public void An_agent_loading_the_synced_policy_decides_calls_like_the_server()
    {
        var compiled = Compile(Example("default.cedar"), Example("call-payments.cedar"), Example("call-local-callers.cedar"));
        var pushed = AgentApi.CallPolicyOf(new ActivePolicy(7, compiled));
        Assert.Equal(7, pushed.Version);
        Assert.Equal(compiled.Sha256, pushed.Sha256);
        Assert.True(CallPolicySet.TryLoad(pushed, out var agentSet, out var loadError), loadError);
        // Every policy, the built-ins included, with its id.
        Assert.Equal(compiled.Decisions.All.Select(p => p.Id).Order(StringComparer.Ordinal), agentSet!.Set.All.Select(p => p.Id).Order(StringComparer.Ordinal));
        Assert.Contains(WritPolicyCompiler.BuiltinAdminMintId, agentSet.Set.All.Select(p => p.Id));

        var prod = ("x-env", "prod");
        var local = Facts("spiffe://example.org/payments/batch", "spiffe://example.org/ledger", "POST", "/entries");
        local.CallerLocal = true;
        local.CallerSelectors.Add("unix:uid:1000");
        var cases = new (CallFacts Facts, bool Allowed)[]
        {
            (Facts(headers: prod), true),
            (Facts(), false),                                                                          // no x-env=prod
            (Facts(method: "DELETE", headers: prod), false),
            (Facts("spiffe://evil.example.net/web", headers: prod), false),                             // foreign trust domain
            (Facts(resource: "spiffe://example.org/inventory", headers: prod), false),                  // not a payments resource
            (Facts(path: "/admin/keys", headers: prod), true),                                          // mTLS may
            (Facts(path: "/admin/keys", credential: CallCedar.JwtCredential, headers: prod), false),    // forbid wins
            (local, true),
            (Facts("spiffe://example.org/payments/batch", "spiffe://example.org/ledger", "POST", "/entries"), false),  // not live
        };
        foreach (var (facts, expected) in cases)
        {
            var agent = agentSet.Decide(facts);
            var server = ServerDecides(compiled, facts);
            Assert.Equal(expected, agent.Allowed);
            Assert.Equal(server.Allowed, agent.Allowed);
            Assert.Equal(server.Determining, agent.DeterminingPolicies);
            Assert.Equal(7, agent.PolicyVersion);
        }
        Assert.Equal(["call-payments-admin-mtls-only"], agentSet.Decide(Facts(path: "/admin/keys", credential: CallCedar.JwtCredential, headers: prod)).DeterminingPolicies);
    }

    [Fact]
    public void The_default_set_permits_no_call()
    {
        var pushed = AgentApi.CallPolicyOf(new ActivePolicy(0, IssuancePolicyEngine.DefaultSet));
        Assert.True(CallPolicySet.TryLoad(pushed, out var set, out var error), error);
        var d = set!.Decide(Facts(headers: ("x-env", "prod")));
        Assert.False(d.Allowed);
        Assert.Empty(d.DeterminingPolicies);
        Assert.False(ServerDecides(IssuancePolicyEngine.DefaultSet, Facts()).Allowed);
    }

    [Fact]
    public void The_same_active_version_is_serialized_once_for_every_stream()
    {
        var active = new ActivePolicy(3, Compile(Example("default.cedar"), Example("call-payments.cedar")));
        Assert.Same(AgentApi.CallPolicyOf(active), AgentApi.CallPolicyOf(active));
        Assert.NotSame(AgentApi.CallPolicyOf(active), AgentApi.CallPolicyOf(new ActivePolicy(4, active.Compiled)));
    }

    [Theory]
    [InlineData("context.verb == \"GET\"", "verb")]                                  // CallContext has no such attribute
    [InlineData("context.headers == \"x-env=prod\"", "")]                             // a Set compared with a String
    [InlineData("context.caller_local == \"true\"", "")]                              // a Bool compared with a String
    [InlineData("principal.uid == 1000", "uid")]                                      // a caller is an Identity, not a Workload
    [InlineData("context.audience.contains(\"x\")", "audience")]                      // issuance context, not a call's
    public void A_call_policy_that_misuses_the_context_is_refused_with_its_position(string condition, string mentions)
    {
        var bad = new PolicyFileRecord("calls.cedar", $$"""
            @id("bad-call")
            permit (principal, action == Writ::Action::"call", resource)
            when { {{condition}} };
            """);
        Assert.False(WritPolicyCompiler.TryCompile([Example("default.cedar"), bad], out _, out var errors));
        var error = Assert.Single(errors);
        Assert.StartsWith("calls.cedar:3:", error, StringComparison.Ordinal);
        Assert.Contains("bad-call", error, StringComparison.Ordinal);
        Assert.Contains(mentions, error, StringComparison.Ordinal);
    }

    [Fact]
    public void A_call_policy_using_every_documented_attribute_compiles()
    {
        var good = new PolicyFileRecord("calls.cedar", """
            @id("all-call-attributes")
            permit (principal, action == Writ::Action::"call", resource)
            when {
              principal.trust_domain == "example.org" && resource.path like "/payments/*" && context.method == "GET" &&
              context.path like "/v1/*" && context.host == "payments.example.org" && context.headers.contains("x-env=prod") &&
              context.credential == "x509-svid" && context.now > 0 && context.caller_local &&
              context.caller_selectors.contains("unix:uid:1000") && context.caller_instance_id != "" &&
              context.caller_agent_id like "spiffe://example.org/writ/agent/*" && principal.dns_names.contains("web.example.org") &&
              principal.parent_id == context.caller_agent_id
            };
            """);
        Assert.True(WritPolicyCompiler.TryCompile([Example("default.cedar"), good], out _, out var errors), string.Join("\n", errors));
    }
}
