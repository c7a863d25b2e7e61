using System.Text.Json.Nodes;
using Writ.Authz;
using Writ.Protocol.Agent;
using Writ.Server.Api;
using Writ.Server.Ledger;
using Writ.Server.Storage;

namespace Writ.Server.Tests.Authz;

/// <summary>
/// ReportAccess as an attacker sees it: reports that break the size and shape rules are refused whole; the records say who
/// really reported them; one agent's flood cannot fill the ledger or hide; replay (what-if) treats calls like issuances.
/// </summary>
public sealed class AccessReportTests
{
    private const string Reporter = "spiffe://example.org/writ/agent/join_token/reporter";
    private const string Victim = "spiffe://example.org/writ/agent/join_token/victim";

    private static AccessDecision Decision(bool allowed = false, CallFacts? facts = null) => new()
    {
        DecisionId = CallDecision.NewId(),
        Allowed = allowed,
        Reason = allowed ? "permitted by call-payments-prod (policy version 2)" : "no policy permits Writ::Action::\"call\" for this caller and resource (policy version 2); deny by default",
        Code = allowed ? "" : AccessRecords.PolicyDenialCode,
        Facts = facts ?? CallPolicyTests.Facts(headers: ("x-env", "prod")),
        PolicyVersion = 2,
        DecidedAtUnixMs = 1_800_000_000_123,
        Surface = "ext_authz",
    };

    private static ReportAccessRequest Report(params AccessDecision[] decisions)
    {
        var r = new ReportAccessRequest();
        r.Decisions.AddRange(decisions);
        return r;
    }

    [Fact]
    public void A_well_formed_report_passes()
    {
        Assert.Null(AgentApi.CheckAccessReport(Report(Decision(), Decision(allowed: true))));
        Assert.Null(AgentApi.CheckAccessReport(new ReportAccessRequest { Dropped = 12 }));
    }

    [Fact]
    public void A_denial_that_named_no_destination_is_recorded_too()
    {
        var d = Decision();
        d.Code = "WRIT-AUTHZ-NO-RESOURCE";
        d.Facts.ResourceSpiffeId = "";
        Assert.Null(AgentApi.CheckAccessReport(Report(d)));
        var e = AccessRecords.Decision(Reporter, d, DateTimeOffset.UnixEpoch);
        Assert.Equal(AccessRecords.Denied, e.Kind);
        Assert.Equal("", e.Subject);
    }

    public static TheoryData<string, string> Broken()
    {
        var big = new string('a', AgentApi.MaxAccessString + 1);
        var data = new TheoryData<string, string>();
        void Add(string name, string expected) => data.Add(name, expected);
        foreach (var (name, expected) in Cases(big).Select(c => (c.Name, c.Expected)))
            Add(name, expected);
        return data;
    }

