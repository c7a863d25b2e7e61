using System.Diagnostics;
using System.Globalization;
using Grpc.Core;
using Writ.Cli.Admin;
using Writ.Protocol.Admin;
using Writ.Cli.Workload;
using Writ.IntegrationTests.Harness;

namespace Writ.IntegrationTests;

/// <summary>
/// Issue #16 item 6, outages of the store: a real server and agent on a PostgreSQL cluster of the test's own (stopped and
/// restarted here; the shared one is never touched). While the store is unreachable, workloads keep their cached SVIDs and
/// streams, the server refuses new issuance and admin writes with Unavailable (<c>WRIT-STORE-UNAVAILABLE</c>, one line),
/// and nothing is half-written; when PostgreSQL returns — also after a crash-like stop under load — the same server
/// process recovers without a restart.
/// </summary>
public sealed class StoreOutageTests
{
    private static readonly TimeSpan Outage = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan Recovery = TimeSpan.FromSeconds(90);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static string[] ServerArgs(PgCluster pg) => ["--store-kind", "postgres", "--store-connection", pg.ConnectionString];

    [Fact]
    public async Task Store_unreachable_for_30s_cached_svids_are_served_issuance_is_unavailable_nothing_half_written_and_the_server_recovers()
    {
        await using var pg = await PgCluster.StartAsync();
        await using var rig = await AgentRig.StartAsync(ServerArgs(pg));
        await rig.CreateEntryAsync("spiffe://example.org/outage/cached", ["unix:uid:0"]);
        await AgentTests.WaitForSvidAsync(rig);
        using var client = rig.Client();
        using var streamCts = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        using var stream = client.Client.FetchX509SVID(new X509SVIDRequest(), WorkloadClient.Headers, cancellationToken: streamCts.Token);
        Assert.True(await stream.ResponseStream.MoveNext(Ct));
        var cached = Serial(stream.ResponseStream.Current);

        await pg.StopAsync();
        var down = Stopwatch.StartNew();

        // New issuance (an admin mint, and a new workload instance through the agent) is refused as "retry later".
        var mint = await rig.Server.WritAsync("x509", "mint", "--spiffe-id", "spiffe://example.org/outage/minted");
        Expect.OneLineError(mint, "WRIT-STORE-UNAVAILABLE");
        var fresh = await rig.WorkloadAsync("svid", "fetch");
        Expect.OneLineError(fresh, "retry");
        Assert.DoesNotContain("no identity", fresh.Stderr, StringComparison.Ordinal);
        // An admin write is refused whole: the entry must not exist after the store returns.
        var create = await rig.Server.WritAsync("entry", "create", "--spiffe-id", "spiffe://example.org/outage/half",
            "--parent-id", rig.Agent.AgentId, "--selector", "unix:uid:4242");
        Expect.OneLineError(create, "WRIT-STORE-UNAVAILABLE");
        Assert.DoesNotContain("Npgsql", create.Stderr, StringComparison.Ordinal);

        // For the whole outage, this instance is served its cached SVID (same serial), and nothing exits.
        using (var tick = new PeriodicTimer(TimeSpan.FromSeconds(2)))
        {
            while (down.Elapsed < Outage && await tick.WaitForNextTickAsync(Ct))
            {
                Assert.Equal(cached, Serial(await FetchAsync(client)));
                Assert.False(rig.Server.HasExited, "the server exited while the store was down:\n" + rig.Server.Stderr.Text);
                Assert.False(rig.Agent.HasExited, "the agent exited while the store was down:\n" + rig.Agent.Stderr.Text);
            }
        }

        await pg.StartAgainAsync();

        // The same server process recovers: issuance and admin writes work again, without a restart.
        await WorkloadTools.EventuallyAsync(async () =>
        {
            var r = await rig.Server.WritAsync("x509", "mint", "--spiffe-id", "spiffe://example.org/outage/minted");
            return r.ExitCode == 0 ? r : throw new InvalidOperationException(r.ToString());
        }, Recovery, "issuance after the store returned");
        var second = await rig.CreateEntryAsync("spiffe://example.org/outage/after", ["unix:uid:0"]);
        var fetched = await WorkloadTools.EventuallyAsync(async () =>
        {
            var r = await rig.WorkloadAsync("svid", "fetch");
            return r.ExitCode == 0 ? r : throw new InvalidOperationException(r.ToString());
        }, Recovery, "a new workload instance being served after the store returned");
        Assert.Contains("spiffe://example.org/outage/after", fetched.Stdout, StringComparison.Ordinal);

        // The stream opened before the outage is still open and receives the new entry.
        await WorkloadTools.EventuallyAsync(async () =>
        {
            Assert.True(await stream.ResponseStream.MoveNext(Ct), "the workload's stream ended");
            return stream.ResponseStream.Current.Svids.Count == 2 ? true : throw new InvalidOperationException("one SVID");
        }, Recovery, "the open stream receiving the entry created after the outage");
        Assert.NotEmpty(second);

        // Nothing half-written: the refused entry does not exist, and the ledger verifies.
        var list = await rig.Server.WritAsync("entry", "list", "--output", "json");
        Assert.True(list.ExitCode == 0, list.ToString());
        Assert.DoesNotContain("spiffe://example.org/outage/half", list.Stdout, StringComparison.Ordinal);
        await AssertLedgerVerifiesAsync(rig.Server);
        await streamCts.CancelAsync();
    }

