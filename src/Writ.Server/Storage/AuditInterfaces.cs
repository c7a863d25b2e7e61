namespace Writ.Server.Storage;

/// <summary>The append-only, hash-chained ledger (issue #5).</summary>
public interface ILedgerStore
{
    /// <summary>
    /// Appends the events in order, chained to the current head, and records the issued credentials, all in one
    /// transaction: when this returns the records are durable. Returns the events as stored (Seq, PrevHash, Hash set).
    /// </summary>
    Task<IReadOnlyList<LedgerEvent>> AppendAsync(IReadOnlyList<LedgerEvent> events, IReadOnlyList<IssuedCredential> issued, CancellationToken ct);

    /// <summary>Events with Seq &gt; afterSeq in Seq order, at most limit; kindPrefix/subject filter when not null.</summary>
    Task<IReadOnlyList<LedgerEvent>> ListAsync(long afterSeq, int limit, string? kindPrefix, string? subject, CancellationToken ct);

    /// <summary>
    /// Like <see cref="ListAsync"/>, but the page also stops before the record that would take the records' data past
    /// <paramref name="maxDataBytes"/> characters (the first record is always included): a page of huge records stays
    /// small, and only the records returned are read from the database.
    /// </summary>
    Task<IReadOnlyList<LedgerEvent>> ListPageAsync(long afterSeq, int limit, long maxDataBytes, string? kindPrefix, string? subject, CancellationToken ct);

    Task<LedgerEvent?> GetAsync(long seq, CancellationToken ct);

    /// <summary>The event that recorded this decision (issued or denied), or null.</summary>
    Task<LedgerEvent?> GetByDecisionAsync(string decisionId, CancellationToken ct);

    /// <summary>The newest events that carry a decision id (issuance decisions), newest first, at most limit.</summary>
    Task<IReadOnlyList<LedgerEvent>> RecentDecisionsAsync(int limit, CancellationToken ct);

    /// <summary>The ledger head (the last record's seq and hash, as the store keeps it beside the records); seq 0 and the genesis hash when empty.</summary>
    Task<LedgerHead> HeadAsync(CancellationToken ct);

    /// <summary>Issued credentials matching the filter, ordered by issue time.</summary>
    Task<IReadOnlyList<IssuedCredential>> IssuedAsync(IssuedFilter filter, DateTimeOffset now, CancellationToken ct);
}

/// <summary>Versioned policy sets (issue #5).</summary>
public interface IPolicyStore
{
    /// <summary>The active (highest) version, or null before the first push.</summary>
    Task<StoredPolicyVersion?> ActiveAsync(CancellationToken ct);

    Task<StoredPolicyVersion?> GetAsync(long version, CancellationToken ct);

    /// <summary>All versions, newest first (Files included).</summary>
    Task<IReadOnlyList<StoredPolicyVersion>> ListAsync(CancellationToken ct);

    /// <summary>
    /// Stores a new version (Version and CreatedAt assigned) which becomes the active one, and appends the audit
    /// events in the same transaction. When <paramref name="expectedActive"/> is not null and the active version is
    /// another one -> <see cref="StoreConflictException"/> (someone pushed meanwhile). "{version}" in an audit event's
    /// Subject, and the data member <c>"version":"{version}"</c>, are replaced by the new version number.
    /// </summary>
    Task<StoredPolicyVersion> PushAsync(StoredPolicyVersion version, long? expectedActive, IReadOnlyList<LedgerEvent> audit, CancellationToken ct);
}

/// <summary>Revoked credentials (issue #6).</summary>
public interface IRevocationStore
{
    /// <summary>
    /// Records revocations (a credential already revoked is left as it was) and the audit events in one transaction,
    /// bumping the store revision so agent Sync streams wake. Returns the records newly revoked, with Revision.
    /// </summary>
    Task<IReadOnlyList<RevocationRecord>> RevokeAsync(IReadOnlyList<RevocationRecord> revocations, IReadOnlyList<LedgerEvent> audit, CancellationToken ct);

    /// <summary>Revocations not yet expired at now (all when includeExpired), ordered by revision.</summary>
    Task<IReadOnlyList<RevocationRecord>> ListAsync(DateTimeOffset now, bool includeExpired, CancellationToken ct);

    /// <summary>Revocations made after this store revision, ordered by revision.</summary>
    Task<IReadOnlyList<RevocationRecord>> SinceAsync(long revision, CancellationToken ct);

    /// <summary>Forgets revocations of credentials that expired before olderThan; returns how many.</summary>
    Task<int> PruneAsync(DateTimeOffset olderThan, CancellationToken ct);
}
