using System.Diagnostics;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using Writ.Agent.Sync;
using Writ.Protocol.Agent;
using Writ.Spiffe;
using Writ.Spiffe.Bundles;
using Writ.Spiffe.X509;

namespace Writ.Bench;

/// <summary>
/// Minimal agents for `writ bench scale`: each attests through the server's real <c>AttestJoinToken</c> (a fresh P-256
/// key, a CSR, a single-use join token) and then speaks the real agent API over mTLS with the agent SVID it got, on
/// the agent's own channel code (<see cref="ServerChannel"/>: the server is authenticated by its SPIFFE ID against the
/// bundle). They do only what the measurement needs: open <c>Sync</c>, read updates, note when they arrive. Each agent
/// has its own HTTP/2 connection (a TLS client certificate belongs to a connection); all live in this one process.
/// </summary>
public static class SimulatedAgents
{
    private const int AttestConcurrency = 8;
    private static readonly TimeSpan Deadline = TimeSpan.FromMinutes(10);

    private sealed class Agent(string id, GrpcChannel channel) : IDisposable
    {
        public string Id { get; } = id;

        public AgentService.AgentServiceClient Client { get; } = new(channel);

        public void Dispose() => channel.Dispose();
    }

    /// <summary>One agent's full sync (Sync with since_revision 0 until page_end): first on a new connection, then warm.</summary>
    public static async Task<SyncFigures> MeasureSyncAsync(string address, TrustDomain td, TrustBundle bundle, string token, int expected, CancellationToken ct)
    {
        using var bootstrap = ServerChannel.Create(address, td, () => bundle, () => null);
        using var agent = await AttestAsync(new AgentService.AgentServiceClient(bootstrap), address, td, bundle, token, ct).ConfigureAwait(false);
        var (firstMs, entries, pages) = await FullSyncAsync(agent, ct).ConfigureAwait(false);
        if (entries != expected)
        {
            throw new BenchFailedException($"the synced agent received {entries} entries instead of {expected}: the benchmark's store is not what it set up");
        }
        var warm = new List<double>();
        for (var i = 0; i < 3; i++)
        {
            warm.Add((await FullSyncAsync(agent, ct).ConfigureAwait(false)).Ms);
        }
        return new SyncFigures(entries, pages, BenchTiming.Round(firstMs), BenchTiming.Round(warm.Order().ElementAt(1)),
            "minimal Sync client in the bench process: real AttestJoinToken, mTLS with the agent SVID, the agent's ServerChannel; first = new connection (TLS handshake included)");
    }

    private static async Task<(double Ms, int Entries, int Pages)> FullSyncAsync(Agent agent, CancellationToken ct)
    {
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var sw = Stopwatch.StartNew();
        using var call = agent.Client.Sync(new SyncRequest { SinceRevision = 0 }, cancellationToken: stop.Token);
        var entries = 0;
        var pages = 0;
        while (await call.ResponseStream.MoveNext(stop.Token).ConfigureAwait(false))
        {
            pages++;
            entries += call.ResponseStream.Current.Upserts.Count;
            if (call.ResponseStream.Current.PageEnd)
            {
                var ms = sw.Elapsed.TotalMilliseconds;
                await stop.CancelAsync().ConfigureAwait(false);
                return (ms, entries, pages);
            }
        }
        throw new BenchFailedException("the server ended the Sync stream before page_end");
    }

