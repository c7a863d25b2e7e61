using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace Writ.Server.Telemetry;

/// <summary>Why an issuance was refused: the fixed label values of <c>writ.server.issuance.denials</c>.</summary>
public enum DenialReason
{
    /// <summary>The entry is unknown or not parented to the calling agent.</summary>
    EntryNotAuthorized,
    /// <summary>The agent's workload evidence, or the request itself (CSR), was refused before a decision.</summary>
    BadRequest,
    /// <summary>A per-agent or per-identity issuance rate limit.</summary>
    RateLimited,
    /// <summary>Entry match (expired entry, selector not in the evidence) or the Cedar policy said deny.</summary>
    Policy,
}

/// <summary>
/// The server's meter (<see cref="MeterName"/>) and activity source: every instrument of docs/telemetry.md § Server
/// metrics, recorded with one-line calls at the call sites. Label values come from fixed sets only (Cedar action names,
/// <see cref="DenialReason"/>, error codes): never a SPIFFE ID, entry id, serial or anything else unbounded.
/// </summary>
public sealed class WritServerMetrics
{
    public const string MeterName = "Writ.Server";

    /// <summary>Traces: one activity per agent API call (continuing the agent's <c>traceparent</c>) and one per issuance.</summary>
    public static readonly ActivitySource Activities = new(MeterName);

    private readonly Counter<long> _issued;
    private readonly Counter<long> _denied;
    private readonly Histogram<double> _issuanceDuration;
    private readonly Counter<long> _nodeAttestationFailures;
    private readonly Counter<long> _revocations;
    private readonly Histogram<double> _ledgerAppend;
    private readonly Histogram<double> _syncLag;
    private readonly Counter<long> _nodeDrifts;
    private readonly Counter<long> _nodeRechecks;
    private readonly Counter<long> _nodeRecheckErrors;

    /// <param name="factory">The host's meter factory; null for a part built outside a host (tests, benchmarks).</param>
    public WritServerMetrics(IMeterFactory? factory)
    {
        var meter = factory?.Create(MeterName) ?? new Meter(MeterName);
        _issued = meter.CreateCounter<long>("writ.server.issuances", "{credential}", "Credentials issued, by Cedar action.");
        _denied = meter.CreateCounter<long>("writ.server.issuance.denials", "{request}", "Issuance requests refused, by Cedar action and reason.");
        _issuanceDuration = meter.CreateHistogram<double>("writ.server.issuance.duration", "s",
            "Time of one issuance call through the pipeline (a batch of X.509 requests counts once), ledger write included.");
        _nodeAttestationFailures = meter.CreateCounter<long>("writ.server.node_attestation.failures", "{attempt}", "Node attestations refused, by attestor and reason.");
        _revocations = meter.CreateCounter<long>("writ.server.revocations", "{credential}", "Credentials revoked, by trigger.");
        _ledgerAppend = meter.CreateHistogram<double>("writ.server.ledger.append.duration", "s", "Time until an issuance's ledger records are durable (group commit included).");
        _syncLag = meter.CreateHistogram<double>("writ.server.sync.lag", "s",
            "Per push to an agent: time from the change that woke its sync stream to the update being written (one value per push, no per-agent label).");
        _nodeDrifts = meter.CreateCounter<long>("writ.server.node.drifts", "{node}", "Nodes marked drifted by continuous attestation, by attestation type and drift code.");
        _nodeRechecks = meter.CreateCounter<long>("writ.server.node.rechecks", "{recheck}", "Rechecks sent to nodes of a continuous attestation type, by type.");
        _nodeRecheckErrors = meter.CreateCounter<long>("writ.server.node.recheck.errors", "{recheck}",
            "Recheck answers the server failed to appraise (an attestor bug or timeout; the node is not marked drifted), by type.");
    }

    /// <summary>A part built outside a host: instruments nobody listens to unless a listener asks for <see cref="MeterName"/>.</summary>
    public static WritServerMetrics Unhosted { get; } = new(null);

    public void Issued(string action, int count = 1) => _issued.Add(count, new KeyValuePair<string, object?>("action", action));

    public void Denied(string action, DenialReason reason) =>
        _denied.Add(1, new KeyValuePair<string, object?>("action", action), new KeyValuePair<string, object?>("reason", ReasonLabel(reason)));

    /// <summary>Records the time since <paramref name="startTimestamp"/> (<see cref="Stopwatch.GetTimestamp"/>).</summary>
    public void IssuanceTook(string action, long startTimestamp) =>
        _issuanceDuration.Record(Stopwatch.GetElapsedTime(startTimestamp).TotalSeconds, new KeyValuePair<string, object?>("action", action));

    /// <param name="reason">the refusal's stable code without its area (NodeAttestationService.ReasonLabel): token_used, denied, timeout…</param>
    public void NodeAttestationFailed(string attestor, string reason) =>
        _nodeAttestationFailures.Add(1, new KeyValuePair<string, object?>("attestor", attestor), new KeyValuePair<string, object?>("reason", reason));

    /// <param name="trigger">admin or instance_gone.</param>
    public void Revoked(int count, string trigger) => _revocations.Add(count, new KeyValuePair<string, object?>("trigger", trigger));

    public void LedgerAppendTook(long startTimestamp) => _ledgerAppend.Record(Stopwatch.GetElapsedTime(startTimestamp).TotalSeconds);

    public void SyncPushed(TimeSpan lag) => _syncLag.Record(lag.TotalSeconds);

    /// <param name="type">the node's attestation type; <paramref name="code"/> the drift's stable code (a fixed set per attestor).</param>
    public void NodeDrifted(string type, string code) =>
        _nodeDrifts.Add(1, new KeyValuePair<string, object?>("type", type), new KeyValuePair<string, object?>("code", code));

    public void NodeRecheckSent(string type) => _nodeRechecks.Add(1, new KeyValuePair<string, object?>("type", type));

    public void NodeRecheckFailed(string type) => _nodeRecheckErrors.Add(1, new KeyValuePair<string, object?>("type", type));

    private static string ReasonLabel(DenialReason reason) => reason switch
    {
        DenialReason.EntryNotAuthorized => "entry_not_authorized",
        DenialReason.BadRequest => "bad_request",
        DenialReason.RateLimited => "rate_limited",
        _ => "policy",
    };
}
