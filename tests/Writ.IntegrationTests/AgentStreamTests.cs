using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography.X509Certificates;
using Grpc.Core;
using Writ.Cli.Admin;
using Writ.Cli.Workload;
using Writ.IntegrationTests.Harness;
using Writ.Protocol.Admin;
using ProtoEntry = Writ.Protocol.Agent.Entry;
using ProtoSelector = Writ.Protocol.Agent.Selector;

namespace Writ.IntegrationTests;

/// <summary>The Workload API's streams on a real agent: rotation before half-life, entries arriving and leaving live.</summary>
public sealed class AgentStreamTests
{
    [Fact]
    public async Task A_new_svid_arrives_on_an_open_stream_before_the_old_ones_half_life()
    {
        await using var rig = await AgentRig.StartAsync();
        await rig.CreateEntryAsync("spiffe://example.org/short-lived", ["unix:uid:0"], "--x509-ttl", "20s");
        await AgentTests.WaitForSvidAsync(rig);

        using var client = rig.Client();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        using var call = client.Client.FetchX509SVID(new X509SVIDRequest(), WorkloadClient.Headers, cancellationToken: cts.Token);
        var firstTask = call.ResponseStream.MoveNext(cts.Token);
        Assert.True(await firstTask);
        var first = Leaf(call.ResponseStream.Current);
        var firstKey = call.ResponseStream.Current.Svids[0].X509SvidKey;
        var halfLife = first.NotBefore.ToUniversalTime() + ((first.NotAfter - first.NotBefore) / 2);

        X509Certificate2 next;
        DateTime arrived;
        while (true)
        {
            Assert.True(await call.ResponseStream.MoveNext(cts.Token), "the stream ended before a rotation");
            arrived = DateTime.UtcNow;
            next = Leaf(call.ResponseStream.Current);
            if (next.SerialNumber != first.SerialNumber)
            {
                break;
            }
        }
        TestContext.Current.SendDiagnosticMessage(
            $"X.509 rotation: old SVID {first.NotBefore:HH:mm:ss}..{first.NotAfter:HH:mm:ss} (half-life {halfLife:HH:mm:ss.fff}), new one arrived {arrived:HH:mm:ss.fff}, {(halfLife - arrived).TotalMilliseconds:F0} ms before half-life");
        Assert.True(arrived < halfLife, $"the new SVID arrived at {arrived:O}, after the old one's half-life {halfLife:O}");
        Assert.Equal("spiffe://example.org/short-lived", call.ResponseStream.Current.Svids[0].SpiffeId);
        Assert.NotEqual(firstKey, call.ResponseStream.Current.Svids[0].X509SvidKey);   // a fresh key per rotation
        Assert.True(next.NotAfter > first.NotAfter);
    }

    [Fact]
    public async Task The_shortest_ttl_rotates_in_time_without_churning()
    {
        // The server back-dates NotBefore by 10 s, so a 10 s TTL arrives already at its nominal half-life: the agent
        // must neither serve it until it expires nor re-sign it in a loop.
        await using var rig = await AgentRig.StartAsync();
        await rig.CreateEntryAsync("spiffe://example.org/shortest", ["unix:uid:0"], "--x509-ttl", "10s");
        await AgentTests.WaitForSvidAsync(rig);

        using var client = rig.Client();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        using var call = client.Client.FetchX509SVID(new X509SVIDRequest(), WorkloadClient.Headers, cancellationToken: cts.Token);
        Assert.True(await call.ResponseStream.MoveNext(cts.Token));
        var first = Leaf(call.ResponseStream.Current);
        var serials = new List<string> { first.SerialNumber };
        var current = first;
        // Watch for the whole life of the first SVID.
        var end = first.NotAfter.ToUniversalTime();
        while (DateTime.UtcNow < end)
        {
            using var until = CancellationTokenSource.CreateLinkedTokenSource(cts.Token);
            until.CancelAfter(end - DateTime.UtcNow + TimeSpan.FromMilliseconds(10));
            try
            {
                Assert.True(await call.ResponseStream.MoveNext(until.Token));
            }
            catch (RpcException e) when (e.StatusCode == StatusCode.Cancelled && until.IsCancellationRequested && !cts.IsCancellationRequested)
            {
                break;
            }
            var now = DateTime.UtcNow;
            Assert.True(now < current.NotAfter.ToUniversalTime(), $"the SVID expired at {current.NotAfter:O} before its successor arrived at {now:O}");
            current = Leaf(call.ResponseStream.Current);
            if (!serials.Contains(current.SerialNumber))
            {
                serials.Add(current.SerialNumber);
            }
        }
        TestContext.Current.SendDiagnosticMessage($"10 s TTL: {serials.Count} SVIDs over the first one's lifetime");
        Assert.InRange(serials.Count, 2, 4);
    }

