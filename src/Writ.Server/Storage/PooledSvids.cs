namespace Writ.Server.Storage;

/// <summary>
/// A pre-signed X.509-SVID an agent holds in its outage pool (issue #16 item 5): issued to the agent for an entry, not
/// yet bound to an instance. <see cref="UsedAt"/> is set when the agent reports it handed the SVID to one instance.
/// </summary>
public sealed record PooledSvid(string Serial, string EntryId, string AgentId, DateTimeOffset IssuedAt, DateTimeOffset ExpiresAt,
    DateTimeOffset? UsedAt = null, string? UsedInstance = null);

/// <summary>The outcome of recording a handout: newly marked (with its ledger record), already marked before, or unknown.</summary>
public enum PooledUseOutcome
{
    Marked,
    AlreadyMarked,
    Unknown,
}

/// <summary>The pooled SVIDs each agent holds (issue #16 item 5), so the server can bound every agent's pool from the store.</summary>
public interface IPooledSvidStore
{
    /// <summary>
    /// Records <paramref name="svids"/> (all of one agent and entry) unless the agent would then hold more unexpired,
    /// unreported, unrevoked pooled SVIDs of the entry than the entry's current outage_pool: read and written in one transaction
    /// that locks the entry row, so racing requests cannot overshoot. Returns null when written, else how many the agent
    /// holds and the entry's pool size (nothing written).
    /// </summary>
    Task<(int Held, int Pool)?> TryAddAsync(IReadOnlyList<PooledSvid> svids, DateTimeOffset now, CancellationToken ct);

    Task<PooledSvid?> GetAsync(string serial, CancellationToken ct);

    /// <summary>Marks a pooled SVID used by an instance and appends <paramref name="audit"/> in the same transaction; idempotent by serial.</summary>
    Task<PooledUseOutcome> MarkUsedAsync(string serial, string agentId, string instance, DateTimeOffset at, IReadOnlyList<LedgerEvent> audit, CancellationToken ct);
}
