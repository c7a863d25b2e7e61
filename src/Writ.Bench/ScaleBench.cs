using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Serialization;
using Npgsql;
using Writ.Protocol.Admin;
using Writ.Spiffe;
using Writ.Spiffe.Bundles;
using ProtoEntry = Writ.Protocol.Agent.Entry;
using ProtoSelector = Writ.Protocol.Agent.Selector;

namespace Writ.Bench;

/// <summary>What `writ bench scale` runs: store size, which store, and the size of the agent measurements.</summary>
/// <param name="Seconds">
/// A time bound (`--seconds`): entry creation stops when it has passed (after one batch) and the run goes on with the
/// entries created so far; fan-out rounds stop likewise (after one round). Null: no bound.
/// </param>
/// <param name="FanoutModes">
/// The server's <c>sync.fanout</c> modes the fleet is measured with, one fresh server each on the same store, side by
/// side (issue #16): "shared" (one store read per change) and/or "per_stream" (each stream reads the store).
/// </param>
/// <param name="Servers">
/// 1: the fleet and the entry changes use one server. 2 (PostgreSQL only): the fleet syncs with a second server process on
/// the same store (its own data directory and CA) while the changes are made through the first, so each arrival crosses
/// servers (issue #16: an entry created on server A reaching an agent on server B).
/// </param>
public sealed record ScaleOptions(int Entries, string Store, string? PostgresConnection, int SyncEntries, int Agents, int FanoutRounds,
    TimeSpan? Seconds = null, IReadOnlyList<string>? FanoutModes = null, int Servers = 1)
{
    public static readonly IReadOnlyList<string> AllFanoutModes = ["shared", "per_stream"];

    public IReadOnlyList<string> Modes => FanoutModes ?? AllFanoutModes;

    public const int DefaultEntries = 100_000;
    public const int DefaultSyncEntries = 10_000;
    public const int DefaultAgents = 1_000;
    public const int DefaultFanoutRounds = 5;
}

public sealed record ScaleResult(
    [property: JsonPropertyName("benchmark")] string Benchmark,
    [property: JsonPropertyName("store")] string Store,
    [property: JsonPropertyName("entries")] int Entries,
    [property: JsonPropertyName("batch_size")] int BatchSize,
    [property: JsonPropertyName("entry_create_per_second")] double CreatePerSecond,
    [property: JsonPropertyName("startup_empty_ms")] double StartupEmptyMs,
    [property: JsonPropertyName("rss_empty_mb")] double RssEmptyMb,
    [property: JsonPropertyName("startup_ms")] double StartupMs,
    [property: JsonPropertyName("rss_mb")] double RssMb,
    [property: JsonPropertyName("sync")] SyncFigures Sync,
    [property: JsonPropertyName("fleet")] FleetFigures Fleet,
    [property: JsonPropertyName("total_seconds")] double TotalSeconds)
{
    /// <summary>The fleet measured once per <c>sync.fanout</c> mode (the first is <see cref="Fleet"/>).</summary>
    [JsonPropertyName("fleets")]
    public IReadOnlyList<FleetFigures> Fleets { get; init; } = [Fleet];
}

/// <summary>One agent's full sync: from its Sync call to the update that ends the first batch (page_end).</summary>
public sealed record SyncFigures(
    [property: JsonPropertyName("entries")] int Entries,
    [property: JsonPropertyName("pages")] int Pages,
    [property: JsonPropertyName("first_ms")] double FirstMs,
    [property: JsonPropertyName("warm_median_ms")] double WarmMedianMs,
    [property: JsonPropertyName("client")] string Client);

