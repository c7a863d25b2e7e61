using Grpc.Core;
using Writ.IntegrationTests.Harness;
using Writ.Protocol.Agent;
using Writ.Server.Storage;

namespace Writ.IntegrationTests;

/// <summary>
/// Refusals the agent decides alone (no entry matches the workload) reach the ledger as <c>workload.refused</c>: through a
/// real agent and server, and the server's checks of the report itself.
/// </summary>
public sealed class WorkloadRefusalTests
{
    private static async Task<IReadOnlyList<LedgerEvent>> RefusalsAsync(ServerProcess server)
    {
        await using var store = await WritStoreFactory.OpenAsync("sqlite", Path.Combine(server.DataDir, "writ.db"), TimeProvider.System, CancellationToken.None);
        return await store.Ledger.ListAsync(0, 1000, "workload.refused", null, CancellationToken.None);
    }

    private static ReportWorkloadRefusedRequest Report(string instance = "4242:123456")
    {
        var evidence = new AttestedWorkload { InstanceId = instance };
        evidence.Selectors.Add(new Selector { Type = "unix", Value = "uid:1000" });
        evidence.Selectors.Add(new Selector { Type = "k8s", Value = "ns:attacker" });
        var r = new ReportWorkloadRefusedRequest { Evidence = evidence, Code = "WRIT-WORKLOAD-DENIED", Reason = "no identity issued" };
        r.AttestorErrors.Add("WRIT-K8S-POD-NOT-FOUND: attestor 'k8s': the kubelet lists no pod with this uid");
        return r;
    }

    [Fact]
    public async Task A_workload_no_entry_matches_is_refused_and_the_refusal_is_in_the_ledger_once()
    {
        using var dir = new TempDir();
        await using var server = await ServerProcess.StartAsync(dir["server"]);
        var bundle = await server.WritAsync("bundle", "show", "--format", "pem");
        Assert.True(bundle.ExitCode == 0, bundle.ToString());
        await File.WriteAllTextAsync(dir["bundle.pem"], bundle.Stdout);
        await using var agent = new AgentProcess(server.AgentApi, dir["agent"], dir["w.sock"], dir["bundle.pem"], await TestAgent.NewJoinTokenAsync(server));
        await agent.StartAsync();

        // An entry for another uid only: this process (root) matches nothing.
        var entry = await server.WritAsync("entry", "create", "--spiffe-id", "spiffe://example.org/someone-else", "--parent-id", agent.AgentId,
            "--selector", "unix:uid:4242");
        Assert.True(entry.ExitCode == 0, entry.ToString());
        // Three processes (three instances) are refused: three records, one per instance.
        for (var i = 0; i < 3; i++)
        {
            var fetched = await Proc.WritAsync("svid", "fetch", "--socket", agent.SocketPath);
            Assert.NotEqual(0, fetched.ExitCode);
            Assert.Contains("WRIT-WORKLOAD-DENIED", fetched.Stderr + fetched.Stdout, StringComparison.Ordinal);
        }
        // One process asking again and again (a client retrying in a loop) is one more record, not one per call.
        using (var channel = Writ.Protocol.WorkloadApiChannel.ForSocket(agent.SocketPath))
        {
            var client = new global::SpiffeWorkloadAPI.SpiffeWorkloadAPIClient(channel);
            for (var i = 0; i < 5; i++)
            {
                var e = await Assert.ThrowsAsync<RpcException>(async () =>
                    await client.FetchJWTSVIDAsync(new global::JWTSVIDRequest { Audience = { "https://api.example.org" } }, Writ.Protocol.WorkloadApiChannel.Headers));
                Assert.Equal(StatusCode.PermissionDenied, e.StatusCode);
            }
        }

        var records = await WorkloadTools.EventuallyAsync(async () =>
        {
            var r = await RefusalsAsync(server);
            return r.Count >= 4 ? r : throw new InvalidOperationException($"{r.Count} workload.refused records yet, 4 expected");
        }, TimeSpan.FromSeconds(30), "the agent's refusal reports reaching the ledger");
        Assert.Equal(4, records.Select(r => r.Subject).Distinct().Count());
        var own = $"instance:{Environment.ProcessId}:";
        Assert.Single(records, r => r.Subject.StartsWith(own, StringComparison.Ordinal));
        var record = records[0];
        Assert.Equal(agent.AgentId, record.Actor);
        Assert.StartsWith("instance:", record.Subject, StringComparison.Ordinal);
        Assert.Contains("\"code\":\"WRIT-WORKLOAD-DENIED\"", record.DataJson, StringComparison.Ordinal);
        Assert.Contains("\"unix:uid:0\"", record.DataJson, StringComparison.Ordinal);

        // The chain holds with the new kind in it.
        var verify = await server.WritAsync("audit", "verify");
        Assert.True(verify.ExitCode == 0, verify.ToString());
    }

