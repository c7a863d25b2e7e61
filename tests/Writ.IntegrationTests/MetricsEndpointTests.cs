using System.Globalization;
using System.Net;
using System.Text.RegularExpressions;
using Writ.IntegrationTests.Harness;

namespace Writ.IntegrationTests;

/// <summary>
/// `--metrics-bind` on a real `writ server run` and `writ agent run`: /metrics in Prometheus text moves when a real
/// workload is served or refused, /healthz answers, /readyz says 503 until the agent has synced, and no exported label
/// carries an unbounded value (docs/telemetry.md).
/// </summary>
public sealed partial class MetricsEndpointTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);

    /// <summary>Every label key /metrics may carry: the instruments' own plus what the Prometheus exporter adds.</summary>
    private static readonly HashSet<string> AllowedLabels = ["action", "reason", "attestor", "trigger", "method", "code", "kind", "le", "operation",
        "otel_scope_name", "otel_scope_version", "otel_scope_schema_url", "server"];

    /// <summary>The values each bounded label may take (Cedar actions, fixed reasons, gRPC names).</summary>
    private static readonly Dictionary<string, Regex> AllowedValues = new()
    {
        ["action"] = new("^(IssueX509Svid|IssueJwtSvid|AttestNode)$"),
        ["reason"] = new("^(entry_not_authorized|bad_request|rate_limited|policy|pin_failed|process_changed|timeout|attestor_error|unknown_type|too_large|failed|denied|bad_csr|foreign_id|node_exists|token_malformed|token_unknown|token_used|token_expired|agent_banned|agent_superseded)$"),
        ["attestor"] = new("^join_token$"),
        ["trigger"] = new("^(admin|instance_gone)$"),
        ["method"] = new("^[A-Za-z0-9]+$"),
        ["code"] = new("^[A-Z_]+$"),
        ["kind"] = new("^(x509|jwt)$"),
        ["le"] = new(@"^([0-9.e+-]+|\+Inf)$"),
        ["operation"] = new("^[a-z0-9_]+$"),   // a store operation's fixed name (writ_store_queries_total)
        ["server"] = new(@"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):[0-9]+$"),   // an endpoint of the agent's own --server list
        ["otel_scope_name"] = new("^Writ\\.(Server|Agent|Server\\.Store)$"),
        ["otel_scope_version"] = new("^$"),
        ["otel_scope_schema_url"] = new("^$"),
    };

    [GeneratedRegex(@"^(?<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?<labels>.*)\})? (?<value>\S+)")]
    private static partial Regex Sample();

    [GeneratedRegex("(?<key>[a-zA-Z_][a-zA-Z0-9_]*)=\"(?<value>(?:[^\"\\\\]|\\\\.)*)\"")]
    private static partial Regex Label();

    [GeneratedRegex(@"\bmetrics=(\S+)")]
    private static partial Regex MetricsAddress();

    private sealed record Series(string Name, IReadOnlyDictionary<string, string> Labels, double Value);

    private static async Task<IReadOnlyList<Series>> ScrapeAsync(HttpClient http, string address)
    {
        using var r = await http.GetAsync(new Uri($"http://{address}/metrics"), Ct);
        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        var text = await r.Content.ReadAsStringAsync(Ct);
        var series = new List<Series>();
        foreach (var line in text.Split('\n'))
        {
            if (line.Length == 0 || line[0] == '#')
            {
                continue;
            }
            var m = Sample().Match(line);
            Assert.True(m.Success, $"not a Prometheus sample: {line}");
            var labels = Label().Matches(m.Groups["labels"].Value).ToDictionary(l => l.Groups["key"].Value, l => l.Groups["value"].Value);
            series.Add(new Series(m.Groups["name"].Value, labels, double.Parse(m.Groups["value"].Value, CultureInfo.InvariantCulture)));
        }
        return series;
    }

    private static double Sum(IReadOnlyList<Series> series, string name, params (string Key, string Value)[] labels) =>
        series.Where(s => s.Name == name && labels.All(l => s.Labels.TryGetValue(l.Key, out var v) && v == l.Value)).Sum(s => s.Value);

    private static async Task<HttpStatusCode> StatusAsync(HttpClient http, string address, string path)
    {
        using var r = await http.GetAsync(new Uri($"http://{address}{path}"), Ct);
        return r.StatusCode;
    }

    private static string AddressOf(LineLog stdout) => MetricsAddress().Match(stdout.Text).Groups[1].Value;

    /// <summary>Every exported series: label keys from the allow-list, values from their fixed sets (target_info is the process's one resource series).</summary>
    private static void AssertBoundedLabels(IReadOnlyList<Series> series)
    {
        foreach (var s in series.Where(s => s.Name != "target_info"))
        {
            foreach (var (key, value) in s.Labels)
            {
                Assert.True(AllowedLabels.Contains(key), $"{s.Name} has label '{key}' outside the allow-list");
                Assert.True(AllowedValues[key].IsMatch(value), $"{s.Name} label {key}=\"{value}\" is not one of its bounded values");
            }
        }
    }

    [Fact]
    public async Task Counters_move_when_a_workload_is_served_or_refused_and_labels_stay_bounded()
    {
        string[] metrics = ["--metrics-bind", "127.0.0.1:0"];
        await using var rig = await AgentRig.StartAsync(serverArgs: metrics, agentArgs: metrics);
        var server = AddressOf(rig.Server.Stdout);
        var agent = AddressOf(rig.Agent.Stdout);
        Assert.StartsWith("127.0.0.1:", server, StringComparison.Ordinal);
        Assert.StartsWith("127.0.0.1:", agent, StringComparison.Ordinal);
        using var http = new HttpClient();
        Assert.Equal(HttpStatusCode.OK, await StatusAsync(http, server, "/healthz"));
        Assert.Equal(HttpStatusCode.OK, await StatusAsync(http, agent, "/healthz"));
        Assert.Equal(HttpStatusCode.OK, await StatusAsync(http, server, "/readyz"));
        await WorkloadTools.EventuallyAsync(async () => await StatusAsync(http, agent, "/readyz") == HttpStatusCode.OK ? true : throw new InvalidOperationException("agent not ready"),
            Deadline, "the agent's /readyz saying ready");

        // Served: the server's issuance counter and the agent's Workload API OK calls move.
        await rig.CreateEntryAsync("spiffe://example.org/payments/worker", ["unix:uid:0"]);
        await AgentTests.WaitForSvidAsync(rig);
        var served = await ScrapeAsync(http, server);
        Assert.True(Sum(served, "writ_server_issuances_total", ("action", "IssueX509Svid")) >= 1, "no X.509 issuance counted");
        Assert.True(Sum(served, "writ_server_issuances_total", ("action", "AttestNode")) >= 1, "the agent's attestation was not counted");
        Assert.True(Sum(served, "writ_server_issuance_duration_seconds_count", ("action", "IssueX509Svid")) >= 1, "no issuance latency recorded");
        Assert.True(Sum(served, "writ_server_ledger_append_duration_seconds_count") >= 1, "no ledger append latency recorded");
        var deniedBefore = Sum(served, "writ_server_issuance_denials_total", ("action", "IssueX509Svid"), ("reason", "policy"));
        var agentServed = await ScrapeAsync(http, agent);
        Assert.True(Sum(agentServed, "writ_agent_workload_api_calls_total", ("code", "OK")) >= 1, "no OK Workload API call counted");

        // Refused by the server's policy: the denial counter moves, by action and reason.
        await PipelineAgentTests.PushForbidAsync(rig, "freeze-payments", "/payments/*");
        var refused = await rig.WorkloadAsync("svid", "fetch", "--output", "json");
        Assert.NotEqual(0, refused.ExitCode);
        var after = await ScrapeAsync(http, server);
        Assert.True(Sum(after, "writ_server_issuance_denials_total", ("action", "IssueX509Svid"), ("reason", "policy")) > deniedBefore, "the refusal was not counted");
        var agentAfter = await ScrapeAsync(http, agent);
        Assert.True(Sum(agentAfter, "writ_agent_workload_api_calls_total", ("code", "PERMISSION_DENIED")) >= 1, "the refused Workload API call was not counted");
        Assert.True(Sum(agentAfter, "writ_agent_instances") >= 0 && agentAfter.Any(s => s.Name == "writ_agent_svid_cache_size"), "the agent's gauges are missing");

        // No identity-bearing label anywhere: no SPIFFE ID, entry id, serial or pid, on either process.
        AssertBoundedLabels(after);
        AssertBoundedLabels(agentAfter);
        foreach (var text in new[] { string.Join('\n', after.Select(s => string.Join(',', s.Labels.Values))), string.Join('\n', agentAfter.Select(s => string.Join(',', s.Labels.Values))) })
        {
            Assert.DoesNotContain("spiffe://", text, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task Agent_readyz_is_503_until_it_has_synced_and_200_after()
    {
        string[] metrics = ["--metrics-bind", "127.0.0.1:0"];
        await using var rig = await AgentRig.StartAsync(agentArgs: metrics);
        using var http = new HttpClient();
        // Restarted while the server is down: it resumes with its stored SVID but has not synced, so it is not ready.
        await rig.Agent.KillAsync();
        await rig.Server.KillAsync();
        await rig.Agent.StartAsync();
        var agent = AddressOf(rig.Agent.Stdout);
        Assert.Equal(HttpStatusCode.OK, await StatusAsync(http, agent, "/healthz"));
        Assert.Equal(HttpStatusCode.ServiceUnavailable, await StatusAsync(http, agent, "/readyz"));
        await rig.RestartServerAsync();
        await WorkloadTools.EventuallyAsync(async () => await StatusAsync(http, agent, "/readyz") == HttpStatusCode.OK ? true : throw new InvalidOperationException("agent not ready"),
            Deadline, "the agent's /readyz saying ready once synced");
    }

    [Fact]
    public async Task A_taken_metrics_port_or_a_non_loopback_bind_refuses_the_start()
    {
        using var taken = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0);
        taken.Start();
        var port = ((IPEndPoint)taken.LocalEndpoint).Port.ToString(CultureInfo.InvariantCulture);
        using var dir = new TempDir();
        var refused = await Proc.RunAsync("dotnet", [Repo.WritDll, "server", "run", "--trust-domain", "example.org", "--data-dir", dir["server"],
            "--bind", "127.0.0.1:0", "--admin-socket", dir["a.sock"], "--metrics-bind", $"127.0.0.1:{port}"], timeout: TimeSpan.FromMinutes(1));
        Expect.OneLineError(refused, "WRIT-SERVER-METRICS-BIND");
        Assert.False(File.Exists(Path.Combine(dir["server"], "writ.db")), "the refused server created its store");

        var remote = await Proc.RunAsync("dotnet", [Repo.WritDll, "server", "run", "--trust-domain", "example.org", "--data-dir", dir["server2"],
            "--bind", "127.0.0.1:0", "--admin-socket", dir["b.sock"], "--metrics-bind", "0.0.0.0:9"], timeout: TimeSpan.FromMinutes(1));
        Expect.OneLineError(remote, "loopback");
    }
}