/// <summary>Many agents at once: attestation, all synced, server memory, and one entry change reaching all of them.</summary>
public sealed record FleetFigures(
    [property: JsonPropertyName("agents")] int Agents,
    [property: JsonPropertyName("attest_seconds")] double AttestSeconds,
    [property: JsonPropertyName("all_synced_ms")] double AllSyncedMs,
    [property: JsonPropertyName("server_rss_mb")] double ServerRssMb,
    [property: JsonPropertyName("fanout_rounds")] int FanoutRounds,
    [property: JsonPropertyName("fanout_samples")] int FanoutSamples,
    [property: JsonPropertyName("fanout_p50_ms")] double FanoutP50Ms,
    [property: JsonPropertyName("fanout_p99_ms")] double FanoutP99Ms,
    [property: JsonPropertyName("fanout_max_ms")] double FanoutMaxMs)
{
    /// <summary>The server's <c>sync.fanout</c> for this fleet.</summary>
    [JsonPropertyName("fanout_mode")]
    public string Mode { get; init; } = "shared";

    /// <summary>
    /// Store round trips of the server per fan-out round (writ_store_queries_total over the rounds / rounds): the admin
    /// update itself and every read it caused, whatever its cause. -1: not measured.
    /// </summary>
    [JsonPropertyName("store_queries_per_change")]
    public double StoreQueriesPerChange { get; init; } = -1;

    /// <summary>Server processes in the run: 2 when the fleet synced with another server than the one the changes were made on.</summary>
    [JsonPropertyName("servers")]
    public int Servers { get; init; } = 1;

    /// <summary>The same, by store operation (the <c>operation</c> label), operations with none left out.</summary>
    [JsonPropertyName("store_queries_per_change_by_operation")]
    public IReadOnlyDictionary<string, double> StoreQueriesPerChangeByOperation { get; init; } = new Dictionary<string, double>();
}

/// <summary>
/// `writ bench scale`: real `writ server run` processes (the host's writ executable) on a temporary SQLite store, or on a scratch
/// database created on the PostgreSQL server the user names and dropped afterwards. Measures cold start-up to the
/// server's `ready` line and resident memory with an empty store; the create rate of N registration entries through the
/// admin API in batches; start-up and memory of a fresh server on the filled store; then, against that server, the
/// full sync of one agent holding <see cref="ScaleOptions.SyncEntries"/> entries and a fleet of
/// <see cref="ScaleOptions.Agents"/> simulated agents (<see cref="SimulatedAgents"/>) with one entry change fanned out
/// to all of them.
/// </summary>
public static class ScaleBench
{
    public const int BatchSize = 1000;
    private static readonly TimeSpan StartTimeout = TimeSpan.FromMinutes(5);