    /// <summary>
    /// Attests all agents (tokens share an alias, so one entry parented to it reaches every one), opens a Sync stream
    /// for each at once and waits until every one has its consistent state (page_end); reads the server's memory; then
    /// changes that entry <paramref name="rounds"/> times (fewer when <paramref name="bound"/> has passed since the first
    /// round began; at least once) and times its arrival at each agent.
    /// </summary>
    public static async Task<FleetFigures> MeasureFleetAsync(string address, TrustDomain td, TrustBundle bundle, IReadOnlyList<string> tokens,
        Func<double> serverRss, Func<string, CancellationToken, Task> changeEntry, int rounds, TimeSpan? bound, TextWriter progress, CancellationToken ct,
        Func<CancellationToken, Task<IReadOnlyDictionary<string, double>>>? storeQueries = null)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
        deadline.CancelAfter(Deadline);
        ct = deadline.Token;
        var agents = new Agent[tokens.Count];
        try
        {
            var attest = Stopwatch.StartNew();
            using (var bootstrap = ServerChannel.Create(address, td, () => bundle, () => null))
            {
                var client = new AgentService.AgentServiceClient(bootstrap);
                await Parallel.ForAsync(0, tokens.Count, new ParallelOptions { MaxDegreeOfParallelism = AttestConcurrency, CancellationToken = ct },
                    async (i, c) => agents[i] = await AttestAsync(client, address, td, bundle, tokens[i], c).ConfigureAwait(false)).ConfigureAwait(false);
            }
            var attestSeconds = attest.Elapsed.TotalSeconds;
            progress.WriteLine($"{agents.Length:N0} agents attested in {attestSeconds:N1} s; opening their Sync streams");

            // Arrival stamps: [agent] → the timestamp at which it saw the current round's hint.
            var synced = new long[agents.Length];
            var arrived = new long[agents.Length];
            var currentHint = "";
            var pendingSync = agents.Length;
            var pendingRound = 0;
            var allSynced = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            TaskCompletionSource roundDone = new(TaskCreationOptions.RunContinuationsAsynchronously);
            using var stopStreams = CancellationTokenSource.CreateLinkedTokenSource(ct);
            var start = Stopwatch.GetTimestamp();
            // A stream that fails ends the measurement at once with the reason (a real agent would reconnect; a
            // benchmark that silently lost agents would report figures for fewer than it says).
            var failed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var loops = agents.Select((a, i) => Task.Run(async () =>
            {
                try
                {
                    await ReadAsync(a, i).ConfigureAwait(false);
                }
                catch (Exception e) when (!stopStreams.IsCancellationRequested)
                {
                    var why = e is RpcException r ? $"{r.StatusCode}: {r.Status.Detail}" : $"{e.GetType().Name}: {e.Message}";
                    failed.TrySetException(new BenchFailedException($"simulated agent {i} ({a.Id}) lost its Sync stream: {why.ReplaceLineEndings(" ")}"));
                }
            }, CancellationToken.None)).ToArray();

            async Task ReadAsync(Agent a, int i)
            {
                using var call = a.Client.Sync(new SyncRequest { SinceRevision = 0 }, cancellationToken: stopStreams.Token);
                var isSynced = false;
                while (await call.ResponseStream.MoveNext(stopStreams.Token).ConfigureAwait(false))
                {
                    var now = Stopwatch.GetTimestamp();
                    var u = call.ResponseStream.Current;
                    if (!isSynced && u.PageEnd)
                    {
                        isSynced = true;
                        synced[i] = now;
                        if (Interlocked.Decrement(ref pendingSync) == 0)
                        {
                            allSynced.TrySetResult();
                        }
                        continue;
                    }
                    var hint = Volatile.Read(ref currentHint);
                    if (isSynced && hint.Length > 0 && u.Upserts.Any(e => e.Hint == hint) && Interlocked.CompareExchange(ref arrived[i], now, 0) == 0
                        && Interlocked.Decrement(ref pendingRound) == 0)
                    {
                        Volatile.Read(ref roundDone).TrySetResult();
                    }
                }
                if (!stopStreams.IsCancellationRequested)
                {
                    throw new IOException("the server ended the stream");
                }
            }

            await WhenFirstAsync(allSynced.Task, failed.Task, "reach page_end", () => pendingSync, ct).ConfigureAwait(false);
            var allSyncedMs = (synced.Max() - start) * 1000.0 / Stopwatch.Frequency;
            var rss = serverRss();
            progress.WriteLine($"all {agents.Length:N0} agents synced in {allSyncedMs:N0} ms; server RSS {rss:N1} MiB; up to {rounds} fan-out rounds");

            var samples = new List<double>(agents.Length * rounds);
            var roundsClock = Stopwatch.StartNew();
            var done = 0;
            var queriesBefore = storeQueries is null ? null : await storeQueries(ct).ConfigureAwait(false);
            for (var r = 0; r < rounds && !(r > 0 && bound is { } b && roundsClock.Elapsed >= b); r++, done++)
            {
                Array.Clear(arrived);
                Volatile.Write(ref roundDone, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
                Volatile.Write(ref pendingRound, agents.Length);
                var hint = $"round-{r}-{Guid.NewGuid():N}";
                Volatile.Write(ref currentHint, hint);
                var t0 = Stopwatch.GetTimestamp();
                await changeEntry(hint, ct).ConfigureAwait(false);
                await WhenFirstAsync(Volatile.Read(ref roundDone).Task, failed.Task, $"receive change {r + 1}", () => Volatile.Read(ref pendingRound), ct).ConfigureAwait(false);
                samples.AddRange(arrived.Select(t => (t - t0) * 1000.0 / Stopwatch.Frequency));
            }

            var queriesAfter = storeQueries is null || done == 0 ? null : await storeQueries(ct).ConfigureAwait(false);
            var byOperation = queriesAfter is null
                ? new Dictionary<string, double>()
                : queriesAfter.Select(p => (p.Key, PerChange: (p.Value - queriesBefore!.GetValueOrDefault(p.Key)) / done)).Where(p => p.PerChange > 0)
                    .ToDictionary(p => p.Key, p => BenchTiming.Round(p.PerChange, 1), StringComparer.Ordinal);
            var queriesPerChange = queriesAfter is null ? -1 : (queriesAfter.Values.Sum() - queriesBefore!.Values.Sum()) / done;
            await stopStreams.CancelAsync().ConfigureAwait(false);
            try
            {
                await Task.WhenAll(loops).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or RpcException { StatusCode: StatusCode.Cancelled })
            {
            }
            var sorted = samples.Order().ToArray();
            return new FleetFigures(agents.Length, BenchTiming.Round(attestSeconds, 3), BenchTiming.Round(allSyncedMs), BenchTiming.Round(rss), done, sorted.Length,
                BenchTiming.Round(Percentile(sorted, 50), 2), BenchTiming.Round(Percentile(sorted, 99), 2), BenchTiming.Round(sorted.Length == 0 ? 0 : sorted[^1], 2))
            {
                StoreQueriesPerChange = queriesPerChange < 0 ? -1 : BenchTiming.Round(queriesPerChange, 1),
                StoreQueriesPerChangeByOperation = byOperation,
            };
        }
        finally
        {
            foreach (var a in agents)
            {
                a?.Dispose();
            }
        }
    }