    [Fact]
    public async Task Entries_created_and_deleted_while_a_workload_watches_reach_its_stream()
    {
        await using var rig = await AgentRig.StartAsync();
        using var admin = new AdminConnection(rig.Server.AdminSocket);
        var baseId = await CreateAsync(admin, rig, "spiffe://example.org/watch/base");
        await AgentTests.WaitForSvidAsync(rig);

        using var client = rig.Client();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        using var call = client.Client.FetchX509SVID(new X509SVIDRequest(), WorkloadClient.Headers, cancellationToken: cts.Token);
        Assert.True(await call.ResponseStream.MoveNext(cts.Token));
        Assert.Equal(["spiffe://example.org/watch/base"], Ids(call.ResponseStream.Current));

        var added = new List<double>();
        var removed = new List<double>();
        for (var i = 0; i < 10; i++)
        {
            var spiffeId = $"spiffe://example.org/watch/live-{i}";
            var sw = Stopwatch.StartNew();
            var id = await CreateAsync(admin, rig, spiffeId);
            await NextMatchingAsync(call, ids => ids.Contains(spiffeId), cts.Token);
            added.Add(sw.Elapsed.TotalMilliseconds);
            Assert.Equal(["spiffe://example.org/watch/base", spiffeId], Ids(call.ResponseStream.Current));

            sw.Restart();
            await admin.CallAsync(s => s.DeleteEntryAsync(new DeleteEntryRequest { Id = id }));
            await NextMatchingAsync(call, ids => !ids.Contains(spiffeId), cts.Token);
            removed.Add(sw.Elapsed.TotalMilliseconds);
            Assert.Equal(["spiffe://example.org/watch/base"], Ids(call.ResponseStream.Current));
        }
        var report = string.Create(CultureInfo.InvariantCulture,
            $"entry -> open FetchX509SVID stream over {added.Count} runs: created p50 {Median(added):F0} ms (max {added.Max():F0}), deleted p50 {Median(removed):F0} ms (max {removed.Max():F0})");
        TestContext.Current.SendDiagnosticMessage(report);   // a figure to read, not a bound: the bench measures latency

        // The last identity gone: the stream ends with PermissionDenied.
        await admin.CallAsync(s => s.DeleteEntryAsync(new DeleteEntryRequest { Id = baseId }));
        var e = await Assert.ThrowsAsync<RpcException>(async () =>
        {
            while (await call.ResponseStream.MoveNext(cts.Token))
            {
            }
        });
        Assert.Equal(StatusCode.PermissionDenied, e.StatusCode);
        using var again = client.Client.FetchX509SVID(new X509SVIDRequest(), WorkloadClient.Headers, cancellationToken: cts.Token);
        var fresh = await Assert.ThrowsAsync<RpcException>(async () => await again.ResponseStream.MoveNext(cts.Token));
        Assert.Equal(StatusCode.PermissionDenied, fresh.StatusCode);
    }

    [Fact]
    public async Task An_expiring_entry_leaves_the_open_stream_when_it_expires()
    {
        await using var rig = await AgentRig.StartAsync();
        await rig.CreateEntryAsync("spiffe://example.org/expiring/stays", ["unix:uid:0"]);
        var expiresAt = DateTimeOffset.UtcNow.AddSeconds(8);
        await rig.CreateEntryAsync("spiffe://example.org/expiring/goes", ["unix:uid:0"],
            "--expires-at", expiresAt.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture));
        using var client = rig.Client();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        using var call = client.Client.FetchX509SVID(new X509SVIDRequest(), WorkloadClient.Headers, cancellationToken: cts.Token);
        await NextMatchingAsync(call, ids => ids.Count == 2, cts.Token);
        var expiry = DateTimeOffset.FromUnixTimeSeconds(expiresAt.ToUnixTimeSeconds());