    public static async Task<ScaleResult> RunAsync(ScaleOptions o, BenchHost host, TextWriter progress, CancellationToken ct)
    {
        var total = Stopwatch.StartNew();
        var dir = Directory.CreateTempSubdirectory("ws-").FullName;
        string? scratchDb = null;
        try
        {
            var env = new Dictionary<string, string>(StringComparer.Ordinal);
            if (o.Store == "postgres")
            {
                (scratchDb, var conn) = await CreateScratchDatabaseAsync(o.PostgresConnection!, ct).ConfigureAwait(false);
                progress.WriteLine($"scratch database {scratchDb} created on the PostgreSQL server");
                env["WRIT_SERVER_STORE_KIND"] = "postgres";
                env["WRIT_SERVER_STORE_CONNECTION"] = conn;   // in the environment, not on a command line others can read
            }
            var td = TrustDomain.Parse("bench.writ");
            var fleetAlias = td.IdString + "/bench/fleet";
            var dataDir = Path.Combine(dir, "server");
            var adminSocket = Path.Combine(dataDir, "admin.sock");

            // Phase 1: empty store; tokens for the agents measured later; the entries.
            var first = await StartServerAsync(host, td, dataDir, env, ct).ConfigureAwait(false);
            double createRate, rssEmpty;
            int created;
            string syncToken, syncAgentId;
            var fleetTokens = new List<string>(o.Agents * o.Modes.Count);
            ProtoEntry fleetEntry;
            using (first.Process)
            {
                try
                {
                    rssEmpty = RssMb(first.Process);
                    using var admin = host.ConnectAdmin(adminSocket);
                    var t = await admin.CallAsync(s => s.CreateJoinTokenAsync(new CreateJoinTokenRequest { TtlSeconds = 86400 }, cancellationToken: ct)).ConfigureAwait(false);
                    (syncToken, syncAgentId) = (t.Token, t.AgentSpiffeId);
                    for (var i = 0; i < o.Agents * o.Modes.Count; i++)
                    {
                        var ft = await admin.CallAsync(s => s.CreateJoinTokenAsync(new CreateJoinTokenRequest { TtlSeconds = 86400, Alias = fleetAlias }, cancellationToken: ct)).ConfigureAwait(false);
                        fleetTokens.Add(ft.Token);
                    }
                    var fleet = await admin.CallAsync(s => s.CreateEntriesAsync(new CreateEntriesRequest
                    {
                        Entries = { Entry(td, "fleet", fleetAlias, 99_999_999) },
                    }, cancellationToken: ct)).ConfigureAwait(false);
                    fleetEntry = fleet.Entries[0];

                    var otherParent = td.IdString + "/writ/agent/join_token/bench";
                    var syncEntries = Math.Min(o.SyncEntries, o.Entries);
                    var sw = Stopwatch.StartNew();
                    created = 0;
                    while (created < o.Entries && !(created > 0 && o.Seconds is { } bound && sw.Elapsed >= bound))
                    {
                        var request = new CreateEntriesRequest();
                        for (var i = created; i < Math.Min(o.Entries, created + BatchSize); i++)
                        {
                            request.Entries.Add(Entry(td, $"workload-{i}", i < syncEntries ? syncAgentId : otherParent, 100_000 + i));
                        }
                        await admin.CallAsync(s => s.CreateEntriesAsync(request, cancellationToken: ct)).ConfigureAwait(false);
                        created += request.Entries.Count;
                        if ((created / BatchSize) % 100 == 0 && created % BatchSize == 0)
                        {
                            progress.WriteLine($"{created:N0} entries created ({created / sw.Elapsed.TotalSeconds:N0}/s)");
                        }
                    }
                    createRate = created / sw.Elapsed.TotalSeconds;
                    if (created < o.Entries)
                    {
                        progress.WriteLine($"--seconds passed: going on with {created:N0} of {o.Entries:N0} entries");
                    }
                }
                finally
                {
                    Stop(first.Process);
                }
            }

            // Phase 2: a fresh server on the filled store; one agent's full sync; the fleet. Then the fleet again on a
            // fresh server for each further sync.fanout mode (new agents: join tokens are single-use).
            double rss = 0;
            double secondMs = 0;
            SyncFigures? sync = null;
            var fleets = new List<FleetFigures>();
            for (var m = 0; m < o.Modes.Count; m++)
            {
                var mode = o.Modes[m];
                var modeEnv = new Dictionary<string, string>(env, StringComparer.Ordinal)
                {
                    ["WRIT_SERVER_SYNC_FANOUT"] = mode,
                    ["WRIT_SERVER_METRICS_BIND"] = "127.0.0.1:0",
                };
                var second = await StartServerAsync(host, td, dataDir, modeEnv, ct).ConfigureAwait(false);
                // --servers 2: the fleet's server, another process on the same store with its own data directory and CA.
                var other = o.Servers > 1 ? await StartServerAsync(host, td, Path.Combine(dir, "server-b"), modeEnv, ct).ConfigureAwait(false) : null;
                using (second.Process)
                using (other?.Process)
                {
                    try
                    {
                        using var admin = host.ConnectAdmin(adminSocket);
                        using var fleetAdmin = other is null ? null : host.ConnectAdmin(Path.Combine(dir, "server-b", "admin.sock"));
                        var bundlePem = (await (fleetAdmin ?? admin).CallAsync(s => s.GetBundleAsync(new GetBundleRequest(), cancellationToken: ct)).ConfigureAwait(false)).Pem;
                        if (!TrustBundle.TryParsePem(td, bundlePem, out var bundle, out var bundleError))
                        {
                            throw new BenchFailedException($"the benchmark's server returned an unreadable bundle: {bundleError}");
                        }
                        if (m == 0)
                        {
                            rss = RssMb(second.Process);
                            secondMs = second.Ms;
                            progress.WriteLine($"server on the filled store ready in {second.Ms:N0} ms; syncing one agent");
                            sync = await SimulatedAgents.MeasureSyncAsync(second.AgentApi, td, bundle, syncToken, Math.Min(o.SyncEntries, created), ct).ConfigureAwait(false);
                            progress.WriteLine($"one agent synced {sync.Entries:N0} entries in {sync.FirstMs:N0} ms");
                        }
                        var fleetServer = other ?? second;
                        progress.WriteLine($"sync.fanout {mode}: attesting {o.Agents:N0} agents" + (other is null ? "" : " to the second server; changes through the first"));
                        var current = await admin.CallAsync(s => s.GetEntryAsync(new GetEntryRequest { Id = fleetEntry.Id }, cancellationToken: ct)).ConfigureAwait(false);
                        Func<CancellationToken, Task<IReadOnlyDictionary<string, double>>>? queries = second.Metrics is not { } metrics ? null
                            : other is null ? token => StoreQueriesAsync(metrics, token)
                            : other.Metrics is not { } otherMetrics ? null
                            : async token => Sum(await StoreQueriesAsync(metrics, token).ConfigureAwait(false), await StoreQueriesAsync(otherMetrics, token).ConfigureAwait(false));
                        var fleet = await SimulatedAgents.MeasureFleetAsync(fleetServer.AgentApi, td, bundle, [.. fleetTokens.Skip(m * o.Agents).Take(o.Agents)], () => RssMb(fleetServer.Process),
                            async (hint, token) =>
                            {
                                var changed = current.Clone();
                                changed.Hint = hint;
                                current = await admin.CallAsync(s => s.UpdateEntryAsync(new UpdateEntryRequest { Entry = changed }, cancellationToken: token)).ConfigureAwait(false);
                            }, o.FanoutRounds, o.Seconds, progress, ct, queries).ConfigureAwait(false);
                        fleets.Add(fleet with { Mode = mode, Servers = other is null ? 1 : 2 });
                        progress.WriteLine($"sync.fanout {mode}: p50 {fleet.FanoutP50Ms:N1} ms, p99 {fleet.FanoutP99Ms:N1} ms, {fleet.StoreQueriesPerChange:N1} store queries per change");
                    }
                    finally
                    {
                        Stop(second.Process);
                        if (other is not null)
                        {
                            Stop(other.Process);
                        }
                    }
                }
            }
            return new ScaleResult("scale", o.Store, created, BatchSize, BenchTiming.Round(createRate), BenchTiming.Round(first.Ms),
                BenchTiming.Round(rssEmpty), BenchTiming.Round(secondMs), BenchTiming.Round(rss), sync!, fleets[0], BenchTiming.Round(total.Elapsed.TotalSeconds))
            {
                Fleets = fleets,
            };
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
            if (scratchDb is not null)
            {
                await DropScratchDatabaseAsync(o.PostgresConnection!, scratchDb, progress).ConfigureAwait(false);
            }
        }
    }

