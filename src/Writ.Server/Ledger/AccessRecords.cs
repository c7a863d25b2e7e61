using System.Globalization;
using System.Text.Json.Nodes;
using Writ.Authz;
using Writ.Protocol.Agent;
using Writ.Server.Policy;
using Writ.Server.Storage;

namespace Writ.Server.Ledger;

/// <summary>
/// The ledger records of request-time decisions (<c>Writ::Action::"call"</c>) that agents report: <c>access.denied</c>,
/// <c>access.allowed</c> (a sample), and <c>access.suppressed</c> (what was counted instead of written). Each decision
/// record holds the Cedar request and entities rebuilt by <see cref="CallCedar.Query"/> from the reported facts, so
/// <c>writ explain</c> and <c>writ policy whatif</c> replay it like an issuance decision.
/// </summary>
public static class AccessRecords
{
    public const string Denied = "access.denied";
    public const string Allowed = "access.allowed";
    public const string Suppressed = "access.suppressed";

    /// <summary>The agent's code of a denial Cedar made (no permit, or a forbid); other codes are refusals before Cedar was asked.</summary>
    public const string PolicyDenialCode = "WRIT-AUTHZ-DENIED";

    /// <summary>
    /// "policy" when Cedar decided (an allow, a denial with determining policies or <see cref="PolicyDenialCode"/>):
    /// what-if replays those. "live" when the caller was refused before Cedar (revoked credential, instance gone or
    /// drifted, no resource): a candidate policy cannot change that.
    /// </summary>
    public static string Stage(AccessDecision d)
    {
        ArgumentNullException.ThrowIfNull(d);
        return d.Allowed || d.DeterminingPolicies.Count > 0 || d.Code is "" or PolicyDenialCode ? "policy" : "live";
    }

    /// <summary>
    /// One decision as a ledger record. Actor and <c>reported_by</c> are the authenticated agent that reported it — never
    /// what the report says about agents; subject = the resource (destination).
    /// </summary>
    public static LedgerEvent Decision(string reportedBy, AccessDecision d, DateTimeOffset at)
    {
        ArgumentNullException.ThrowIfNull(d);
        var f = d.Facts;
        var (request, entities) = CallCedar.Query(f);
        var headers = new JsonObject();
        foreach (var (k, v) in f.Headers.OrderBy(h => h.Key, StringComparer.Ordinal))
            headers[k] = v;
        var data = new JsonObject
        {
            ["caller"] = f.CallerSpiffeId,
            ["caller_agent_id"] = f.CallerAgentId,
            ["caller_instance_id"] = f.CallerInstanceId,
            ["caller_jti"] = f.CallerJti,
            ["caller_local"] = f.CallerLocal,
            ["caller_serial"] = f.CallerSerialHex,
            ["code"] = d.Code,
            ["credential"] = f.Credential,
            ["decided_at"] = DateTimeOffset.FromUnixTimeMilliseconds(d.DecidedAtUnixMs).ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture),
            ["decision"] = d.Allowed ? "allow" : "deny",
            ["determining_policies"] = new JsonArray([.. d.DeterminingPolicies.Select(x => (JsonNode)x)]),
            ["entities"] = WritCedar.EntitiesJson(entities),
            ["headers"] = headers,
            ["host"] = f.Host,
            ["kind"] = "call",
            ["method"] = f.Method,
            ["path"] = f.Path,
            ["policy_version"] = d.PolicyVersion,
            ["reason"] = d.Reason,
            ["reported_by"] = reportedBy,
            ["request"] = WritCedar.RequestJson(request),
            ["resource"] = f.ResourceSpiffeId,
            ["stage"] = Stage(d),
            ["surface"] = d.Surface,
        };
        return new LedgerEvent
        {
            At = at,
            Kind = d.Allowed ? Allowed : Denied,
            Actor = reportedBy,
            Subject = f.ResourceSpiffeId,
            DecisionId = d.DecisionId,
            DataJson = WritCedar.Canonical(data),
        };
    }

    /// <summary>access.suppressed: decisions of one agent counted instead of written (over the per-minute limit, or dropped by the agent).</summary>
    public static LedgerEvent Summary(string reportedBy, long overLimit, long dropped, DateTimeOffset at) => new()
    {
        At = at,
        Kind = Suppressed,
        Actor = LedgerEvents.ServerActor,
        Subject = reportedBy,
        DataJson = WritCedar.Canonical(new JsonObject
        {
            ["agent"] = reportedBy,
            ["dropped"] = dropped,
            ["over_limit"] = overLimit,
        }),
    };
}

/// <summary>
/// The flood limit of access records, per reporting agent: at most <c>perMinute</c> records a minute (decisions and
/// summaries together). Decisions over it, and the ones the agent reports it dropped, are counted; the count is written
/// as one <c>access.suppressed</c> record as soon as the agent's budget has room again. Every reported decision is in a
/// record or in a count. Reports are recorded one at a time (<see cref="Serial"/>), so a decision id already in the
/// ledger is seen before it is appended again.
/// </summary>
public sealed class AccessWindows(int perMinute)
{
    public const int MaxKeys = 100_000;

    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, Window> _windows = new(StringComparer.Ordinal);

    private sealed class Window
    {
        public long Minute = long.MinValue;
        public int Recorded;
        public long OverLimit;
        public long Dropped;
    }

    /// <summary>What one report may write: the first <see cref="Admitted"/> decisions, and a summary of earlier counts when <see cref="Summary"/>.</summary>
    public readonly record struct Grant(int Admitted, bool Summary, long OverLimit, long Dropped);

    public int PerMinute => perMinute;

    /// <summary>Held while one report is checked against the ledger and appended.</summary>
    public SemaphoreSlim Serial { get; } = new(1, 1);

    public Grant Admit(string agent, DateTimeOffset now, int decisions, long dropped)
    {
        ArgumentNullException.ThrowIfNull(agent);
        if (_windows.Count >= MaxKeys && !_windows.ContainsKey(agent))
            _windows.Clear();
        var w = _windows.GetOrAdd(agent, _ => new Window());
        lock (w)
        {
            var minute = now.ToUnixTimeSeconds() / 60;
            if (minute != w.Minute)
            {
                w.Minute = minute;
                w.Recorded = 0;
            }
            w.Dropped += dropped;
            var summary = (w.OverLimit > 0 || w.Dropped > 0) && w.Recorded < perMinute;
            long over = 0, lost = 0;
            if (summary)
            {
                w.Recorded++;
                (over, lost) = (w.OverLimit, w.Dropped);
                (w.OverLimit, w.Dropped) = (0, 0);
            }
            var admitted = Math.Min(decisions, perMinute - w.Recorded);
            w.Recorded += admitted;
            w.OverLimit += decisions - admitted;
            return new Grant(admitted, summary, over, lost);
        }
    }
}