        await NextMatchingAsync(call, ids => !ids.Contains("spiffe://example.org/expiring/goes"), cts.Token);
        var late = DateTimeOffset.UtcNow - expiry;
        TestContext.Current.SendDiagnosticMessage($"expired entry left the stream {late.TotalMilliseconds:F0} ms after its expiry");
        Assert.True(late < TimeSpan.FromSeconds(2), $"the expired entry's SVID was still the workload's current state {late.TotalSeconds:F1}s after expiry");
        Assert.Equal(["spiffe://example.org/expiring/stays"], Ids(call.ResponseStream.Current));
    }

    [Fact]
    public async Task Fifty_workloads_at_once_share_one_svid_per_identity_with_its_hint()
    {
        await using var rig = await AgentRig.StartAsync();
        await rig.CreateEntryAsync("spiffe://example.org/crowd", ["unix:uid:0"], "--hint", "internal");
        await AgentTests.WaitForSvidAsync(rig);
        await rig.CreateEntryAsync("spiffe://example.org/crowd-new", ["unix:uid:0"]);   // signed on first demand, by 50 at once
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var clients = Enumerable.Range(0, 50).Select(_ => rig.Client()).ToList();
        try
        {
            var responses = await Task.WhenAll(clients.Select(async c =>
            {
                using var call = c.Client.FetchX509SVID(new X509SVIDRequest(), WorkloadClient.Headers, cancellationToken: cts.Token);
                while (await call.ResponseStream.MoveNext(cts.Token))
                {
                    if (call.ResponseStream.Current.Svids.Count == 2)
                    {
                        return call.ResponseStream.Current;
                    }
                }
                throw new InvalidOperationException("stream ended");
            }));
            foreach (var id in new[] { "spiffe://example.org/crowd", "spiffe://example.org/crowd-new" })
            {
                var serials = responses.Select(r => WorkloadClient.ParseCertificates(r.Svids.Single(s => s.SpiffeId == id).X509Svid.Span)[0].SerialNumber).Distinct().ToList();
                Assert.True(serials.Count == 1, $"{id}: {serials.Count} different SVIDs for one identity");
            }
            Assert.All(responses, r => Assert.Equal("internal", r.Svids.Single(s => s.SpiffeId == "spiffe://example.org/crowd").Hint));
            var jwt = await clients[0].Client.FetchJWTSVIDAsync(new JWTSVIDRequest { Audience = { "x" }, SpiffeId = "spiffe://example.org/crowd" }, WorkloadClient.Headers);
            Assert.Equal("internal", Assert.Single(jwt.Svids).Hint);
        }
        finally
        {
            clients.ForEach(c => c.Dispose());
        }
    }

    private static async Task<string> CreateAsync(AdminConnection admin, AgentRig rig, string spiffeId)
    {
        var r = await admin.CallAsync(s => s.CreateEntriesAsync(new CreateEntriesRequest
        {
            Entries = { new ProtoEntry { SpiffeId = spiffeId, ParentId = rig.Agent.AgentId, Selectors = { new ProtoSelector { Type = "unix", Value = "uid:0" } } } },
        }));
        return r.Entries[0].Id;
    }

    private static async Task NextMatchingAsync(AsyncServerStreamingCall<X509SVIDResponse> call, Func<List<string>, bool> match, CancellationToken ct)
    {
        while (await call.ResponseStream.MoveNext(ct))
        {
            if (match(Ids(call.ResponseStream.Current)))
            {
                return;
            }
        }
        Assert.Fail("the stream ended");
    }

    private static List<string> Ids(X509SVIDResponse r) => [.. r.Svids.Select(s => s.SpiffeId).Order(StringComparer.Ordinal)];

    private static X509Certificate2 Leaf(X509SVIDResponse r) => WorkloadClient.ParseCertificates(r.Svids[0].X509Svid.Span)[0];

    private static double Median(List<double> xs)
    {
        var s = xs.Order().ToList();
        return s.Count % 2 == 1 ? s[s.Count / 2] : (s[(s.Count / 2) - 1] + s[s.Count / 2]) / 2;
    }
}
