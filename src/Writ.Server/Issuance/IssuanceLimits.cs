using Writ.Server.Configuration;

namespace Writ.Server.Issuance;

/// <summary>
/// Per-agent and per-workload rate limits on issuance and on the refusals recorded in the ledger (issue #12 item 7).
/// A workload is a registration entry served by one agent (all its replicas on that node share one budget, so forking
/// new processes does not buy a new one). A refusal over the recording budget is not written but counted: the next
/// refusal recorded for that workload says how many were left out (<c>suppressed_denials</c>); the counts no later record
/// carried are written as one <c>denials.suppressed</c> record per agent once its one-minute window has closed (issue #13
/// item 9d), so a flood costs the ledger at most the agent's budget plus one summary a minute and no count is lost.
/// X.509 and JWT issuance have separate budgets (each at the configured rates), so a workload that floods JWT requests
/// (which, with fresh audiences, reach the server past the agent's cache) cannot starve the X.509 renewals of its own
/// replicas or of the other workloads on its agent.
/// </summary>
/// <remarks>
/// Not System.Threading.RateLimiting: its token buckets replenish on their own timer and cannot take a
/// <see cref="TimeProvider"/>, so tests could not drive them deterministically. These buckets refill lazily from the
/// injected clock when they are asked.
/// </remarks>
public sealed class IssuanceLimits(LedgerOptions options, TimeProvider time)
{
    private readonly KeyedTokenBuckets _x509Agent = new(options.IssuancePerAgent, time);
    private readonly KeyedTokenBuckets _x509Workload = new(options.IssuancePerWorkload, time);
    private readonly KeyedTokenBuckets _jwtAgent = new(options.IssuancePerAgent, time);
    private readonly KeyedTokenBuckets _jwtWorkload = new(options.IssuancePerWorkload, time);
    private readonly KeyedTokenBuckets _denyAgent = new(options.DenialsPerAgent, time);
    private readonly KeyedTokenBuckets _denyWorkload = new(options.DenialsPerWorkload, time);
    private readonly Lock _lock = new();
    private readonly Dictionary<string, SuppressedDenials> _suppressed = new(StringComparer.Ordinal);
    private DateTimeOffset _nextSummary = DateTimeOffset.MaxValue;

    private sealed class SuppressedDenials(DateTimeOffset since)
    {
        public DateTimeOffset Since { get; } = since;
        public DateTimeOffset Last { get; set; } = since;
        public long Total { get; set; }
        public long Unattributed { get; set; }
        public Dictionary<string, long> ByEntry { get; } = new(StringComparer.Ordinal);
    }

    public LedgerOptions Options => options;

    /// <summary>Takes one X.509-SVID from the agent's and the workload's X.509 budget; null when allowed, else which budget is spent.</summary>
    public string? TryIssueX509(string agentId, string entryId) => TryIssue(_x509Workload, _x509Agent, agentId, entryId);

    /// <summary>Takes one JWT-SVID from the agent's and the workload's JWT budget (apart from X.509); null when allowed, else which budget is spent.</summary>
    public string? TryIssueJwt(string agentId, string entryId) => TryIssue(_jwtWorkload, _jwtAgent, agentId, entryId);

    private static string? TryIssue(KeyedTokenBuckets workload, KeyedTokenBuckets agent, string agentId, string entryId)
    {
        if (!workload.TryTake(Workload(agentId, entryId)))
            return "workload";
        if (!agent.TryTake(agentId))
        {
            workload.Return(Workload(agentId, entryId));
            return "agent";
        }
        return null;
    }

    /// <summary>
    /// Whether a refusal for this workload is recorded. When true, <paramref name="suppressed"/> is how many refusals of
    /// this workload were not recorded since the last one that was (the record carries that count, and the summary of
    /// the agent no longer does); when false the refusal is counted for the agent's <c>denials.suppressed</c> summary
    /// and <paramref name="suppressed"/> is this workload's count so far.
    /// </summary>
    public bool TryRecordDenial(string agentId, string entryId, out long suppressed)
    {
        var key = Workload(agentId, entryId);
        var ok = _denyWorkload.TryTake(key);
        if (ok && !_denyAgent.TryTake(agentId))
        {
            _denyWorkload.Return(key);
            ok = false;
        }
        lock (_lock)
        {
            _suppressed.TryGetValue(agentId, out var agent);
            if (ok)
            {
                suppressed = 0;
                if (agent is not null && agent.ByEntry.Remove(entryId, out suppressed))
                {
                    agent.Total -= suppressed;
                    if (agent.Total == 0)
                        _suppressed.Remove(agentId);
                }
                return true;
            }
            if (agent is null)
            {
                _suppressed[agentId] = agent = new SuppressedDenials(time.GetUtcNow());
                if (agent.Since + SummaryWindow < _nextSummary)
                    _nextSummary = agent.Since + SummaryWindow;
            }
            agent.Total++;
            agent.Last = time.GetUtcNow();
            // Bounded memory per agent: past MaxSummaryEntries workloads, the rest count in the total only.
            if (agent.ByEntry.Count < MaxSummaryEntries || agent.ByEntry.ContainsKey(entryId))
            {
                suppressed = agent.ByEntry[entryId] = agent.ByEntry.GetValueOrDefault(entryId) + 1;
            }
            else
            {
                agent.Unattributed++;
                suppressed = agent.Unattributed;
            }
            return false;
        }
    }

