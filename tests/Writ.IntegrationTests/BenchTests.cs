using System.Text.Json;
using Writ.IntegrationTests.Harness;

namespace Writ.IntegrationTests;

/// <summary>
/// `writ bench …` runs as a real process and reports sane figures. No timing is asserted (benchmarks are not timed
/// tests): only that every figure is there, positive and consistent with the others.
/// </summary>
public sealed class BenchTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromMinutes(3);

    private static async Task<JsonElement> RunJsonAsync(params string[] args)
    {
        var r = await Proc.RunAsync("dotnet", [Repo.WritDll, "bench", .. args, "--seconds", "1", "--output", "json"], timeout: Timeout);
        Assert.True(r.ExitCode == 0, r.ToString());
        using var doc = JsonDocument.Parse(r.Stdout);
        return doc.RootElement.Clone();
    }

    private static double Positive(JsonElement e, string name)
    {
        var v = e.GetProperty(name).GetDouble();
        Assert.True(v > 0 && double.IsFinite(v), $"{name} = {v}, expected a positive number");
        return v;
    }

    [Fact]
    public async Task Issuance_reports_rates_the_limit_and_the_ratio()
    {
        var j = await RunJsonAsync("issuance", "--breakdown");
        Assert.Equal("issuance", j.GetProperty("benchmark").GetString());
        var x509 = Positive(j, "x509_per_second");
        var sign = Positive(j, "ecdsa_p256_sign_per_second");
        var verify = Positive(j, "ecdsa_p256_verify_per_second");
        var limit = Positive(j, "limit_per_second");
        var ratio = Positive(j, "ratio");
        Assert.InRange(limit, 1 / ((1 / sign) + (1 / verify)) - 1, 1 / ((1 / sign) + (1 / verify)) + 1);
        Assert.InRange(ratio, x509 / limit - 0.01, x509 / limit + 0.01);
        Assert.True(limit < sign && limit < verify, "the limit of two operations in a row is below each one's rate");
        Assert.Equal(0.7, j.GetProperty("goal_ratio").GetDouble());
        var b = j.GetProperty("breakdown");
        foreach (var p in b.EnumerateObject())
        {
            Positive(b, p.Name);
        }
        // der_out_ratio is the raw sign + verify limit over the DER-out issuance reported beside it (not another figure's).
        var signUs = Positive(b, "ecdsa_p256_sign_us");
        var verifyUs = Positive(b, "ecdsa_p256_verify_us");
        var derOutUs = Positive(b, "issuance_der_out_us");
        Assert.InRange(Positive(b, "der_out_ratio"), ((signUs + verifyUs) / derOutUs) - 0.01, ((signUs + verifyUs) / derOutUs) + 0.01);
        Assert.Equal(14, b.EnumerateObject().Count());   // one figure per measured op, plus the ratio: none left out
    }

    /// <summary>
    /// Each breakdown figure comes from the op of its name: fed distinct figures, every field gets its own (the bug was a
    /// positional lookup that reported issuance_with_parse as issuance_der_out after an op was inserted).
    /// </summary>
    [Fact]
    public void Issuance_breakdown_takes_each_figure_from_the_op_of_its_name()
    {
        string[] names = ["csr_verify", "issuer_verify_csr", "sign_leaf", "certificate_load", "ec_import", "ecdsa_p256_sign", "ecdsa_p256_verify",
            "issuance", "issuance_with_parse", "issuance_der_out", "sign_leaf_certificate_request", "sign_leaf_der", "csr_verify_certificate_request"];
        // Sample i took (i + 1) * 10 µs per call: 1 call in that many ticks.
        var samples = names.Select((name, i) => Sample(name, (i + 1) * 10)).ToList();
        double Us(string name) => (Array.IndexOf(names, name) + 1) * 10;

        var b = Writ.Bench.IssuanceBreakdown.From(samples);

        (string Op, Func<Writ.Bench.IssuanceBreakdown, double> Field)[] fields =
        [
            ("csr_verify", x => x.CsrVerify), ("issuer_verify_csr", x => x.IssuerVerifyCsr), ("sign_leaf", x => x.SignLeaf),
            ("sign_leaf_certificate_request", x => x.SignLeafCertificateRequest), ("sign_leaf_der", x => x.SignLeafDer),
            ("csr_verify_certificate_request", x => x.CsrVerifyCertificateRequest), ("certificate_load", x => x.CertificateLoad),
            ("ec_import", x => x.EcPublicKeyImport), ("ecdsa_p256_sign", x => x.Sign), ("ecdsa_p256_verify", x => x.Verify),
            ("issuance", x => x.Issuance), ("issuance_with_parse", x => x.IssuanceWithParse), ("issuance_der_out", x => x.IssuanceDerOut),
        ];
        Assert.Equal(names.Order(StringComparer.Ordinal), fields.Select(f => f.Op).Order(StringComparer.Ordinal));   // every op has its field
        foreach (var (op, field) in fields)
        {
            Assert.True(Math.Abs(Us(op) - field(b)) < 0.005, $"{op}: expected {Us(op)} µs, the breakdown says {field(b)}");
        }
        Assert.Equal((Us("ecdsa_p256_sign") + Us("ecdsa_p256_verify")) / Us("issuance_der_out"), b.DerOutRatio, 3);

        // An op left out is an error, not a zero or a neighbour's figure.
        var e = Assert.Throws<InvalidOperationException>(() => Writ.Bench.IssuanceBreakdown.From(samples.Where(x => x.Name != "issuance_der_out")));
        Assert.Contains("issuance_der_out", e.Message, StringComparison.Ordinal);

        static Writ.Bench.BenchSample Sample(string name, double microseconds)
        {
            var sample = new Writ.Bench.BenchSample(name);
            sample.Add(1, (long)Math.Round(microseconds * System.Diagnostics.Stopwatch.Frequency / 1e6));
            return sample;
        }
    }

    [Fact]
    public async Task Authz_reports_the_decision_service_against_a_no_op_check()
    {
        var j = await RunJsonAsync("authz", "--rate", "200", "--channels", "2");
        Assert.Equal("authz", j.GetProperty("benchmark").GetString());
        var runs = j.GetProperty("runs").EnumerateArray().ToList();
        Assert.Equal(["no-op", "ext_authz"], runs.Select(r => r.GetProperty("service").GetString()));
        foreach (var r in runs)
        {
            Assert.Equal(200, r.GetProperty("target_rps").GetInt32());
            Assert.Equal(200, r.GetProperty("requests").GetInt32());
            Assert.Equal(0, r.GetProperty("errors").GetInt32());   // every Check of the bench's caller is allowed
            Positive(r, "achieved_rps");
            var (p50, p99, p999, max) = (Positive(r, "p50_ms"), Positive(r, "p99_ms"), Positive(r, "p999_ms"), Positive(r, "max_ms"));
            Assert.True(p50 <= p99 && p99 <= p999 && p999 <= max, r.ToString());
        }
        Assert.True(Positive(j, "decide_p50_us") <= Positive(j, "decide_p99_us"));
        Assert.Equal(1.0, j.GetProperty("goal_p99_ms").GetDouble());
        var bad = await Proc.RunAsync("dotnet", [Repo.WritDll, "bench", "authz", "--rate", "0"]);
        Expect.OneLineError(bad, "--rate '0'");
    }

    [Fact]
    public async Task Jwt_reports_mint_and_validate_against_raw_ecdsa()
    {
        var j = await RunJsonAsync("jwt");
        Assert.Equal("jwt", j.GetProperty("benchmark").GetString());
        var mint = Positive(j, "jwt_mint_per_second");
        var sign = Positive(j, "ecdsa_p256_sign_per_second");
        Positive(j, "jwt_validate_per_second");
        Positive(j, "ecdsa_p256_verify_per_second");
        Assert.InRange(Positive(j, "mint_ratio"), mint / sign - 0.01, mint / sign + 0.01);
        Positive(j, "validate_ratio");
    }

    [Fact]
    public async Task Workload_api_reports_latency_percentiles_for_real_and_noop_calls()
    {
        var j = await RunJsonAsync("workload-api");
        Assert.Equal("workload-api", j.GetProperty("benchmark").GetString());
        foreach (var name in new[] { "fetch_x509_svid", "noop_stream", "fetch_jwt_svid", "noop_unary" })
        {
            var f = j.GetProperty(name);
            Assert.True(f.GetProperty("calls").GetInt64() > 0, $"{name}: no calls measured");
            var p50 = Positive(f, "p50_us");
            var p99 = Positive(f, "p99_us");
            Assert.True(p50 <= p99, $"{name}: p50 {p50} > p99 {p99}");
            Positive(f, "mean_us");
        }
        Positive(j, "x509_p99_ratio");
        Positive(j, "jwt_p99_ratio");
    }

    /// <summary>
    /// The k8s bench attests its child in a real pod cgroup with each attestor set (it refuses to time evidence without
    /// the pod's selectors), and the kubelet requests say what each variant is: none without k8s, one list for the warm
    /// cache (also with image signatures), a list per call with TTL 0.
    /// </summary>
    [Fact]
    public async Task K8s_reports_attestation_latency_with_and_without_the_k8s_attestor_and_the_kubelet_requests()
    {
        var j = await RunJsonAsync("k8s");
        Assert.Equal("k8s", j.GetProperty("benchmark").GetString());
        Assert.Equal(110, j.GetProperty("pods").GetInt32());
        Positive(j, "pod_list_bytes");
        Assert.Contains(j.GetProperty("cgroup").GetString(), new[] { "v1", "v2" });
        var requests = new Dictionary<string, int>();
        foreach (var name in new[] { "unix_cgroup", "k8s_warm", "k8s_uncached", "k8s_signed" })
        {
            var f = j.GetProperty(name);
            Assert.True(f.GetProperty("calls").GetInt64() > 0, $"{name}: no calls measured");
            var p50 = Positive(f, "p50_us");
            var p99 = Positive(f, "p99_us");
            Assert.True(p50 <= p99, $"{name}: p50 {p50} > p99 {p99}");
            Positive(f, "mean_us");
            requests[name] = f.GetProperty("kubelet_requests").GetInt32();
        }
        Assert.Equal(0, requests["unix_cgroup"]);
        Assert.Equal(1, requests["k8s_warm"]);
        Assert.Equal(1, requests["k8s_signed"]);
        // Every uncached call fetched: the timed calls, plus the check and the warm-up before them.
        Assert.True(requests["k8s_uncached"] > j.GetProperty("k8s_uncached").GetProperty("calls").GetInt64(), $"k8s_uncached: {requests["k8s_uncached"]} kubelet requests");
        Assert.Equal(requests["k8s_warm"] + requests["k8s_uncached"] + requests["k8s_signed"], j.GetProperty("kubelet_requests_served").GetInt32());
    }

    private static readonly string[] TinyScale = ["--entries", "2500", "--sync-entries", "300", "--agents", "20", "--fanout-rounds", "2", "--output", "json"];

    /// <summary>Checks the figures of a tiny scale run: correctness of the command only, no timing asserted.</summary>
    private static void CheckScale(JsonElement j, string store)
    {
        Assert.Equal("scale", j.GetProperty("benchmark").GetString());
        Assert.Equal(store, j.GetProperty("store").GetString());
        Assert.Equal(2500, j.GetProperty("entries").GetInt32());
        foreach (var name in new[] { "entry_create_per_second", "startup_empty_ms", "rss_empty_mb", "startup_ms", "rss_mb", "total_seconds" })
        {
            Positive(j, name);
        }
        var sync = j.GetProperty("sync");
        Assert.Equal(300, sync.GetProperty("entries").GetInt32());   // exactly the entries parented to that agent, no others
        Assert.True(sync.GetProperty("pages").GetInt32() >= 1);
        Positive(sync, "first_ms");
        Positive(sync, "warm_median_ms");
        var fleet = j.GetProperty("fleet");
        Assert.Equal(20, fleet.GetProperty("agents").GetInt32());
        Assert.Equal(2, fleet.GetProperty("fanout_rounds").GetInt32());
        Assert.Equal(40, fleet.GetProperty("fanout_samples").GetInt32());   // every agent saw every change
        foreach (var name in new[] { "attest_seconds", "all_synced_ms", "server_rss_mb", "fanout_p50_ms", "fanout_p99_ms", "fanout_max_ms" })
        {
            Positive(fleet, name);
        }
        Assert.True(fleet.GetProperty("fanout_p50_ms").GetDouble() <= fleet.GetProperty("fanout_p99_ms").GetDouble());
        Assert.True(fleet.GetProperty("fanout_p99_ms").GetDouble() <= fleet.GetProperty("fanout_max_ms").GetDouble());
        // Both sync.fanout modes side by side (issue #16), each with its own fleet of 20 agents that all saw every change.
        var fleets = j.GetProperty("fleets").EnumerateArray().ToList();
        Assert.Equal(["shared", "per_stream"], fleets.Select(f => f.GetProperty("fanout_mode").GetString()));
        Assert.All(fleets, f => Assert.Equal(40, f.GetProperty("fanout_samples").GetInt32()));
        // Store round trips per change (read from each server's /metrics): with shared fan-out they do not grow with the
        // agents, so 20 agents cost fewer than 20 (about 8: the update, the ledger, one read of the changes, of the
        // revocations and of the nodes); per_stream reads the changes once per agent, so at least 20.
        double PerChange(JsonElement f) => f.GetProperty("store_queries_per_change").GetDouble();
        double ByOperation(JsonElement f, string op) =>
            f.GetProperty("store_queries_per_change_by_operation").TryGetProperty(op, out var v) ? v.GetDouble() : 0;
        Assert.InRange(PerChange(fleets[0]), 1, 19.9);
        Assert.InRange(ByOperation(fleets[0], "list_nodes"), 0, 2);
        Assert.Equal(0, ByOperation(fleets[0], "read_entry_changes") + ByOperation(fleets[0], "get_node"));
        Assert.True(PerChange(fleets[1]) >= 20, fleets[1].ToString());
        Assert.True(ByOperation(fleets[1], "read_entry_changes") >= 20, fleets[1].ToString());
    }

    [Fact]
    public async Task Scale_on_sqlite_creates_the_entries_syncs_an_agent_and_a_fleet()
    {
        var r = await Proc.RunAsync("dotnet", [Repo.WritDll, "bench", "scale", .. TinyScale], timeout: Timeout);
        Assert.True(r.ExitCode == 0, r.ToString());
        using var doc = JsonDocument.Parse(r.Stdout);
        CheckScale(doc.RootElement, "sqlite");
    }

    [Fact]
    public async Task Scale_on_postgresql_uses_a_scratch_database_and_drops_it()
    {
        var admin = Writ.Tests.Shared.TestPostgresGate.ConnectionString();
        var before = await BenchDatabasesAsync(admin);
        // The connection string through the environment, as a user keeping a password off the command line would.
        // --servers 2: the fleets sync with a second server process on the same store while the changes go through the
        // first, so every one of the 40 arrivals per fleet crossed servers (issue #16).
        var r = await Proc.RunAsync("dotnet", [Repo.WritDll, "bench", "scale", "--store", "postgres", "--servers", "2", .. TinyScale], timeout: Timeout,
            env: new Dictionary<string, string?> { ["WRIT_BENCH_PG"] = admin });
        Assert.True(r.ExitCode == 0, r.ToString());
        using var doc = JsonDocument.Parse(r.Stdout);
        CheckScale(doc.RootElement, "postgres");
        Assert.All(doc.RootElement.GetProperty("fleets").EnumerateArray(), f => Assert.Equal(2, f.GetProperty("servers").GetInt32()));
        Assert.Contains("to the second server; changes through the first", r.Stderr, StringComparison.Ordinal);
        Assert.Equal(before, await BenchDatabasesAsync(admin));   // nothing left behind
    }

    [Fact]
    public async Task Scale_with_two_servers_on_sqlite_is_refused_with_what_to_do()
    {
        var r = await Proc.RunAsync("dotnet", [Repo.WritDll, "bench", "scale", "--servers", "2", .. TinyScale], timeout: Timeout);
        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains("--servers 2 needs --store postgres", r.Stderr, StringComparison.Ordinal);
    }

    private static async Task<string[]> BenchDatabasesAsync(string connection)
    {
        await using var conn = new Npgsql.NpgsqlConnection(connection);
        await conn.OpenAsync();
        await using var cmd = new Npgsql.NpgsqlCommand("SELECT datname FROM pg_database WHERE datname LIKE 'writ_bench_%' ORDER BY 1", conn);
        var names = new List<string>();
        await using var reader = await cmd.ExecuteReaderAsync();
        while (await reader.ReadAsync())
        {
            names.Add(reader.GetString(0));
        }
        return [.. names];
    }

    /// <summary>
    /// `--seconds` bounds the run: entry creation and fan-out rounds stop once it has passed (after one batch, one round)
    /// and the figures say how many were done. The counts asked for cannot be reached within a second (two million
    /// entries; a thousand rounds to a hundred agents), so stopping short is the bound's doing; no time is compared.
    /// </summary>
    [Fact]
    public async Task Scale_with_seconds_stops_creating_and_fanning_out_once_the_bound_has_passed()
    {
        var r = await Proc.RunAsync("dotnet", [Repo.WritDll, "bench", "scale", "--entries", "2000000", "--sync-entries", "300", "--agents", "100",
            "--fanout-rounds", "1000", "--seconds", "1", "--output", "json"], timeout: Timeout);
        Assert.True(r.ExitCode == 0, r.ToString());
        using var doc = JsonDocument.Parse(r.Stdout);
        var j = doc.RootElement;
        var entries = j.GetProperty("entries").GetInt32();
        Assert.InRange(entries, 1000, 2_000_000 - 1);
        Assert.Equal(0, entries % 1000);   // whole batches
        Assert.Equal(Math.Min(300, entries), j.GetProperty("sync").GetProperty("entries").GetInt32());
        var fleet = j.GetProperty("fleet");
        var rounds = fleet.GetProperty("fanout_rounds").GetInt32();
        Assert.InRange(rounds, 1, 999);
        Assert.Equal(100 * rounds, fleet.GetProperty("fanout_samples").GetInt32());   // the rounds done were complete
        Assert.Contains("--seconds passed", r.Stderr, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("--seconds", "0")]
    [InlineData("--seconds", "soon")]
    [InlineData("--store", "mysql")]
    [InlineData("--store", "postgres")]
    [InlineData("--agents", "0")]
    [InlineData("--sync-entries", "x")]
    public async Task Bad_scale_options_are_usage_errors_with_one_line(string option, string value)
    {
        var r = await Proc.RunAsync("dotnet", [Repo.WritDll, "bench", "scale", option, value], timeout: Timeout,
            env: new Dictionary<string, string?> { ["WRIT_BENCH_PG"] = null });
        Assert.Equal(2, r.ExitCode);
        Assert.Contains(option == "--store" && value == "postgres" ? "--pg" : option, r.Stderr, StringComparison.Ordinal);
        Assert.Single(r.Stderr.Trim().Split('\n'));
    }

    [Theory]
    [InlineData("0")]
    [InlineData("many")]
    public async Task Bad_entries_is_a_usage_error(string entries)
    {
        var r = await Proc.RunAsync("dotnet", [Repo.WritDll, "bench", "scale", "--entries", entries], timeout: Timeout);
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("--entries", r.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Table_output_is_the_default()
    {
        var r = await Proc.RunAsync("dotnet", [Repo.WritDll, "bench", "jwt", "--seconds", "0.5"], timeout: Timeout);
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Contains("jwt-svid mint (ES256)", r.Stdout, StringComparison.Ordinal);
        Assert.Contains("ecdsa p-256 verify (raw)", r.Stdout, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("abc")]
    [InlineData("0")]
    [InlineData("-3")]
    [InlineData("NaN")]
    public async Task Bad_seconds_is_a_usage_error_with_one_line(string seconds)
    {
        var r = await Proc.RunAsync("dotnet", [Repo.WritDll, "bench", "issuance", "--seconds", seconds], timeout: Timeout);
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("--seconds", r.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", r.Stderr, StringComparison.Ordinal);
    }

    /// <summary>
    /// `writ bench tpm` on a swtpm (trusted by its EK hash): 2 rounds of each measurement, every figure there and positive,
    /// one sample per round, the drift rounds all ended (the workload lost its SVID each time) and the goal is interval + 1 s.
    /// </summary>
    [Fact]
    public async Task Tpm_reports_attestation_requote_cost_and_drift_to_revocation()
    {
        Assert.True(Writ.Tests.Shared.Swtpm.Installed, "swtpm, swtpm-tools and tpm2-tools must be installed (.ci/run installs them)");
        await using var tpm = await Writ.Tests.Shared.Swtpm.StartAsync(null, TestContext.Current.CancellationToken);
        var r = await Proc.RunAsync("dotnet", [Repo.WritDll, "bench", "tpm", "--tpm", tpm.Address, "--rounds", "2", "--requote-interval", "1s", "--output", "json"],
            timeout: Timeout);
        Assert.True(r.ExitCode == 0, r.ToString());
        using var doc = JsonDocument.Parse(r.Stdout);
        var j = doc.RootElement;
        Assert.Equal("tpm", j.GetProperty("benchmark").GetString());
        Assert.Equal(tpm.Address, j.GetProperty("tpm").GetString());
        Assert.Equal(2, j.GetProperty("rounds").GetInt32());
        Assert.Equal(1000, j.GetProperty("requote_interval_ms").GetDouble());
        Assert.Equal(2000, j.GetProperty("goal_p99_ms").GetDouble());
        string[] figures = ["attest_tpm", "attest_join_token", "attest_agent_tpm", "attest_server_verify", "requote_agent_tpm", "requote_server_appraise", "drift_to_revocation"];
        foreach (var name in figures)
        {
            var f = j.GetProperty(name);
            Assert.Equal(2, f.GetProperty("samples").GetInt32());
            var p50 = Positive(f, "p50_ms");
            var p99 = Positive(f, "p99_ms");
            Assert.True(p50 <= p99, $"{name}: p50 {p50} > p99 {p99}");
            Positive(f, "mean_ms");
        }
        Positive(j, "appraise_cpu_us");
        Positive(j, "fleet_cpu_percent_per_1000_nodes_at_60s");
    }

    [Theory]
    [InlineData("--rounds", "0")]
    [InlineData("--requote-interval", "100ms")]
    [InlineData("--tpm", "http://127.0.0.1:1")]
    [InlineData("--tpm-ek-ca-dir", "/nonexistent/ek-ca")]
    public async Task Bad_tpm_options_are_usage_errors_with_one_line(string option, string value)
    {
        string[] tpm = option == "--tpm" ? [] : ["--tpm", "tcp://127.0.0.1:1"];
        var r = await Proc.RunAsync("dotnet", [Repo.WritDll, "bench", "tpm", .. tpm, option, value], timeout: Timeout);
        Assert.Equal(2, r.ExitCode);
        Assert.Contains(option, r.Stderr, StringComparison.Ordinal);
        Assert.Single(r.Stderr.Trim().Split('\n'));
    }

    [Fact]
    public async Task Bench_tpm_on_an_unreachable_tpm_fails_with_one_line()
    {
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        var port = ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();   // a free port nothing listens on
        var r = await Proc.RunAsync("dotnet", [Repo.WritDll, "bench", "tpm", "--tpm", $"tcp://127.0.0.1:{port}", "--rounds", "1"], timeout: Timeout);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("WRIT-CLI-FAILED", r.Stderr, StringComparison.Ordinal);
        Assert.Contains($"tcp://127.0.0.1:{port}", r.Stderr, StringComparison.Ordinal);
        Assert.Single(r.Stderr.Trim().Split('\n'));
        Assert.Equal("", r.Stdout);
    }

    [Fact]
    public async Task Bench_tpm_without_a_tpm_says_to_pass_one()
    {
        var r = await Proc.RunAsync("dotnet", [Repo.WritDll, "bench", "tpm"], timeout: Timeout);
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("--tpm", r.Stderr, StringComparison.Ordinal);
        Assert.Single(r.Stderr.Trim().Split('\n'));
    }
}