    [Fact]
    public async Task PostgreSQL_killed_and_restarted_under_load_the_server_recovers_without_a_restart_and_the_ledger_verifies()
    {
        await using var pg = await PgCluster.StartAsync();
        await using var rig = await AgentRig.StartAsync(ServerArgs(pg));
        await rig.CreateEntryAsync("spiffe://example.org/restart/w", ["unix:uid:0"]);
        await AgentTests.WaitForSvidAsync(rig);

        // Load: admin writers creating entries over the admin API back to back (each an entry plus its ledger record in
        // one transaction) while PostgreSQL goes down hard (immediate: crash recovery at start) and comes back.
        using var admin = new AdminConnection(rig.Server.AdminSocket);
        using var stop = new CancellationTokenSource();
        var acknowledged = new System.Collections.Concurrent.ConcurrentBag<string>();
        var refused = new System.Collections.Concurrent.ConcurrentBag<RpcException>();
        var writers = Enumerable.Range(0, 4).Select(w => Task.Run(async () =>
        {
            for (var i = 0; !stop.IsCancellationRequested; i++)
            {
                var id = $"spiffe://example.org/restart/load-{w}-{i}";
                var entry = new Writ.Protocol.Agent.Entry { SpiffeId = id, ParentId = rig.Agent.AgentId };
                entry.Selectors.Add(new Writ.Protocol.Agent.Selector { Type = "unix", Value = $"uid:{10000 + i}" });
                try
                {
                    await admin.Client.CreateEntriesAsync(new CreateEntriesRequest { Entries = { entry } }, deadline: DateTime.UtcNow.AddSeconds(60));
                    acknowledged.Add(id);
                }
                catch (RpcException e)
                {
                    refused.Add(e);
                    await Task.Delay(100);
                }
            }
        })).ToList();

        await WorkloadTools.EventuallyAsync(() => Task.FromResult(acknowledged.Count >= 2 ? true : throw new InvalidOperationException("no writes yet")),
            Recovery, "the first writes");
        await pg.StopAsync("immediate");
        var before = acknowledged.Count;
        await pg.StartAgainAsync();
        await WorkloadTools.EventuallyAsync(() => Task.FromResult(acknowledged.Count >= before + 2 ? true : throw new InvalidOperationException("no writes since")),
            Recovery, "writes succeeding again after PostgreSQL's restart");
        await stop.CancelAsync();
        await Task.WhenAll(writers);
        Assert.False(rig.Server.HasExited, "the server exited:\n" + rig.Server.Stderr.Text);

        // Every acknowledged write is there (PostgreSQL's crash recovery kept what was committed), the ledger holds one
        // entry.created per entry, and the chain verifies; a new workload instance is served.
        var list = await rig.Server.WritAsync("entry", "list", "--output", "json");
        Assert.True(list.ExitCode == 0, list.ToString());
        foreach (var id in acknowledged)
            Assert.Contains(id, list.Stdout, StringComparison.Ordinal);
        var entries = Convert.ToInt64(await pg.ScalarAsync("SELECT count(*) FROM entries"), CultureInfo.InvariantCulture);
        Assert.True(entries >= acknowledged.Count + 1, $"{entries} entries for {acknowledged.Count} acknowledged writes");
        Assert.Equal(entries, Convert.ToInt64(await pg.ScalarAsync("SELECT count(*) FROM ledger WHERE kind = 'entry.created'"), CultureInfo.InvariantCulture));
        await AssertLedgerVerifiesAsync(rig.Server);
        var fetched = await WorkloadTools.EventuallyAsync(async () =>
        {
            var r = await rig.WorkloadAsync("svid", "fetch");
            return r.ExitCode == 0 ? r : throw new InvalidOperationException(r.ToString());
        }, Recovery, "a new workload instance being served after PostgreSQL's restart");
        Assert.Contains("spiffe://example.org/restart/w", fetched.Stdout, StringComparison.Ordinal);
        // Writes in flight when PostgreSQL went away were refused as "retry later", one line, no driver trace.
        Assert.NotEmpty(refused);
        foreach (var e in refused)
        {
            Assert.True(e.StatusCode == StatusCode.Unavailable && Writ.Protocol.Errors.WritStatus.Read(e).Code == "WRIT-STORE-UNAVAILABLE"
                && !e.Status.Detail.Contains('\n', StringComparison.Ordinal) && !e.Status.Detail.Contains("Npgsql", StringComparison.Ordinal),
                $"a write during the restart was refused with {e.StatusCode}: {e.Status.Detail}");
        }
    }

    internal static async Task AssertLedgerVerifiesAsync(ServerProcess server)
    {
        var verify = await server.WritAsync("audit", "verify");
        Assert.True(verify.ExitCode == 0, verify.ToString());
    }

    private static async Task<X509SVIDResponse> FetchAsync(WorkloadClient client)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        using var call = client.Client.FetchX509SVID(new X509SVIDRequest(), WorkloadClient.Headers, cancellationToken: cts.Token);
        Assert.True(await call.ResponseStream.MoveNext(cts.Token));
        return call.ResponseStream.Current;
    }

    private static string Serial(X509SVIDResponse r) => WorkloadClient.ParseCertificates(r.Svids[0].X509Svid.Span)[0].SerialNumber;
}
