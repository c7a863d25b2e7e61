using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace Writ.Agent.Telemetry;

/// <summary>
/// The agent's meter (<see cref="MeterName"/>) and activity source: every instrument of docs/telemetry.md § Agent
/// metrics. Label values come from fixed sets only (gRPC method names of the Workload API, status code names, attestation
/// failure reasons): never a pid, uid, SPIFFE ID or instance id.
/// </summary>
public sealed class WritAgentMetrics
{
    public const string MeterName = "Writ.Agent";

    /// <summary>Traces: one activity per Workload API call; its context travels to the server on the calls it makes.</summary>
    public static readonly ActivitySource Activities = new(MeterName);

    private readonly Counter<long> _calls;
    private readonly Counter<long> _attestationFailures;
    private readonly Counter<long> _authzDecisions;
    private readonly Histogram<double> _authzDuration;
    private readonly Counter<long> _serverFailovers;
    private Func<string?> _server = () => null;
    private Func<int> _instances = () => 0;
    private Func<int> _x509 = () => 0;
    private Func<int> _jwt = () => 0;
    private Func<bool> _synced = () => false;
    private Func<int> _poolSize = () => 0;
    private Func<long> _poolHandouts = () => 0;

    /// <param name="factory">The host's meter factory; null for a part built outside a host (tests, benchmarks).</param>
    public WritAgentMetrics(IMeterFactory? factory)
    {
        var meter = factory?.Create(MeterName) ?? new Meter(MeterName);
        _calls = meter.CreateCounter<long>("writ.agent.workload_api.calls", "{call}", "Workload API calls finished, by gRPC method and status code.");
        _attestationFailures = meter.CreateCounter<long>("writ.agent.workload_attestation.failures", "{failure}", "Workload attestation failures, by reason.");
        _authzDecisions = meter.CreateCounter<long>("writ.agent.authz.decisions", "{decision}", "Request-time call decisions (ext_authz, relying-party Authorize), by decision (allow, deny) and denial code.");
        _authzDuration = meter.CreateHistogram<double>("writ.agent.authz.duration", "s", "Time to decide one call (identify the caller, live state, Cedar), in seconds.");
        meter.CreateObservableGauge("writ.agent.instances", () => _instances(), "{instance}", "Workload instances the agent serves and re-checks.");
        meter.CreateObservableGauge("writ.agent.svid_cache.size", () => new Measurement<int>[]
        {
            new(_x509(), new KeyValuePair<string, object?>("kind", "x509")),
            new(_jwt(), new KeyValuePair<string, object?>("kind", "jwt")),
        }, "{svid}", "SVIDs held in the agent's cache, by kind.");
        _serverFailovers = meter.CreateCounter<long>("writ.agent.server.failovers", "{failover}", "Times the agent moved to another server after a server failure.");
        meter.CreateObservableGauge("writ.agent.server.current", () => _server() is { } s
            ? new[] { new Measurement<int>(1, new KeyValuePair<string, object?>("server", s)) }
            : [], "{server}", "1, labelled with the server endpoint (HOST:PORT) the agent's calls go to now.");
        meter.CreateObservableGauge("writ.agent.outage_pool.size", () => _poolSize(), "{svid}", "Pre-signed X.509-SVIDs held in the outage pools of all entries (issue #16 item 5).");
        meter.CreateObservableCounter("writ.agent.outage_pool.handouts", () => _poolHandouts(), "{svid}", "Pooled X.509-SVIDs handed to new instances while no server was reachable.");
        meter.CreateObservableGauge("writ.agent.synced", () => _synced() ? 1 : 0, "{bool}", "1 once the agent has applied a full sync from the server, else 0.");
    }

    /// <summary>A part built outside a host: instruments nobody listens to unless a listener asks for <see cref="MeterName"/>.</summary>
    public static WritAgentMetrics Unhosted { get; } = new(null);

    /// <summary>Where the gauges read from (set once by the host).</summary>
    public void Observe(Func<int> instances, Func<int> x509Svids, Func<int> jwtSvids, Func<bool> synced)
    {
        _instances = instances;
        _x509 = x509Svids;
        _jwt = jwtSvids;
        _synced = synced;
    }

    /// <summary>Where the outage pool's gauge and handout counter read from (set once by the host).</summary>
    public void ObserveOutagePool(Func<int> size, Func<long> handouts)
    {
        _poolSize = size;
        _poolHandouts = handouts;
    }

    /// <summary>Where the current-server gauge reads from (set once by the host).</summary>
    public void ObserveServer(Func<string?> current) => _server = current;

    /// <summary>The agent moved to another server.</summary>
    public void ServerFailover() => _serverFailovers.Add(1);

    /// <param name="method">the gRPC method's short name (e.g. FetchX509SVID)</param>
    /// <param name="code">the status code's name (OK, PERMISSION_DENIED, …)</param>
    public void CallFinished(string method, string code) =>
        _calls.Add(1, new KeyValuePair<string, object?>("method", method), new KeyValuePair<string, object?>("code", code));

    /// <param name="reason">pin_failed, process_changed, timeout or attestor_error.</param>
    public void AttestationFailed(string reason) => _attestationFailures.Add(1, new KeyValuePair<string, object?>("reason", reason));

    /// <param name="code">the denial's stable code (WRIT-AUTHZ-…), empty for an allow</param>
    public void CallDecided(bool allowed, string code, TimeSpan elapsed)
    {
        var decision = new KeyValuePair<string, object?>("decision", allowed ? "allow" : "deny");
        _authzDecisions.Add(1, decision, new KeyValuePair<string, object?>("code", code));
        _authzDuration.Record(elapsed.TotalSeconds, decision);
    }
}