    private static IEnumerable<(string Name, string Expected, Func<ReportAccessRequest> Build)> Cases(string big)
    {
        AccessDecision With(Action<AccessDecision> change)
        {
            var d = Decision();
            change(d);
            return d;
        }
        yield return ("too many decisions", "at most 256", () => Report([.. Enumerable.Range(0, AgentApi.MaxAccessDecisionsPerReport + 1).Select(_ => Decision())]));
        yield return ("issuance id", "\"c-\" and 20", () => Report(With(d => d.DecisionId = "d-0123456789abcdef0123")));
        yield return ("upper-case id", "\"c-\" and 20", () => Report(With(d => d.DecisionId = "c-0123456789ABCDEF0123")));
        yield return ("short id", "\"c-\" and 20", () => Report(With(d => d.DecisionId = "c-0123456789abcdef012")));
        yield return ("id with a newline", "\"c-\" and 20", () => Report(With(d => d.DecisionId = "c-0123456789abcdef0123\n")));
        yield return ("no facts", "facts are missing", () => Report(With(d => d.Facts = null)));
        yield return ("huge reason", "at most 4096", () => Report(With(d => d.Reason = big)));
        yield return ("huge path", "at most 4096", () => Report(With(d => d.Facts.Path = "/" + big)));
        yield return ("forged log line", "control characters", () => Report(With(d => d.Reason = "denied\n1861 everything is fine")));
        yield return ("too many headers", "headers, at most 32", () => Report(With(d =>
        {
            for (var i = 0; i < AgentApi.MaxAccessHeaders + 1; i++)
                d.Facts.Headers["x-h" + i] = "v";
        })));
        yield return ("upper-case header", "lower-case", () => Report(With(d => d.Facts.Headers["X-Env"] = "prod")));
        yield return ("huge header value", "lower-case", () => Report(With(d => d.Facts.Headers["x-env"] = big)));
        yield return ("too many selectors", "at most 256", () => Report(With(d => d.Facts.CallerSelectors.AddRange(Enumerable.Range(0, 257).Select(i => "unix:uid:" + i)))));
        yield return ("same id twice", "appears twice", () =>
        {
            var d = Decision();
            return Report(d, d.Clone());
        });
        yield return ("denial without code", "code must be", () => Report(With(d => d.Code = "")));
        yield return ("allow with code", "code must be", () => Report(With(d => { d.Allowed = true; })));
        yield return ("lower-case code", "code must be", () => Report(With(d => d.Code = "writ-authz-denied")));
        yield return ("unknown credential", "credential must be", () => Report(With(d => d.Facts.Credential = "password")));
        yield return ("no surface", "surface", () => Report(With(d => d.Surface = "")));
        yield return ("allowed without resource", "an allowed call names its resource", () => Report(With(d => { d.Allowed = true; d.Code = ""; d.Facts.ResourceSpiffeId = ""; })));
        yield return ("no reason", "reason is required", () => Report(With(d => d.Reason = "")));
        yield return ("negative drop count", "dropped", () => new ReportAccessRequest { Dropped = -1 });
        yield return ("negative version", "policy_version", () => Report(With(d => d.PolicyVersion = -1)));
    }