    /// <summary>Waits for <paramref name="done"/>; a failed agent or the deadline ends the wait with a one-line reason.</summary>
    private static async Task WhenFirstAsync(Task done, Task failed, string what, Func<int> pending, CancellationToken ct)
    {
        try
        {
            await (await Task.WhenAny(done, failed).WaitAsync(ct).ConfigureAwait(false)).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            throw new BenchFailedException($"{pending()} simulated agents did not {what} within {Deadline.TotalMinutes:0} minutes: the server is overloaded or lost their streams");
        }
    }

    private static double Percentile(double[] sorted, double p) =>
        sorted.Length == 0 ? 0 : sorted[Math.Clamp((int)Math.Ceiling(p / 100 * sorted.Length) - 1, 0, sorted.Length - 1)];

    /// <summary>The real node attestation: a fresh key, its CSR and a join token; returns an agent on its own mTLS channel.</summary>
    private static async Task<Agent> AttestAsync(AgentService.AgentServiceClient bootstrap, string address, TrustDomain td, TrustBundle bundle, string token, CancellationToken ct)
    {
        var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);   // lives as long as the agent's certificate
        var r = await bootstrap.AttestJoinTokenAsync(new AttestJoinTokenRequest { Token = token, Csr = ByteString.CopyFrom(Csr.Create(key)) }, cancellationToken: ct).ConfigureAwait(false);
        using var leaf = X509CertificateLoader.LoadCertificate(r.SvidChain[0].Span);
        var svid = leaf.CopyWithPrivateKey(key);
        return new Agent(r.SpiffeId, ServerChannel.Create(address, td, () => bundle, () => svid));
    }
}
