using System.Text.Json;
using Grpc.Core;
using Writ.Authz;
using Writ.IntegrationTests.Harness;
using Writ.Protocol.Agent;
using Writ.Server.Storage;

namespace Writ.IntegrationTests.RelyingParties;

/// <summary>
/// The server side of request-time decisions through a real server process and real gRPC: the call policy reaches an
/// agent's Sync stream (first update, then each new version; a refused push never), and agents' access reports are
/// authenticated, checked, recorded in the hash chain under the reporting agent, explained and replayed.
/// </summary>
public sealed class AccessLedgerTests
{
    private static string Example(string name) => Path.Combine(Repo.Root, "docs", "examples", "policy", "writ", name);

    private static async Task<ProcResult> PushAsync(ServerProcess server, TempDir dir, string name, params string[] examples)
    {
        var folder = dir[name];
        Directory.CreateDirectory(folder);
        foreach (var e in examples)
            File.Copy(Example(e), Path.Combine(folder, e));
        return await server.WritAsync("policy", "push", "--file", folder);
    }

    private static async Task<CallPolicy> NextCallPolicyAsync(IAsyncStreamReader<SyncUpdate> reader, CancellationToken ct)
    {
        while (await reader.MoveNext(ct))
        {
            if (reader.Current.CallPolicy is { } p)
                return p;
        }
        throw new InvalidOperationException("the Sync stream ended without a call policy");
    }

    private static CallFacts Facts(string path = "/v1/balance", string credential = CallCedar.X509Credential, bool prod = true)
    {
        var f = new CallFacts
        {
            CallerSpiffeId = "spiffe://example.org/web", ResourceSpiffeId = "spiffe://example.org/payments/api", Method = "GET",
            Path = path, Host = "payments.example.org", Credential = credential, NowUnix = DateTimeOffset.UtcNow.ToUnixTimeSeconds(),
            CallerAgentId = "spiffe://example.org/writ/agent/join_token/someone-else",
        };
        if (prod)
            f.Headers["x-env"] = "prod";
        return f;
    }

    private static AccessDecision Reported(CallPolicySet set, CallFacts facts, string? code = null)
    {
        var d = set.Decide(facts);
        var a = new AccessDecision
        {
            DecisionId = CallDecision.NewId(), Allowed = d.Allowed && code is null, Reason = code is null ? d.Reason : "the caller's X.509-SVID is revoked",
            Code = d.Allowed && code is null ? "" : code ?? "WRIT-AUTHZ-DENIED", Facts = facts, PolicyVersion = d.PolicyVersion,
            DecidedAtUnixMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(), Surface = "ext_authz",
        };
        if (code is null)
            a.DeterminingPolicies.AddRange(d.DeterminingPolicies);   // a refusal before Cedar has none
        return a;
    }

