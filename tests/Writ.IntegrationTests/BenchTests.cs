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
        var admin = Environment.GetEnvironmentVariable("WRIT_TEST_PG");
        if (string.IsNullOrEmpty(admin))
        {
            Assert.SkipWhen(Environment.GetEnvironmentVariable("CI") is null, "WRIT_TEST_PG is not set (./test.sh starts a PostgreSQL and sets it)");
            Assert.Fail("WRIT_TEST_PG is not set in CI: test.sh should have started PostgreSQL");
        }
        var before = await BenchDatabasesAsync(admin);
        // The connection string through the environment, as a user keeping a password off the command line would.
        var r = await Proc.RunAsync("dotnet", [Repo.WritDll, "bench", "scale", "--store", "postgres", .. TinyScale], timeout: Timeout,
            env: new Dictionary<string, string?> { ["WRIT_BENCH_PG"] = admin });
        Assert.True(r.ExitCode == 0, r.ToString());
        using var doc = JsonDocument.Parse(r.Stdout);
        CheckScale(doc.RootElement, "postgres");
        Assert.Equal(before, await BenchDatabasesAsync(admin));   // nothing left behind
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

    [Theory]
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
}
