using System.Diagnostics;
using System.Text.Json.Serialization;
using Grpc.Core;
using Writ.Protocol.Admin;
using Writ.Server.Hosting;
using ProtoEntry = Writ.Protocol.Agent.Entry;
using ProtoSelector = Writ.Protocol.Agent.Selector;

namespace Writ.Bench;

public sealed record RevocationLevel(
    [property: JsonPropertyName("watchers")] int Watchers,
    [property: JsonPropertyName("revocations")] int Revocations,
    [property: JsonPropertyName("stream_p50_ms")] double StreamP50,
    [property: JsonPropertyName("stream_p99_ms")] double StreamP99,
    [property: JsonPropertyName("all_streams_p50_ms")] double AllP50,
    [property: JsonPropertyName("all_streams_p99_ms")] double AllP99,
    [property: JsonPropertyName("max_ms")] double Max);

public sealed record RevocationBenchResult(
    [property: JsonPropertyName("benchmark")] string Benchmark,
    [property: JsonPropertyName("levels")] IReadOnlyList<RevocationLevel> Levels,
    [property: JsonPropertyName("goal_p99_ms")] double GoalP99);

/// <summary>
/// `writ bench revocation`: a server (SQLite, memory keys) and an agent in this process, one entry for this process's
/// uid, and W open FetchX509SVID streams ("watching workloads"). Each round revokes the SVID the streams carry through
/// the admin API (what `writ revoke --serial` sends) and measures, per stream, the time from the call until that stream
/// receives an update without the revoked serial: server revocation (ledger, revision bump) → Sync push → agent drops the
/// SVID → stream update. The next round starts when every stream holds the fresh SVID the agent signs in its place.
/// </summary>
public static class RevocationBench
{
    public const double GoalP99Ms = 250;
    private const int StreamsPerConnection = 50;   // below HTTP/2's usual 100 concurrent streams per connection

    /// <param name="bound">Per level, no new revocation round starts once this has passed (one always runs); null: no bound.</param>
    public static async Task<RevocationBenchResult> RunAsync(IReadOnlyList<int> levels, int rounds, TimeSpan? bound, BenchHost host, TextWriter progress, CancellationToken ct)
    {
        var dir = Directory.CreateTempSubdirectory("wrb-").FullName;
        try
        {
            await using var writ = await InProcessWrit.StartAsync(dir, host, ct).ConfigureAwait(false);
            var (td, admin, agent) = (writ.TrustDomain, writ.Admin, writ.Agent);
            await admin.CallAsync(s => s.CreateEntriesAsync(new CreateEntriesRequest
            {
                Entries =
                {
                    new ProtoEntry
                    {
                        SpiffeId = td.IdString + "/bench/revoked",
                        ParentId = agent.AgentId,
                        Selectors = { new ProtoSelector { Type = "unix", Value = $"uid:{UnixPeer.EffectiveUid}" } },
                        X509TtlSeconds = 3600,
                    },
                },
            }, cancellationToken: ct)).ConfigureAwait(false);

            var results = new List<RevocationLevel>();
            foreach (var watchers in levels)
            {
                progress.WriteLine($"{watchers} watching stream(s): up to {rounds} revocations");
                results.Add(await MeasureLevelAsync(admin, writ.WorkloadSocket, watchers, rounds, bound, ct).ConfigureAwait(false));
            }
            return new RevocationBenchResult("revocation", results, GoalP99Ms);
        }
        finally
        {
            Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
            Directory.Delete(dir, recursive: true);
        }
    }

    private static async Task<RevocationLevel> MeasureLevelAsync(IBenchAdmin admin, string socket, int watchers, int rounds, TimeSpan? bound, CancellationToken ct)
    {
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var clients = Enumerable.Range(0, (watchers + StreamsPerConnection - 1) / StreamsPerConnection).Select(_ => new WorkloadSocketClient(socket)).ToList();
        var round = new Round(watchers);
        var readers = Enumerable.Range(0, watchers).Select(i => Task.Run(() => WatchAsync(clients[i / StreamsPerConnection], i, round, stop.Token))).ToList();
        try
        {
            var perStream = new List<double>();
            var perRound = new List<double>();
            var clock = Stopwatch.StartNew();
            for (var n = 0; n < rounds && !(n > 0 && bound is { } b && clock.Elapsed >= b); n++)
            {
                var serial = await round.SettledSerialAsync(TimeSpan.FromSeconds(60), ct).ConfigureAwait(false);
                var done = round.Start(serial);
                await admin.CallAsync(s => s.RevokeAsync(new RevokeRequest { SerialHex = serial, Reason = "bench" }, cancellationToken: ct)).ConfigureAwait(false);
                var latencies = await done.WaitAsync(TimeSpan.FromSeconds(60), ct).ConfigureAwait(false);
                perStream.AddRange(latencies);
                perRound.Add(latencies.Max());
            }
            return new RevocationLevel(watchers, perRound.Count, Ms(Percentile(perStream, 50)), Ms(Percentile(perStream, 99)),
                Ms(Percentile(perRound, 50)), Ms(Percentile(perRound, 99)), Ms(perStream.Max()));
        }
        catch (TimeoutException)
        {
            throw new BenchFailedException($"with {watchers} watching streams a round did not complete within 60 s: the agent stopped serving or never re-signed");
        }
        finally
        {
            await stop.CancelAsync().ConfigureAwait(false);
            await Task.WhenAll(readers).ConfigureAwait(false);
            foreach (var c in clients)
            {
                c.Dispose();
            }
        }
    }