    [Theory]
    [MemberData(nameof(Broken))]
    public void A_broken_report_is_refused_whole_with_a_one_line_reason(string name, string expected)
    {
        var build = Cases(new string('a', AgentApi.MaxAccessString + 1)).Single(c => c.Name == name).Build;
        var request = build();
        if (request.Decisions.Count > 0 && request.Decisions.Count <= 4)
            request.Decisions.Insert(0, Decision());   // a good decision before the bad one is not recorded either: the check is whole
        var error = AgentApi.CheckAccessReport(request);
        Assert.NotNull(error);
        Assert.Contains(expected, error, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', error);
    }

    [Fact]
    public void The_record_names_the_authenticated_reporter_whatever_the_facts_claim()
    {
        var facts = CallPolicyTests.Facts();
        facts.CallerAgentId = Victim;   // the report claims another agent serves the caller
        var d = Decision(facts: facts);
        var e = AccessRecords.Decision(Reporter, d, DateTimeOffset.UnixEpoch);
        Assert.Equal(Reporter, e.Actor);
        Assert.Equal(AccessRecords.Denied, e.Kind);
        Assert.Equal(d.DecisionId, e.DecisionId);
        Assert.Equal(facts.ResourceSpiffeId, e.Subject);
        var data = JsonNode.Parse(e.DataJson)!;
        Assert.Equal(Reporter, data["reported_by"]!.GetValue<string>());
        Assert.Equal(Victim, data["caller_agent_id"]!.GetValue<string>());   // recorded as claimed, not as who reported
        Assert.Equal("policy", data["stage"]!.GetValue<string>());
        Assert.Equal("call", data["request"]!["action"]!["id"]!.GetValue<string>());
        Assert.Equal(AccessRecords.Allowed, AccessRecords.Decision(Reporter, Decision(allowed: true), DateTimeOffset.UnixEpoch).Kind);
    }

    [Fact]
    public void A_caller_calling_itself_is_one_entity_and_replays()
    {
        var self = Decision(facts: CallPolicyTests.Facts("spiffe://example.org/web", "spiffe://example.org/web"));
        var data = JsonNode.Parse(AccessRecords.Decision(Reporter, self, DateTimeOffset.UnixEpoch).DataJson)!;
        Assert.Single(data["entities"]!.AsArray());
        Assert.True(Server.Policy.WritCedar.TryReadQuery(data["request"], data["entities"], out _, out var error), error);
    }

    [Fact]
    public void A_flood_is_written_up_to_the_limit_and_the_rest_is_counted_into_one_summary()
    {
        var windows = new AccessWindows(perMinute: 10);
        var t0 = new DateTimeOffset(2026, 12, 7, 12, 0, 0, TimeSpan.Zero);
        Assert.Equal(new AccessWindows.Grant(8, false, 0, 0), windows.Admit(Reporter, t0, 8, 0));
        Assert.Equal(new AccessWindows.Grant(2, false, 0, 0), windows.Admit(Reporter, t0.AddSeconds(1), 7, 0));   // 5 over
        Assert.Equal(new AccessWindows.Grant(0, false, 0, 0), windows.Admit(Reporter, t0.AddSeconds(2), 3, 4));   // 3 over, 4 dropped: no room
        // Another agent has its own budget.
        Assert.Equal(new AccessWindows.Grant(10, false, 0, 0), windows.Admit(Victim, t0.AddSeconds(3), 10, 0));
        // The next minute: one summary with every count, then the decisions.
        Assert.Equal(new AccessWindows.Grant(9, true, 8, 4), windows.Admit(Reporter, t0.AddMinutes(1), 9, 0));
        // Nothing is lost: 8 + 2 + 9 written, 8 over the limit + 4 dropped counted.
        Assert.Equal(new AccessWindows.Grant(0, false, 0, 0), windows.Admit(Reporter, t0.AddMinutes(1).AddSeconds(1), 0, 0));
    }

    [Fact]
    public void The_summary_record_counts_for_the_agent()
    {
        var e = AccessRecords.Summary(Reporter, 8, 4, DateTimeOffset.UnixEpoch);
        Assert.Equal(AccessRecords.Suppressed, e.Kind);
        Assert.Equal(Reporter, e.Subject);
        Assert.Null(e.DecisionId);
        Assert.Equal("""{"agent":"spiffe://example.org/writ/agent/join_token/reporter","dropped":4,"over_limit":8}""", e.DataJson);
    }

    [Fact]
    public void What_if_replays_a_recorded_call_and_reports_its_flip()
    {
        var denied = Decision();
        var record = AccessRecords.Decision(Reporter, denied, DateTimeOffset.UnixEpoch) with { Seq = 1 };
        var candidate = CallPolicyTests.Compile(CallPolicyTests.Example("default.cedar"), CallPolicyTests.Example("call-payments.cedar"));
        var replayed = WhatIfReplay.Replay(record, candidate);
        Assert.NotNull(replayed);
        var change = replayed.Value.Change;
        Assert.NotNull(change);
        Assert.Equal(denied.DecisionId, change.DecisionId);
        Assert.Equal("call", change.Action);
        Assert.Equal("spiffe://example.org/payments/api", change.SpiffeId);
        Assert.Equal("caller spiffe://example.org/web via spiffe://example.org/writ/agent/join_token/a1", change.Workload);
        Assert.Equal(("deny", "allow"), (change.Was, change.WouldBe));
        Assert.Equal(["call-payments-prod"], change.DeterminingPolicies);

        // The same set as before changes nothing; a live-state refusal is not replayed at all.
        Assert.Null(WhatIfReplay.Replay(record, Server.Policy.IssuancePolicyEngine.DefaultSet)!.Value.Change);
        var revoked = Decision();
        revoked.Code = "WRIT-AUTHZ-REVOKED";
        Assert.Null(WhatIfReplay.Replay(AccessRecords.Decision(Reporter, revoked, DateTimeOffset.UnixEpoch), candidate));
    }
}
