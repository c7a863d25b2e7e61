using System.Diagnostics;
using System.Globalization;
using Writ.Bench;
using Writ.Cli.Admin;
using Writ.Cli.CommandLine;

namespace Writ.Cli.Commands;

/// <summary>
/// `writ bench …`: measurements a user runs to size a deployment. Each runs for <c>--seconds N</c> per measured operation
/// (operations are interleaved so machine load hits them alike) and prints a table, or JSON with <c>--output json</c>.
/// The measurements are Writ.Bench's; this class parses the flags, hands the bench what is the CLI's (<see cref="Host"/>)
/// and prints the result.
/// </summary>
public static class BenchCommands
{
    private static readonly OptionSpec Seconds = new("seconds", "measuring time per operation, in seconds (default 5)", "N");

    /// <summary>`--seconds` of the benches whose work is a count (scale, revocation): a time bound, none by default.</summary>
    private static readonly OptionSpec SecondsBound = new("seconds",
        "time bound, in seconds: the repeated measurements stop when it has passed (after at least one); default none", "N");
    private static readonly OptionSpec OutputOpt = new("output", "table (default) or json", "FORMAT");

    public static IEnumerable<CommandSpec> All() =>
    [
        new("bench issuance", "X.509-SVID issuance (CSR in, chain out) per second on one thread, against raw ECDSA P-256 sign+verify.",
            [Seconds, OutputOpt, new("breakdown", "also measure each stage (CSR check, signing, certificate load) in µs", IsFlag: true)], IssuanceAsync),
        new("bench pipeline", "The issuance pipeline (match, policy, sign, ledger) per SVID against signing alone, with each stage's cost.", [Seconds, OutputOpt], PipelineAsync),
        new("bench jwt", "JWT-SVID mint and validate per second on one thread, against raw ECDSA P-256 sign and verify.",
            [Seconds, OutputOpt], JwtAsync),
        new("bench workload-api", "FetchX509SVID and FetchJWTSVID latency (p50/p99) over the agent's Unix socket, against a no-op gRPC call.",
            [Seconds, OutputOpt, new("breakdown", "also time each stage of the agent's work per call (peer credentials, pin, attestors, matching, response) in µs", IsFlag: true)], WorkloadApiAsync),
        new("bench k8s",
            "What the k8s workload attestor adds to a workload's attestation (p50/p99 µs): unix+cgroup against unix+cgroup+k8s with a warm pod cache, with every call fetching a 110-pod kubelet list, and with cached image signature checks. Needs root (a real pod cgroup).",
            [Seconds, OutputOpt], K8sAsync),
        new("bench scale", "Server processes on SQLite or PostgreSQL with N entries: start-up, memory, create rate, one agent's full sync, a fleet of agents and fan-out.",
            [
                new("entries", "number of registration entries (default 100000)", "N"),
                new("store", "sqlite (default: a temporary file) or postgres (a scratch database on the server given by --pg, dropped afterwards)", "KIND"),
                new("pg", $"PostgreSQL connection string (Npgsql) for --store postgres; or set {PgEnvVar}. Its user must be allowed to CREATE DATABASE", "CONNSTRING"),
                new("sync-entries", "entries authorized for the one agent whose full sync is timed (default 10000; at most --entries)", "N"),
                new("agents", "simulated agents connected at once (default 1000)", "N"),
                new("fanout-rounds", "entry changes whose arrival at every agent is timed (default 5)", "N"),
                new("fanout", "the server's sync.fanout modes to measure the fleet with, side by side, one fresh server and fleet each (default shared,per_stream)", "MODE,MODE"),
                new("servers", "1 (default), or 2 with --store postgres: the fleet syncs with a second server on the same store and the changes are made through the first (cross-server fan-out)", "N"),
                SecondsBound,
                OutputOpt,
            ], ScaleAsync),
        new("bench revocation",
            "Revocation propagation: from the admin Revoke call to each watching workload's stream update (p50/p99), with 1, 100 and 1,000 watchers.",
            [
                new("watchers", "comma-separated numbers of watching workload streams (default 1,100,1000)", "N,N"),
                new("revocations", "revocations measured per level (default 20)", "N"),
                SecondsBound,
                OutputOpt,
            ], RevocationAsync),
        new("bench authz",
            "The agent's Envoy ext_authz decision (caller certificate, live state, Cedar) over a Unix socket under open-loop load: p50/p99/p999 and achieved rate, against a no-op Check in the same run.",
            [
                Seconds,
                new("rate", "target requests per second (default 5000)", "N"),
                new("channels", "client HTTP/2 channels the requests are spread over (default 4)", "N"),
                OutputOpt,
            ], AuthzAsync),
        new("bench tpm",
            "TPM node attestation (tpm against join_token, the agent's TPM time against the server's verification), the re-quote cost per node and drift-to-revocation latency, on a real TPM.",
            [
                new("tpm", "the TPM: a device (/dev/tpmrm0) or tcp://HOST:PORT (swtpm's raw command port); required", "ADDR"),
                new("tpm-ek-ca-dir", "trust the TPM by its EK certificate against this manufacturer CA directory (default: by its EK hash)", "DIR"),
                new("rounds", "rounds of each measurement (default 10)", "N"),
                new("requote-interval", "the server's re-quote interval for the drift measurement (default 1s)", "DURATION"),
                OutputOpt,
            ], TpmAsync),
    ];