    [Fact]
    public async Task The_call_policy_reaches_the_agent_first_and_after_every_new_version_never_a_refused_one()
    {
        using var dir = new TempDir();
        await using var server = await ServerProcess.StartAsync(dir["server"]);
        using var agent = await TestAgent.ConnectAsync(server);
        await agent.AttestAsync(await TestAgent.NewJoinTokenAsync(server));
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        using var stream = agent.Client.Sync(new SyncRequest(), cancellationToken: cts.Token);
        var reader = stream.ResponseStream;

        Assert.True(await reader.MoveNext(cts.Token));
        var first = reader.Current;
        Assert.True(first.Reset);
        var initial = first.CallPolicy;
        Assert.NotNull(initial);
        Assert.Equal(1, initial.Version);   // the default set, installed on first start
        Assert.True(CallPolicySet.TryLoad(initial, out var defaults, out var error), error);
        Assert.False(defaults!.Decide(Facts()).Allowed);   // no permit for calls by default
        Assert.Contains("writ-builtin-admin-mint", initial.PolicySetJson, StringComparison.Ordinal);

        var push = await PushAsync(server, dir, "v2", "default.cedar", "call-payments.cedar");
        Assert.True(push.ExitCode == 0, push.ToString());
        var v2 = await NextCallPolicyAsync(reader, cts.Token);
        Assert.Equal(2, v2.Version);
        Assert.True(CallPolicySet.TryLoad(v2, out var set, out error), error);
        var allowed = set!.Decide(Facts());
        Assert.True(allowed.Allowed, allowed.Reason);
        Assert.Equal(["call-payments-prod"], allowed.DeterminingPolicies);
        var list = await server.WritAsync("policy", "list", "--output", "json");
        Assert.Contains(v2.Sha256, list.Stdout, StringComparison.Ordinal);

        // A push the schema refuses changes nothing: the next call policy the agent sees is the rollback's (version 3).
        var bad = dir["bad"];
        Directory.CreateDirectory(bad);
        await File.WriteAllTextAsync(Path.Combine(bad, "calls.cedar"), """
            @id("bad-call")
            permit (principal, action == Writ::Action::"call", resource)
            when { context.verb == "GET" };
            """, cts.Token);
        var refused = await server.WritAsync("policy", "push", "--file", bad);
        Assert.NotEqual(0, refused.ExitCode);
        Assert.Contains("calls.cedar:3:8: policy bad-call:", refused.Stdout, StringComparison.Ordinal);
        Assert.Contains("no attribute `verb`", refused.Stdout, StringComparison.Ordinal);
        Assert.Contains("WRIT-CLI-POLICY-INVALID", refused.Stderr, StringComparison.Ordinal);
        var rollback = await server.WritAsync("policy", "rollback", "1");
        Assert.True(rollback.ExitCode == 0, rollback.ToString());
        var v3 = await NextCallPolicyAsync(reader, cts.Token);
        Assert.Equal(3, v3.Version);
        Assert.DoesNotContain("bad-call", v3.PolicySetJson, StringComparison.Ordinal);
        Assert.True(CallPolicySet.TryLoad(v3, out var rolledBack, out error), error);
        Assert.False(rolledBack!.Decide(Facts()).Allowed);
    }