    [Fact]
    public async Task Refusal_reports_are_authenticated_checked_and_flood_limited()
    {
        using var dir = new TempDir();
        await using var server = await ServerProcess.StartAsync(dir["server"]);

        using var stranger = await TestAgent.ConnectAsync(server);
        var anon = await Assert.ThrowsAsync<RpcException>(async () => await stranger.Client.ReportWorkloadRefusedAsync(Report()));
        Assert.Equal(StatusCode.Unauthenticated, anon.StatusCode);

        using var agent = await TestAgent.ConnectAsync(server);
        await agent.AttestAsync(await TestAgent.NewJoinTokenAsync(server));
        var noEvidence = Report();
        noEvidence.Evidence = null;
        var badSelector = Report();
        badSelector.Evidence.Selectors.Add(new Selector { Type = "k8s", Value = "ns:two words" });
        var bad = new (ReportWorkloadRefusedRequest Request, string Reason)[]
        {
            (noEvidence, "evidence"),
            (badSelector, "evidence"),
            (new ReportWorkloadRefusedRequest(Report()) { Code = "denied" }, "code"),
            (new ReportWorkloadRefusedRequest(Report()) { Code = "WRIT-DENIED\nforged" }, "code"),
            (new ReportWorkloadRefusedRequest(Report()) { Reason = "" }, "reason"),
            (new ReportWorkloadRefusedRequest(Report()) { Reason = "x\nforged log line" }, "reason"),
        };
        foreach (var (request, reason) in bad)
        {
            var e = await Assert.ThrowsAsync<RpcException>(async () => await agent.Client.ReportWorkloadRefusedAsync(request));
            Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
            Assert.Contains(reason, e.Status.Detail, StringComparison.Ordinal);
            Assert.DoesNotContain('\n', e.Status.Detail);
        }
        Assert.Empty(await RefusalsAsync(server));

        // A flood: within any one minute at most the per-agent limit is recorded one by one; every answer says whether its
        // report was recorded, and the records are exactly those.
        const int sent = 2 * Writ.Server.Hosting.ServerContext.WorkloadRefusalsPerAgentPerMinute + 10;
        var recorded = 0;
        for (var i = 0; i < sent; i++)
        {
            var r = await agent.Client.ReportWorkloadRefusedAsync(Report($"{1000 + i}:1"));
            recorded += r.Recorded ? 1 : 0;
        }
        Assert.InRange(recorded, Writ.Server.Hosting.ServerContext.WorkloadRefusalsPerAgentPerMinute, sent - 10);
        var records = await RefusalsAsync(server);
        Assert.Equal(recorded, records.Count);
        Assert.All(records, r => Assert.Equal(agent.AgentId, r.Actor));
        Assert.Contains("\"attestor_errors\":[\"WRIT-K8S-POD-NOT-FOUND", records[0].DataJson, StringComparison.Ordinal);
    }
}
