using Grpc.Core;
using Microsoft.Extensions.Logging.Abstractions;
using Writ.Agent.Authz;
using Writ.Agent.Sync;
using Writ.Agent.Tests.Instances;
using Writ.Protocol.Agent;
using Writ.Spiffe;
using Writ.Spiffe.Bundles;

namespace Writ.Agent.Tests.Authz;

/// <summary>Access reports: every denial, a sample of allows, bounded with a drop count; and the call policy taken from Sync.</summary>
public sealed class AccessReporterTests
{
    /// <summary>An agent API that records ReportAccess batches.</summary>
    private sealed class RecordingServer : AgentService.AgentServiceClient
    {
        private readonly Lock _lock = new();
        private readonly List<ReportAccessRequest> _batches = [];

        public IReadOnlyList<ReportAccessRequest> Batches
        {
            get
            {
                lock (_lock)
                {
                    return [.. _batches];
                }
            }
        }

        public override AsyncUnaryCall<ReportAccessResponse> ReportAccessAsync(ReportAccessRequest request, CallOptions options)
        {
            lock (_lock)
            {
                _batches.Add(request.Clone());
            }
            return new(Task.FromResult(new ReportAccessResponse { Recorded = request.Decisions.Count }), Task.FromResult(new Metadata()),
                () => Status.DefaultSuccess, () => [], () => { });
        }
    }

    private static CallOutcome Outcome(bool allowed, string id) =>
        new(allowed, id, allowed ? "" : AuthzCodes.Denied, "because", "spiffe://example.org/web",
            new CallFacts { CallerSpiffeId = "spiffe://example.org/web", ResourceSpiffeId = "spiffe://example.org/api" }, null);

    [Fact]
    public async Task A_report_fits_the_server_s_rules_whatever_the_request_carried()
    {
        var server = new RecordingServer();
        var reporter = new AccessReporter(() => server, 0, new Random(1), TimeProvider.System, NullLogger.Instance);
        var hostile = Outcome(false, "c-hostile");
        hostile.Facts.Path = "/" + new string('a', 10_000) + "\r\nx-injected: 1";
        hostile.Facts.Headers["x-team"] = "blue\nred";
        reporter.Offer(hostile, "ext_authz", DateTimeOffset.UtcNow);
        // No destination: refused, and recorded all the same (every denial reaches the ledger).
        reporter.Offer(Outcome(false, "c-nowhere") with { Facts = new CallFacts() }, "ext_authz", DateTimeOffset.UtcNow);
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        var sending = reporter.SendReportsAsync(cts.Token);
        await Deadline.UntilAsync(() => reporter.Delivered == 2, "the report");
        await cts.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => sending);
        var batch = Assert.Single(server.Batches);
        Assert.Equal(2, batch.Decisions.Count);
        var sent = batch.Decisions[0];
        Assert.Equal("", batch.Decisions[1].Facts.ResourceSpiffeId);
        Assert.Equal(0, batch.Dropped);
        Assert.True(sent.Facts.Path.Length <= AccessReporter.MaxText);
        Assert.DoesNotContain(sent.Facts.Headers["x-team"], char.IsControl);
        Assert.DoesNotContain(sent.Facts.Path, char.IsControl);
        Assert.True(hostile.Facts.Path.Length > AccessReporter.MaxText);   // the decider's own facts are not changed
    }

    [Fact]
    public async Task Every_denial_and_a_sample_of_allows_reach_the_server_and_overflow_is_counted()
    {
        var server = new RecordingServer();
        var reporter = new AccessReporter(() => server, 0.5, new Random(7), TimeProvider.System, NullLogger.Instance);
        var now = DateTimeOffset.UtcNow;
        for (var i = 0; i < 100; i++)
        {
            reporter.Offer(Outcome(false, "c-deny" + i), "ext_authz", now);
            reporter.Offer(Outcome(true, "c-allow" + i), "ext_authz", now);
        }
        // Beyond the queue: dropped and counted, never blocking.
        for (var i = 0; i < AccessReporter.MaxPending; i++)
        {
            reporter.Offer(Outcome(false, "c-flood" + i), "sdk", now);
        }
        Assert.True(reporter.Dropped > 0);

        using var cts = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        var sending = reporter.SendReportsAsync(cts.Token);
        await Deadline.UntilAsync(() => reporter.Delivered >= AccessReporter.MaxPending, "every queued decision to be delivered");
        await cts.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => sending);

        var decisions = server.Batches.SelectMany(b => b.Decisions).ToList();
        Assert.All(server.Batches, b => Assert.True(b.Decisions.Count <= AccessReporter.MaxBatch));
        Assert.Equal(100, decisions.Count(d => d.DecisionId.StartsWith("c-deny", StringComparison.Ordinal)));
        var allows = decisions.Count(d => d.DecisionId.StartsWith("c-allow", StringComparison.Ordinal));
        Assert.InRange(allows, 20, 80);   // sampled at 0.5 with a pinned random: neither none nor all
        Assert.All(decisions.Where(d => !d.Allowed), d => Assert.Equal(AuthzCodes.Denied, d.Code));
        Assert.Equal(reporter.Dropped, server.Batches.Sum(b => b.Dropped));
    }

    [Fact]
    public async Task Sync_applies_a_pushed_call_policy_and_keeps_the_previous_one_when_a_bad_one_follows()
    {
        using var rig = new InstanceRig();
        var options = new AgentOptions
        {
            ServerAddress = "127.0.0.1:1", TrustDomain = TrustDomain.Parse("example.org"), DataDir = "unused", SocketPath = "unused",
        };
        var sync = new SyncClient(() => rig.Server, _ => null, _ => { }, rig.State, options, TimeProvider.System, rig.Log);
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        var syncing = sync.RunAsync(cts.Token);
        Assert.Same(Writ.Authz.CallPolicySet.None, rig.State.CallPolicy);

        Assert.True(Writ.Policy.Ast.PolicySet.TryParse("""@id("p") permit(principal, action == Writ::Action::"call", resource);""", out var set, out _));
        var first = new SyncUpdate { Reset = true, PageEnd = true, Revision = 1, CallPolicy = new CallPolicy { Version = 4, PolicySetJson = Writ.Policy.Json.PolicyJson.ToJson(set!), Sha256 = "abc" } };
        await rig.Server.SyncUpdates.Writer.WriteAsync(first, TestContext.Current.CancellationToken);
        await Deadline.UntilAsync(() => rig.State.CallPolicy.Version == 4, "the call policy to be applied");

        var bad = new SyncUpdate { Revision = 2, PageEnd = true, CallPolicy = new CallPolicy { Version = 5, PolicySetJson = "[not a policy set" } };
        await rig.Server.SyncUpdates.Writer.WriteAsync(bad, TestContext.Current.CancellationToken);
        await Deadline.UntilAsync(() => rig.State.Current.Revision == 2, "the next page");
        Assert.Equal(4, rig.State.CallPolicy.Version);
        Assert.Contains(rig.Log.Entries, l => l.Message.Contains("cannot be used", StringComparison.Ordinal));
        await cts.CancelAsync();
        try
        {
            await syncing;
        }
        catch (OperationCanceledException)
        {
        }
    }
}