    [Fact]
    public async Task Access_reports_are_authenticated_checked_recorded_under_the_reporter_explained_and_replayed()
    {
        using var dir = new TempDir();
        await using var server = await ServerProcess.StartAsync(dir["server"]);
        var push = await PushAsync(server, dir, "v2", "default.cedar", "call-payments.cedar");
        Assert.True(push.ExitCode == 0, push.ToString());
        using var agent = await TestAgent.ConnectAsync(server);
        await agent.AttestAsync(await TestAgent.NewJoinTokenAsync(server));
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        CallPolicy pushed;
        using (var stream = agent.Client.Sync(new SyncRequest(), cancellationToken: cts.Token))
            pushed = await NextCallPolicyAsync(stream.ResponseStream, cts.Token);
        Assert.True(CallPolicySet.TryLoad(pushed, out var set, out var error), error);

        async Task<IReadOnlyList<LedgerEvent>> AccessRecordsAsync()
        {
            await using var store = await WritStoreFactory.OpenAsync("sqlite", Path.Combine(server.DataDir, "writ.db"), TimeProvider.System, CancellationToken.None);
            return await store.Ledger.ListAsync(0, 1000, "access.", null, CancellationToken.None);
        }

        // No agent certificate: refused.
        using var stranger = await TestAgent.ConnectAsync(server);
        var good = new ReportAccessRequest { Decisions = { Reported(set!, Facts()) } };
        var anon = await Assert.ThrowsAsync<RpcException>(async () => await stranger.Client.ReportAccessAsync(good));
        Assert.Equal(StatusCode.Unauthenticated, anon.StatusCode);

        // One bad decision refuses the whole report.
        var badId = Reported(set!, Facts());
        badId.DecisionId = "d-0123456789abcdef0123";
        var invalid = await Assert.ThrowsAsync<RpcException>(async () =>
            await agent.Client.ReportAccessAsync(new ReportAccessRequest { Decisions = { Reported(set!, Facts()), badId } }));
        Assert.Equal(StatusCode.InvalidArgument, invalid.StatusCode);
        Assert.StartsWith("WRIT-ACCESS-INVALID", invalid.Status.Detail, StringComparison.Ordinal);
        Assert.Contains("decision 1", invalid.Status.Detail, StringComparison.Ordinal);
        Assert.Empty(await AccessRecordsAsync());

        // An honest report: a forbid (JWT on an admin path), an allow, a live-state refusal; and one that lies (an allow
        // for a call the policy denies).
        var forbidden = Reported(set!, Facts("/admin/keys", CallCedar.JwtCredential));
        var allowed = Reported(set!, Facts());
        var revoked = Reported(set!, Facts(), "WRIT-AUTHZ-REVOKED");
        var lie = Reported(set!, Facts(prod: false));
        Assert.False(lie.Allowed);
        lie.Allowed = true;
        lie.Code = "";
        lie.Reason = "permitted";
        var report = new ReportAccessRequest { Decisions = { forbidden, allowed, revoked, lie } };
        Assert.Equal(4, (await agent.Client.ReportAccessAsync(report)).Recorded);
        Assert.Equal(0, (await agent.Client.ReportAccessAsync(report)).Recorded);   // a retried report is not written twice

        var records = await AccessRecordsAsync();
        Assert.Equal(4, records.Count);
        Assert.All(records, r => Assert.Equal(agent.AgentId, r.Actor));   // the authenticated agent, not the claimed caller_agent_id
        Assert.All(records, r => Assert.Contains($"\"reported_by\":\"{agent.AgentId}\"", r.DataJson, StringComparison.Ordinal));
        Assert.Equal(["access.denied", "access.allowed", "access.denied", "access.allowed"], records.Select(r => r.Kind));

        // writ explain: the recorded call, re-evaluated under the version it was made under.
        async Task<JsonElement> ExplainAsync(string id)
        {
            var r = await server.WritAsync("explain", id, "--output", "json");
            Assert.True(r.ExitCode == 0, r.ToString());
            return JsonDocument.Parse(r.Stdout).RootElement.Clone();
        }
        var e = await ExplainAsync(forbidden.DecisionId);
        Assert.Equal("deny", e.GetProperty("decision").GetString());
        Assert.Equal("/admin/keys", e.GetProperty("path").GetString());
        Assert.Equal("call", e.GetProperty("request").GetProperty("action").GetProperty("id").GetString());
        var re = e.GetProperty("reevaluated");
        Assert.True(re.GetProperty("agrees").GetBoolean());
        Assert.Equal(2, re.GetProperty("policy_version").GetInt64());
        Assert.Equal("call-payments-admin-mtls-only", re.GetProperty("determining_policies")[0].GetString());
        Assert.False((await ExplainAsync(lie.DecisionId)).GetProperty("reevaluated").GetProperty("agrees").GetBoolean());
        Assert.False((await ExplainAsync(revoked.DecisionId)).GetProperty("reevaluated").TryGetProperty("agrees", out _));
        var text = await server.WritAsync("explain", lie.DecisionId);
        Assert.True(text.ExitCode == 0, text.ToString());
        Assert.Contains("DISAGREES with the reported outcome", text.Stdout, StringComparison.Ordinal);
        Assert.Matches($@"\nreported by +{System.Text.RegularExpressions.Regex.Escape(agent.AgentId)} \(ext_authz, decided ", text.Stdout);

        // writ policy whatif: without the call permit the allowed call flips; the live refusal is not replayed.
        var candidate = dir["candidate"];
        Directory.CreateDirectory(candidate);
        File.Copy(Example("default.cedar"), Path.Combine(candidate, "default.cedar"));
        var whatif = await server.WritAsync("policy", "whatif", "--file", candidate, "--output", "json");
        Assert.True(whatif.ExitCode == 0, whatif.ToString());
        var changes = JsonDocument.Parse(whatif.Stdout).RootElement.GetProperty("changes").EnumerateArray().ToList();
        var flip = Assert.Single(changes, c => c.GetProperty("decision_id").GetString() == allowed.DecisionId);
        Assert.Equal("call", flip.GetProperty("action").GetString());
        Assert.Equal(("allow", "deny"), (flip.GetProperty("was").GetString(), flip.GetProperty("would_be").GetString()));
        Assert.Contains(changes, c => c.GetProperty("decision_id").GetString() == lie.DecisionId);   // the lie flips back to deny
        Assert.DoesNotContain(changes, c => c.GetProperty("decision_id").GetString() == revoked.DecisionId);

        var verify = await server.WritAsync("audit", "verify");
        Assert.True(verify.ExitCode == 0, verify.ToString());
    }
}