    /// <summary>
    /// The summaries of refusals left out of the ledger whose window (one minute from the first one left out) has closed,
    /// taken (each count is handed out once); all of them when <paramref name="all"/> (shutdown). Agents are attested
    /// nodes, so the per-agent state is bounded by the nodes the server knows.
    /// </summary>
    public IReadOnlyList<SuppressedSummary> TakeSuppressedSummaries(bool all = false)
    {
        var now = time.GetUtcNow();
        lock (_lock)
        {
            if (_suppressed.Count == 0 || (!all && now < _nextSummary))
                return [];
            var due = new List<SuppressedSummary>();
            var next = DateTimeOffset.MaxValue;
            foreach (var (agentId, a) in _suppressed.ToList())
            {
                if (all || a.Since + SummaryWindow <= now)
                {
                    _suppressed.Remove(agentId);
                    if (a.Total > 0)
                        due.Add(new SuppressedSummary(agentId, a.Total, a.ByEntry.Where(e => e.Value > 0).OrderByDescending(e => e.Value).ThenBy(e => e.Key, StringComparer.Ordinal).ToList(), a.Since, a.Last));
                }
                else if (a.Since + SummaryWindow < next)
                {
                    next = a.Since + SummaryWindow;
                }
            }
            _nextSummary = next;
            return due;
        }
    }

    /// <summary>Puts taken summaries back (their ledger write failed): they are handed out again with the next ones.</summary>
    public void ReturnSuppressedSummaries(IReadOnlyList<SuppressedSummary> summaries)
    {
        lock (_lock)
        {
            foreach (var r in summaries)
            {
                if (!_suppressed.TryGetValue(r.AgentId, out var a))
                    _suppressed[r.AgentId] = a = new SuppressedDenials(r.First);
                a.Total += r.Count;
                a.Unattributed += r.Count - r.ByEntry.Sum(e => e.Value);
                foreach (var (entry, n) in r.ByEntry)
                    a.ByEntry[entry] = a.ByEntry.GetValueOrDefault(entry) + n;
                if (r.Last > a.Last)
                    a.Last = r.Last;
                if (a.Since + SummaryWindow < _nextSummary)
                    _nextSummary = a.Since + SummaryWindow;
            }
        }
    }

    /// <summary>A <c>denials.suppressed</c> summary closes this long after the first refusal it counts.</summary>
    public static readonly TimeSpan SummaryWindow = TimeSpan.FromMinutes(1);

    /// <summary>Workloads counted one by one in an agent's summary; the rest count in its total only.</summary>
    public const int MaxSummaryEntries = 1000;

    /// <summary>The one-line refusal for a spent budget ("workload" or "agent").</summary>
    public static string RateLimitedReason(string scope, string agentId, string spiffeId) => scope == "agent"
        ? $"agent {agentId} reached its issuance rate limit (issuance.rate_per_agent per minute): retry later"
        : $"{spiffeId} on agent {agentId} reached its issuance rate limit (issuance.rate_per_workload per minute): retry later";

    private static string Workload(string agentId, string entryId) => agentId + "|" + entryId;
}

/// <summary>
/// Refusals of one agent left out of the ledger in one window: how many in all, how many per registration entry (those
/// whose count no later record of theirs carried), and when the first and the last were.
/// </summary>
public sealed record SuppressedSummary(string AgentId, long Count, IReadOnlyList<KeyValuePair<string, long>> ByEntry, DateTimeOffset First, DateTimeOffset Last);

/// <summary>An issuance over a rate limit (gRPC ResourceExhausted): the message says which limit and to retry later.</summary>
public sealed class IssuanceRateLimitedException(string message)
    : Writ.Protocol.Errors.WritException(IssuanceErrors.RateLimited, Writ.Protocol.Errors.WritErrorKind.ResourceExhausted, message);

/// <summary>Token buckets by key: each holds at most one minute's worth (<c>perMinute</c>) and refills continuously.</summary>
internal sealed class KeyedTokenBuckets(int perMinute, TimeProvider time)
{
    /// <summary>Buckets kept at most; full (idle) ones are dropped first when there are more.</summary>
    public const int MaxKeys = 100_000;

    private readonly Lock _lock = new();
    private readonly Dictionary<string, Bucket> _buckets = new(StringComparer.Ordinal);

    private sealed class Bucket
    {
        public double Tokens;
        public long At;
    }

    public bool TryTake(string key)
    {
        if (perMinute <= 0)
            return true;
        var now = time.GetTimestamp();
        lock (_lock)
        {
            if (!_buckets.TryGetValue(key, out var b))
            {
                if (_buckets.Count >= MaxKeys)
                    Prune(now);
                _buckets[key] = b = new Bucket { Tokens = perMinute, At = now };
            }
            Refill(b, now);
            if (b.Tokens < 1)
                return false;
            b.Tokens -= 1;
            return true;
        }
    }

    /// <summary>Gives back a token taken by <see cref="TryTake"/> (the other budget refused the request).</summary>
    public void Return(string key)
    {
        if (perMinute <= 0)
            return;
        lock (_lock)
        {
            if (_buckets.TryGetValue(key, out var b))
                b.Tokens = Math.Min(perMinute, b.Tokens + 1);
        }
    }

    private void Refill(Bucket b, long now)
    {
        var seconds = time.GetElapsedTime(b.At, now).TotalSeconds;
        if (seconds > 0)
        {
            b.Tokens = Math.Min(perMinute, b.Tokens + seconds * perMinute / 60.0);
            b.At = now;
        }
    }

    private void Prune(long now)
    {
        foreach (var (k, b) in _buckets.ToList())
        {
            Refill(b, now);
            if (b.Tokens >= perMinute)
                _buckets.Remove(k);
        }
        if (_buckets.Count >= MaxKeys)
            _buckets.Clear();   // every bucket busy: start over rather than grow without bound
    }
}