    private static ProtoEntry Entry(TrustDomain td, string name, string parent, int uid) => new()
    {
        SpiffeId = $"{td.IdString}/ns/bench/sa/{name}",
        ParentId = parent,
        Selectors = { new ProtoSelector { Type = "unix", Value = string.Create(CultureInfo.InvariantCulture, $"uid:{uid}") } },
    };

    /// <summary>Creates an empty database on the user's PostgreSQL server for this run; returns its name and connection string.</summary>
    private static async Task<(string Name, string Connection)> CreateScratchDatabaseAsync(string connection, CancellationToken ct)
    {
        var name = "writ_bench_" + Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(6));
        try
        {
            var admin = new NpgsqlConnectionStringBuilder(connection) { Pooling = false };
            await using var conn = new NpgsqlConnection(admin.ConnectionString);
            await conn.OpenAsync(ct).ConfigureAwait(false);
            await using var cmd = new NpgsqlCommand($"CREATE DATABASE {name}", conn);
            await cmd.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
            return (name, new NpgsqlConnectionStringBuilder(connection) { Database = name }.ConnectionString);
        }
        catch (Exception e) when (e is NpgsqlException or ArgumentException)
        {
            throw new BenchFailedException($"could not create a scratch database on the PostgreSQL server given by --pg ({e.GetType().Name}: {OneLine(e.Message)}): check the connection string and that its user may CREATE DATABASE");
        }
    }

    private static async Task DropScratchDatabaseAsync(string connection, string name, TextWriter progress)
    {
        try
        {
            await using var conn = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(connection) { Pooling = false }.ConnectionString);
            await conn.OpenAsync().ConfigureAwait(false);
            await using var cmd = new NpgsqlCommand($"DROP DATABASE IF EXISTS {name} WITH (FORCE)", conn);
            await cmd.ExecuteNonQueryAsync().ConfigureAwait(false);
        }
        catch (NpgsqlException e)
        {
            await progress.WriteLineAsync($"warning: could not drop the scratch database {name} ({OneLine(e.Message)}): drop it by hand").ConfigureAwait(false);
        }
    }

    private static string OneLine(string s) => s.ReplaceLineEndings(" ");

    private sealed record Started(Process Process, double Ms, string AgentApi, string? Metrics);

    private static readonly HttpClient MetricsClient = new() { Timeout = TimeSpan.FromSeconds(30) };

    private static Dictionary<string, double> Sum(IReadOnlyDictionary<string, double> a, IReadOnlyDictionary<string, double> b)
    {
        var sum = new Dictionary<string, double>(a, StringComparer.Ordinal);
        foreach (var (k, v) in b)
        {
            sum[k] = sum.GetValueOrDefault(k) + v;
        }
        return sum;
    }

    /// <summary>The server's store round trips so far, by operation: writ_store_queries_total{operation} (Prometheus text).</summary>
    private static async Task<IReadOnlyDictionary<string, double>> StoreQueriesAsync(string metrics, CancellationToken ct)
    {
        var text = await MetricsClient.GetStringAsync(new Uri($"http://{metrics}/metrics"), ct).ConfigureAwait(false);
        var byOperation = new Dictionary<string, double>(StringComparer.Ordinal);
        foreach (var line in text.Split('\n'))
        {
            if (line.StartsWith("writ_store_queries_total", StringComparison.Ordinal))
            {
                var value = line[(line.LastIndexOf(' ') + 1)..];
                var at = line.IndexOf("operation=\"", StringComparison.Ordinal);
                var operation = at < 0 ? "" : line[(at + 11)..line.IndexOf('"', at + 11)];
                if (double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out var v))
                {
                    byOperation[operation] = byOperation.GetValueOrDefault(operation) + v;
                }
            }
        }
        return byOperation;
    }

    /// <summary>Starts `writ server run` (the host's executable) and waits for its "ready" line; returns it and the time taken.</summary>
    private static async Task<Started> StartServerAsync(BenchHost host, TrustDomain td, string dataDir, IReadOnlyDictionary<string, string> env, CancellationToken ct)
    {
        var psi = host.ServerProcess();
        (psi.RedirectStandardOutput, psi.RedirectStandardError, psi.UseShellExecute) = (true, true, false);
        foreach (var a in new[] { "server", "run", "--trust-domain", td.Name, "--data-dir", dataDir, "--admin-socket", Path.Combine(dataDir, "admin.sock"), "--bind", "127.0.0.1:0", "--log-level", "error" })
        {
            psi.ArgumentList.Add(a);
        }
        foreach (var (k, v) in env)
        {
            psi.Environment[k] = v;
        }
        var sw = Stopwatch.StartNew();
        var p = Process.Start(psi) ?? throw new BenchFailedException("could not start a writ server process for the benchmark");
        var stderr = p.StandardError.ReadToEndAsync(ct);
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
        deadline.CancelAfter(StartTimeout);
        try
        {
            while (await p.StandardOutput.ReadLineAsync(deadline.Token).ConfigureAwait(false) is { } line)
            {
                if (line.StartsWith("ready ", StringComparison.Ordinal))
                {
                    var ms = sw.Elapsed.TotalMilliseconds;
                    var api = line.Split(' ').FirstOrDefault(f => f.StartsWith("agent_api=", StringComparison.Ordinal))?["agent_api=".Length..]
                        ?? throw new BenchFailedException("the benchmark's server did not say where its agent API listens");
                    var metrics = line.Split(' ').FirstOrDefault(f => f.StartsWith("metrics=", StringComparison.Ordinal))?["metrics=".Length..];
                    _ = p.StandardOutput.ReadToEndAsync(CancellationToken.None);
                    return new Started(p, ms, api, metrics);
                }
            }
            var why = await stderr.ConfigureAwait(false);
            throw new BenchFailedException($"the benchmark's server exited (code {(p.HasExited ? p.ExitCode : -1)}) before it was ready: {OneLine(why).Trim()}");
        }
        catch
        {
            Stop(p);
            p.Dispose();
            throw;
        }
    }

    private static void Stop(Process p)
    {
        if (!p.HasExited)
        {
            p.Kill(entireProcessTree: true);
            p.WaitForExit(TimeSpan.FromSeconds(30));
        }
    }

    /// <summary>Resident set size of a process, from /proc/PID/status (VmRSS), in MiB.</summary>
    private static double RssMb(Process p)
    {
        foreach (var line in File.ReadLines($"/proc/{p.Id}/status"))
        {
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
            {
                var kb = line["VmRSS:".Length..].Trim().Split(' ')[0];
                return double.Parse(kb, CultureInfo.InvariantCulture) / 1024;
            }
        }
        return 0;
    }
}