    /// <summary>One stream: reads updates (reconnecting if the agent ends it) and tells the round what each carries.</summary>
    private static async Task WatchAsync(WorkloadSocketClient client, int index, Round round, CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            try
            {
                using var call = client.Client.FetchX509SVID(new X509SVIDRequest(), WorkloadSocketClient.Headers, cancellationToken: ct);
                while (await call.ResponseStream.MoveNext(ct).ConfigureAwait(false))
                {
                    var serials = call.ResponseStream.Current.Svids.Select(s => SerialOf(s.X509Svid.Span)).ToList();
                    round.Update(index, serials);
                }
                round.Update(index, []);
            }
            catch (RpcException) when (!ct.IsCancellationRequested)
            {
                round.Update(index, []);   // e.g. PermissionDenied while nothing is served: the revoked SVID is gone; retry
                await Task.Delay(10, ct).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                return;
            }
            catch (RpcException) when (ct.IsCancellationRequested)
            {
                return;
            }
        }
    }

    /// <summary>The leaf's serial (hex, upper case) read straight from the DER: Certificate → TBSCertificate → [0] version → serialNumber.</summary>
    private static string SerialOf(ReadOnlySpan<byte> chainDer)
    {
        System.Formats.Asn1.AsnDecoder.ReadSequence(chainDer, System.Formats.Asn1.AsnEncodingRules.DER, out var certStart, out _, out _);
        var cert = chainDer[certStart..];
        System.Formats.Asn1.AsnDecoder.ReadSequence(cert, System.Formats.Asn1.AsnEncodingRules.DER, out var tbsStart, out _, out _);
        var tbs = cert[tbsStart..];
        var version = new System.Formats.Asn1.Asn1Tag(System.Formats.Asn1.TagClass.ContextSpecific, 0, isConstructed: true);
        if (System.Formats.Asn1.Asn1Tag.Decode(tbs, out _).HasSameClassAndValue(version))
        {
            System.Formats.Asn1.AsnDecoder.ReadEncodedValue(tbs, System.Formats.Asn1.AsnEncodingRules.DER, out _, out _, out var consumed);
            tbs = tbs[consumed..];
        }
        return Convert.ToHexString(System.Formats.Asn1.AsnDecoder.ReadIntegerBytes(tbs, System.Formats.Asn1.AsnEncodingRules.DER, out _));
    }

    private static double Percentile(List<double> values, double p)
    {
        var sorted = values.Order().ToList();
        var rank = (int)Math.Ceiling(p / 100 * sorted.Count) - 1;
        return sorted[Math.Clamp(rank, 0, sorted.Count - 1)];
    }

    private static double Ms(double ticks) => BenchTiming.Round(ticks * 1000.0 / Stopwatch.Frequency);

    /// <summary>What every stream holds, and the revocation being timed.</summary>
    private sealed class Round(int watchers)
    {
        private readonly Lock _lock = new();
        private readonly IReadOnlyList<string>[] _latest = Enumerable.Repeat<IReadOnlyList<string>>([], watchers).ToArray();
        private readonly HashSet<string> _revoked = new(StringComparer.OrdinalIgnoreCase);
        private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private string? _serial;
        private long _start;
        private double[] _latencies = [];
        private bool[] _done = [];
        private int _pending;
        private TaskCompletionSource<double[]>? _complete;

        public void Update(int index, IReadOnlyList<string> serials)
        {
            var now = Stopwatch.GetTimestamp();
            TaskCompletionSource changed;
            lock (_lock)
            {
                _latest[index] = serials;
                if (_serial is not null && !_done[index] && !serials.Contains(_serial, StringComparer.OrdinalIgnoreCase))
                {
                    _done[index] = true;
                    _latencies[index] = now - _start;
                    if (--_pending == 0)
                    {
                        _serial = null;
                        _complete!.TrySetResult(_latencies);
                    }
                }
                changed = _changed;
                _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
            }
            changed.TrySetResult();
        }

        /// <summary>Starts timing the revocation of <paramref name="serial"/>; completes with each stream's latency (Stopwatch ticks).</summary>
        public Task<double[]> Start(string serial)
        {
            lock (_lock)
            {
                _serial = serial;
                _revoked.Add(serial);
                _latencies = new double[_latest.Length];
                _done = new bool[_latest.Length];
                _pending = _latest.Length;
                _complete = new(TaskCreationOptions.RunContinuationsAsynchronously);
                _start = Stopwatch.GetTimestamp();
                return _complete.Task;
            }
        }

        /// <summary>Waits until every stream holds the same one SVID, not revoked; returns its serial.</summary>
        public async Task<string> SettledSerialAsync(TimeSpan timeout, CancellationToken ct)
        {
            using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
            deadline.CancelAfter(timeout);
            while (true)
            {
                Task changed;
                lock (_lock)
                {
                    var first = _latest[0];
                    if (first.Count == 1 && !_revoked.Contains(first[0]) && _latest.All(l => l.Count == 1 && string.Equals(l[0], first[0], StringComparison.OrdinalIgnoreCase)))
                    {
                        return first[0];
                    }
                    changed = _changed.Task;
                }
                try
                {
                    await changed.WaitAsync(deadline.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (!ct.IsCancellationRequested)
                {
                    throw new TimeoutException("the watching streams did not settle on a fresh SVID");
                }
            }
        }
    }
}