    /// <summary>
    /// What the benches take from the CLI: its admin connection (socket trust checks, one-line errors), its logging at
    /// error level in text, and this executable to start `writ server run` with.
    /// </summary>
    internal static BenchHost Host { get; } = new(
        socket => new BenchAdmin(new AdminConnection(socket)),
        b => ServerCommands.ConfigureLogging(b, "error", "text"),
        WritProcess);

    private sealed class BenchAdmin(AdminConnection connection) : IBenchAdmin
    {
        public Task<T> CallAsync<T>(Func<Writ.Protocol.Admin.AdminService.AdminServiceClient, Grpc.Core.AsyncUnaryCall<T>> call) => connection.CallAsync(call);

        public void Dispose() => connection.Dispose();
    }

    /// <summary>This same executable (under `dotnet writ.dll` when run that way).</summary>
    private static ProcessStartInfo WritProcess()
    {
        var exe = Environment.ProcessPath ?? throw new InvalidOperationException("cannot tell which executable runs this process");
        var psi = new ProcessStartInfo(exe);
        if (Path.GetFileNameWithoutExtension(exe) == "dotnet")
        {
            psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, typeof(BenchCommands).Assembly.GetName().Name + ".dll"));
        }
        return psi;
    }

    public const string PgEnvVar = "WRIT_BENCH_PG";

    private static int ParseCount(ParsedArgs a, string name, int fallback, int min, int max)
    {
        var text = a.Get(name);
        if (text is null)
        {
            return fallback;
        }
        if (!int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var n) || n < min || n > max)
        {
            throw new UsageException($"--{name} '{text}' is not a whole number from {min} to {max}: give e.g. --{name} {fallback}");
        }
        return n;
    }

    private static TimeSpan ParseSeconds(ParsedArgs a) => ParseSecondsBound(a) ?? TimeSpan.FromSeconds(5);

    /// <summary>`--seconds N` (0 &lt; N ≤ 3600), or null when not given.</summary>
    private static TimeSpan? ParseSecondsBound(ParsedArgs a)
    {
        var text = a.Get("seconds");
        if (text is null)
        {
            return null;
        }
        if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var s) || !double.IsFinite(s) || s <= 0 || s > 3600)
        {
            throw new UsageException($"--seconds '{text}' is not a number of seconds between 0 and 3600: give e.g. --seconds 5");
        }
        return TimeSpan.FromSeconds(s);
    }

    private static void CheckOutput(ParsedArgs a)
    {
        if (a.Get("output") is { } o && o is not ("json" or "table"))
        {
            throw new UsageException($"--output '{o}' is not known: use table or json");
        }
    }

    private static string F(double v, string format = "N0") => v.ToString(format, CultureInfo.InvariantCulture);

    private static async Task<int> IssuanceAsync(ParsedArgs a, CommandContext ctx)
    {
        var seconds = ParseSeconds(a);
        CheckOutput(a);
        var r = await IssuanceBench.RunAsync(seconds, a.Flag("breakdown"), ctx.Cancellation).ConfigureAwait(false);
        if (a.JsonOutput)
        {
            Output.Json(ctx.Out, r);
            return 0;
        }
        Output.Table(ctx.Out, ["measure", "per second", "µs per op"],
        [
            ["x509 issuance (CSR verify + sign + chain)", F(r.X509PerSecond), F(1e6 / r.X509PerSecond, "N1")],
            ["ecdsa p-256 sign (raw)", F(r.SignPerSecond), F(1e6 / r.SignPerSecond, "N1")],
            ["ecdsa p-256 verify (raw)", F(r.VerifyPerSecond), F(1e6 / r.VerifyPerSecond, "N1")],
            ["limit 1/(1/sign + 1/verify)", F(r.LimitPerSecond), F(1e6 / r.LimitPerSecond, "N1")],
        ]);
        ctx.Out.WriteLine($"ratio {F(r.Ratio, "0.000")} (goal ≥ {F(r.GoalRatio, "0.0")}), one thread, {F(r.Seconds, "0.#")} s per measure");
        if (r.Breakdown is { } b)
        {
            ctx.Out.WriteLine();
            Output.Table(ctx.Out, ["stage", "µs per call"],
            [
                ["Csr.TryVerify (parse, key import, ECDSA verify)", F(b.CsrVerify, "N2")],
                ["same check via CertificateRequest.LoadSigningRequest", F(b.CsrVerifyCertificateRequest, "N2")],
                ["Issuer.VerifyCsr (TryVerify + requested-SAN check)", F(b.IssuerVerifyCsr, "N2")],
                ["WritCa.SignX509Svid (fast path: TBS + sign + load)", F(b.SignLeaf, "N2")],
                ["same leaf via CertificateRequest (reference)", F(b.SignLeafCertificateRequest, "N2")],
                ["X509SvidMinter.SignLeafDer (TBS + sign, no load)", F(b.SignLeafDer, "N2")],
                ["X509Certificate2 load of a leaf", F(b.CertificateLoad, "N2")],
                ["EC P-256 public key import", F(b.EcPublicKeyImport, "N2")],
                ["raw ECDSA P-256 sign", F(b.Sign, "N2")],
                ["raw ECDSA P-256 verify", F(b.Verify, "N2")],
                ["whole issuance", F(b.Issuance, "N2")],
                ["same, parsed back into an X509Certificate2 (Issuer.SignX509)", F(b.IssuanceWithParse, "N2")],
                ["same, DER out (VerifyCsr + SignLeafDer, no parse)", F(b.IssuanceDerOut, "N2")],
            ]);
            ctx.Out.WriteLine($"ratio to the limit if the chain went out as the signed DER (no X509Certificate2 parse): {F(b.DerOutRatio, "0.000")}");
        }
        return 0;
    }

    private static async Task<int> PipelineAsync(ParsedArgs a, CommandContext ctx)
    {
        var seconds = ParseSeconds(a);
        CheckOutput(a);
        var r = await PipelineBench.RunAsync(seconds, ctx.Cancellation).ConfigureAwait(false);
        if (a.JsonOutput)
        {
            Output.Json(ctx.Out, r);
            return 0;
        }
        Output.Table(ctx.Out, ["measure", "SVIDs per second", "µs per SVID"], r.Rows.Select(x => (IReadOnlyList<string>)[x.Measure, F(x.PerSecond), F(x.MicrosecondsPerSvid, "N1")]));
        ctx.Out.WriteLine();
        var st = r.Stages;
        Output.Table(ctx.Out, ["stage (1 CSR per call)", "µs per SVID"],
        [
            ["match (entry lookup, ownership)", F(st.Match, "N2")],
            ["policy (entities, selector match, Cedar)", F(st.Policy, "N2")],
            ["sign (CSR check + ECDSA sign)", F(st.Sign, "N2")],
            ["record (the decision's ledger JSON)", F(st.Record, "N2")],
            ["ledger write (one transaction)", F(st.Ledger, "N2")],
        ]);
        ctx.Out.WriteLine($"pipeline overhead over signing alone: {F(r.OverheadMicroseconds, "N1")} µs per SVID (ratio {F(r.Ratio, "0.000")}); {r.Policies} policies, store {r.Store}, {F(r.Seconds, "0.#")} s per measure");
        return 0;
    }

    private static async Task<int> RevocationAsync(ParsedArgs a, CommandContext ctx)
    {
        var levels = (a.Get("watchers") ?? "1,100,1000").Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
            .Select(t => int.TryParse(t, NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n is >= 1 and <= 5000 ? n
                : throw new UsageException($"--watchers '{t}' is not a number of streams between 1 and 5000: give e.g. --watchers 1,100,1000"))
            .ToList();
        var rounds = 20;
        if (a.Get("revocations") is { } r && (!int.TryParse(r, NumberStyles.None, CultureInfo.InvariantCulture, out rounds) || rounds is < 1 or > 10_000))
        {
            throw new UsageException($"--revocations '{r}' is not a number between 1 and 10000: give e.g. --revocations 20");
        }
        CheckOutput(a);
        var bound = ParseSecondsBound(a);
        var result = await RevocationBench.RunAsync(levels, rounds, bound, Host, a.JsonOutput ? TextWriter.Null : ctx.Error, ctx.Cancellation).ConfigureAwait(false);
        if (a.JsonOutput)
        {
            Output.Json(ctx.Out, result);
            return 0;
        }
        Output.Table(ctx.Out, ["watchers", "revocations", "stream p50 ms", "stream p99 ms", "all streams p50 ms", "all streams p99 ms", "max ms"],
            result.Levels.Select(l => (IReadOnlyList<string>)[l.Watchers.ToString(CultureInfo.InvariantCulture), l.Revocations.ToString(CultureInfo.InvariantCulture), F(l.StreamP50, "N1"), F(l.StreamP99, "N1"), F(l.AllP50, "N1"), F(l.AllP99, "N1"), F(l.Max, "N1")]));
        ctx.Out.WriteLine($"goal: p99 < {RevocationBench.GoalP99Ms:0} ms from revoke to the workload's stream update; stream = each (revocation, stream) pair, all streams = until the last stream of a round");
        return 0;
    }

    private static async Task<int> AuthzAsync(ParsedArgs a, CommandContext ctx)
    {
        var rate = ParseCount(a, "rate", 5000, 1, 200_000);
        var channels = ParseCount(a, "channels", 4, 1, 64);
        var seconds = ParseSeconds(a);
        CheckOutput(a);
        var result = await Writ.Bench.AuthzBench.RunAsync(rate, seconds, channels, a.JsonOutput ? TextWriter.Null : ctx.Error, ctx.Cancellation).ConfigureAwait(false);
        if (a.JsonOutput)
        {
            Output.Json(ctx.Out, result);
            return 0;
        }
        Output.Table(ctx.Out, ["service", "target/s", "achieved/s", "requests", "errors", "p50 ms", "p99 ms", "p999 ms", "max ms"],
            result.Runs.Select(r => (IReadOnlyList<string>)[r.Service, r.TargetRps.ToString(CultureInfo.InvariantCulture), F(r.AchievedRps, "N0"),
                r.Requests.ToString(CultureInfo.InvariantCulture), r.Errors.ToString(CultureInfo.InvariantCulture), F(r.P50, "N3"), F(r.P99, "N3"), F(r.P999, "N3"), F(r.Max, "N3")]));
        ctx.Out.WriteLine($"the decision alone (one thread, no gRPC): p50 {F(result.DecideP50Us, "N1")} µs, p99 {F(result.DecideP99Us, "N1")} µs");
        ctx.Out.WriteLine($"goal: decision p99 <= {Writ.Bench.AuthzBench.GoalP99Ms:0.#} ms at 5000/s; added over the no-op p99: {F(result.AddedP99, "N3")} ms (latency counts from each request's scheduled time)");
        return 0;
    }

    private static async Task<int> TpmAsync(ParsedArgs a, CommandContext ctx)
    {
        var tpmText = a.Get("tpm") ?? throw new UsageException("writ bench tpm needs the TPM to measure: pass --tpm /dev/tpmrm0 or --tpm tcp://127.0.0.1:2321 (swtpm)");
        if (!Writ.Tpm.Device.TpmAddress.TryParse(tpmText, out var tpm, out var error))
        {
            throw new UsageException($"--tpm '{tpmText}': {error}");
        }
        var caDir = a.Get("tpm-ek-ca-dir");
        if (caDir is not null && !Directory.Exists(caDir))
        {
            throw new UsageException($"--tpm-ek-ca-dir '{caDir}' is not a directory: give the directory of the TPM manufacturer's CA certificates");
        }
        var rounds = ParseCount(a, "rounds", 10, 1, 10_000);
        var intervalText = a.Get("requote-interval") ?? "1s";
        if (!Writ.Server.Configuration.ConfigSources.TryParseDuration(intervalText, out var interval) || interval < TimeSpan.FromSeconds(1) || interval > TimeSpan.FromHours(1))
        {
            throw new UsageException($"--requote-interval '{intervalText}' is not a duration from 1s to 1h: give e.g. --requote-interval 1s");
        }
        CheckOutput(a);
        TpmBenchResult r;
        try
        {
            r = await TpmBench.RunAsync(new TpmBench.Options(tpm, caDir is null ? null : Path.GetFullPath(caDir), rounds, interval), Host,
                a.JsonOutput ? TextWriter.Null : ctx.Error, ctx.Cancellation).ConfigureAwait(false);
        }
        catch (Writ.Agent.NodeAttestation.AgentFatalException e)
        {
            // A bench agent the server refused (e.g. the node drifted): one line, as any other bench failure.
            throw new BenchFailedException($"a bench agent stopped: {e.Message}");
        }
        if (a.JsonOutput)
        {
            Output.Json(ctx.Out, r);
            return 0;
        }
        static IReadOnlyList<string> Row(string name, TpmFigure f) => [name, F(f.Samples), F(f.P50, "N1"), F(f.P99, "N1"), F(f.Mean, "N1")];
        Output.Table(ctx.Out, ["measure", "samples", "p50 ms", "p99 ms", "mean ms"],
        [
            Row("attestation, tpm (agent start → attested)", r.AttestTpm),
            Row("attestation, join_token (reference)", r.AttestJoinToken),
            Row("  tpm: agent's TPM work (EK, AK, agent key, activation, quote, certify, sign)", r.AttestAgentTpm),
            Row("  tpm: server verification (EK, MakeCredential, quote, certify, CSR signature)", r.AttestServerVerify),
            Row("re-quote: agent's TPM quote (PCR read, quote)", r.RequoteAgentTpm),
            Row("re-quote: server appraisal", r.RequoteServerAppraise),
            Row($"PCR change → workload SVID dropped (interval {F(r.RequoteIntervalMs / 1000, "0.###")} s)", r.DriftToRevocation),
        ]);
        ctx.Out.WriteLine($"appraisal CPU {F(r.AppraiseCpuMicroseconds, "N1")} µs per re-quote: {F(r.FleetCpuPercent, "0.###")} % of one core per 1,000 nodes at the default 60 s interval");
        ctx.Out.WriteLine($"goal: drift-to-revocation p99 ≤ interval + 1 s = {F(r.GoalP99Ms)} ms (measured {F(r.DriftToRevocation.P99, "N0")} ms); TPM {r.Tpm}");
        return 0;
    }

    private static async Task<int> JwtAsync(ParsedArgs a, CommandContext ctx)
    {
        var seconds = ParseSeconds(a);
        CheckOutput(a);
        var r = await JwtBench.RunAsync(seconds, ctx.Cancellation).ConfigureAwait(false);
        if (a.JsonOutput)
        {
            Output.Json(ctx.Out, r);
            return 0;
        }
        Output.Table(ctx.Out, ["measure", "per second", "µs per op", "ratio to raw"],
        [
            ["jwt-svid mint (ES256)", F(r.MintPerSecond), F(1e6 / r.MintPerSecond, "N1"), F(r.MintRatio, "0.000")],
            ["jwt-svid validate", F(r.ValidatePerSecond), F(1e6 / r.ValidatePerSecond, "N1"), F(r.ValidateRatio, "0.000")],
            ["ecdsa p-256 sign (raw)", F(r.SignPerSecond), F(1e6 / r.SignPerSecond, "N1"), ""],
            ["ecdsa p-256 verify (raw)", F(r.VerifyPerSecond), F(1e6 / r.VerifyPerSecond, "N1"), ""],
        ]);
        ctx.Out.WriteLine($"one thread, {F(r.Seconds, "0.#")} s per measure");
        return 0;
    }

    private static async Task<int> ScaleAsync(ParsedArgs a, CommandContext ctx)
    {
        var entries = ParseCount(a, "entries", ScaleOptions.DefaultEntries, 1, 10_000_000);
        var syncEntries = ParseCount(a, "sync-entries", ScaleOptions.DefaultSyncEntries, 1, 10_000_000);
        var agents = ParseCount(a, "agents", ScaleOptions.DefaultAgents, 1, 100_000);
        var rounds = ParseCount(a, "fanout-rounds", ScaleOptions.DefaultFanoutRounds, 1, 1000);
        var store = a.Get("store") ?? "sqlite";
        if (store is not ("sqlite" or "postgres"))
        {
            throw new UsageException($"--store '{store}' is not known: use sqlite or postgres");
        }
        var pg = a.Get("pg") ?? Environment.GetEnvironmentVariable(PgEnvVar);
        if (store == "postgres" && string.IsNullOrWhiteSpace(pg))
        {
            throw new UsageException($"--store postgres needs the server to use: pass --pg \"Host=...;Username=...;Database=...\" or set {PgEnvVar}");
        }
        if (store == "sqlite" && a.Get("pg") is not null)
        {
            throw new UsageException("--pg is only for --store postgres");
        }
        var modes = (a.Get("fanout") ?? string.Join(',', ScaleOptions.AllFanoutModes)).Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        if (modes.Length == 0 || modes.Any(m => !ScaleOptions.AllFanoutModes.Contains(m)) || modes.Distinct().Count() != modes.Length)
        {
            throw new UsageException($"--fanout '{a.Get("fanout")}' is not a list of distinct sync.fanout modes: use shared, per_stream or shared,per_stream");
        }
        var servers = ParseCount(a, "servers", 1, 1, 2);
        if (servers > 1 && store != "postgres")
        {
            throw new UsageException("--servers 2 needs --store postgres: several servers share one store only on PostgreSQL");
        }
        CheckOutput(a);
        // Progress goes to stderr in both formats: a 1M-entry run takes minutes, and stdout keeps only the result.
        var bound = ParseSecondsBound(a);
        var r = await ScaleBench.RunAsync(new ScaleOptions(entries, store, store == "postgres" ? pg : null, syncEntries, agents, rounds, bound, modes, servers),
            Host, ctx.Error, ctx.Cancellation).ConfigureAwait(false);
        if (a.JsonOutput)
        {
            Output.Json(ctx.Out, r);
            return 0;
        }
        Output.Table(ctx.Out, ["measure", "value"],
        [
            ["store", r.Store],
            ["entries", F(r.Entries)],
            [$"entry create rate (admin API, batches of {r.BatchSize}), per second", F(r.CreatePerSecond)],
            ["server start-up, empty store (ms, to \"ready\")", F(r.StartupEmptyMs)],
            ["server resident memory, empty store (MiB)", F(r.RssEmptyMb, "N1")],
            ["server start-up with the entries (ms)", F(r.StartupMs)],
            ["server resident memory with the entries, after start-up (MiB)", F(r.RssMb, "N1")],
            [$"one agent's full sync of {F(r.Sync.Entries)} entries, new connection (ms, Sync call → page_end)", F(r.Sync.FirstMs, "N1")],
            ["same, connection open (ms, median of 3)", F(r.Sync.WarmMedianMs, "N1")],
            [$"{F(r.Fleet.Agents)} agents: attestation (s, 8 at a time)", F(r.Fleet.AttestSeconds, "N1")],
            [$"{F(r.Fleet.Agents)} agents: all synced (ms, Sync streams opened at once)", F(r.Fleet.AllSyncedMs)],
            [$"server resident memory with {F(r.Fleet.Agents)} agents connected (MiB)", F(r.Fleet.ServerRssMb, "N1")],
            .. r.Fleets.SelectMany(f => new string[][]
            {
                [$"sync.fanout {f.Mode}: one entry change reaching all {F(f.Agents)}" + (f.Servers > 1 ? " on another server" : "") + $": p50 / p99 / max (ms, {f.FanoutRounds} rounds)",
                    $"{F(f.FanoutP50Ms, "N1")} / {F(f.FanoutP99Ms, "N1")} / {F(f.FanoutMaxMs, "N1")}"],
                [$"sync.fanout {f.Mode}: store queries per change (writ_store_queries_total)", F(f.StoreQueriesPerChange, "N1")],
            }),
            ["whole run (s)", F(r.TotalSeconds, "N0")],
        ]);
        return 0;
    }

    private static async Task<int> K8sAsync(ParsedArgs a, CommandContext ctx)
    {
        var seconds = ParseSeconds(a);
        CheckOutput(a);
        var r = await K8sBench.RunAsync(seconds, ctx.Cancellation).ConfigureAwait(false);
        if (a.JsonOutput)
        {
            Output.Json(ctx.Out, r);
            return 0;
        }
        static string[] Row(K8sVariantFigures f) => [f.Attestors, F(f.Calls), F(f.P50, "N1"), F(f.P99, "N1"), F(f.Mean, "N1"), F(f.KubeletRequests)];
        Output.Table(ctx.Out, ["attestors (WorkloadAttestationRunner.AttestAsync)", "calls", "p50 µs", "p99 µs", "mean µs", "kubelet requests"],
            [Row(r.UnixCgroup), Row(r.K8sWarm), Row(r.K8sUncached), Row(r.K8sSigned)]);
        ctx.Out.WriteLine($"k8s adds p50 {F(r.K8sWarm.P50 - r.UnixCgroup.P50, "N1")} µs with a warm pod cache, {F(r.K8sUncached.P50 - r.UnixCgroup.P50, "N1")} µs when every call fetches the list " +
            $"({F(r.Pods)} pods, {F(r.PodListBytes)} bytes, kubelet read-only port on loopback); cgroup {r.Cgroup}, {F(r.Seconds, "0.#")} s per variant");
        return 0;
    }

    private static async Task<int> WorkloadApiAsync(ParsedArgs a, CommandContext ctx)
    {
        var seconds = ParseSeconds(a);
        CheckOutput(a);
        var r = await WorkloadApiBench.RunAsync(seconds, a.Flag("breakdown"), Host, a.JsonOutput ? TextWriter.Null : ctx.Error, ctx.Cancellation).ConfigureAwait(false);
        if (a.JsonOutput)
        {
            Output.Json(ctx.Out, r);
            return 0;
        }
        static string[] Row(string name, LatencyFigures f) => [name, F(f.Calls), F(f.P50, "N1"), F(f.P99, "N1"), F(f.Mean, "N1")];
        Output.Table(ctx.Out, ["call (Unix socket, gRPC)", "calls", "p50 µs", "p99 µs", "mean µs"],
        [
            Row("FetchX509SVID, first message (agent)", r.FetchX509),
            Row("no-op stream, first message", r.NoopStream),
            Row("FetchJWTSVID (agent, cache warm)", r.FetchJwt),
            Row("no-op unary", r.NoopUnary),
        ]);
        ctx.Out.WriteLine($"p99 ratio to no-op: x509 {F(r.X509P99Ratio, "0.00")}, jwt {F(r.JwtP99Ratio, "0.00")} (goal ≤ {F(r.GoalRatio, "0.0")})");
        if (r.Breakdown is { } b)
        {
            ctx.Out.WriteLine();
            Output.Table(ctx.Out, ["stage", "what", "p50 µs", "p99 µs", "mean µs"],
                b.Select(s => (IReadOnlyList<string>)[s.Stage, s.What, F(s.P50, "N1"), F(s.P99, "N1"), F(s.Mean, "N1")]));
        }
        return 0;
    }
}
