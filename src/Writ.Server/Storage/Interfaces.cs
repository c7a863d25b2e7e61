using Writ.Protocol.Evidence;

namespace Writ.Server.Storage;

/// <summary>The server's database: one store per aggregate. Thread-safe; dispose once at shutdown.</summary>
public interface IWritStore : IAsyncDisposable
{
    /// <summary>"sqlite" or "postgres".</summary>
    string Kind { get; }
    IEntryStore Entries { get; }
    INodeStore Nodes { get; }
    IJoinTokenStore JoinTokens { get; }
    IBundleStore Bundles { get; }
    ICaJournalStore CaJournal { get; }
    ILedgerStore Ledger { get; }
    IPolicyStore Policies { get; }
    IRevocationStore Revocations { get; }
    IMetadataStore Metadata { get; }
    ITpmReferenceSetStore TpmReferenceSets { get; }
    ICiSessionStore CiSessions { get; }

    /// <summary>The servers sharing this store (issue #16, high availability): one row per server id, with a heartbeat.</summary>
    IServerStore Servers => throw new NotSupportedException("this store does not record servers");

    /// <summary>The pooled SVIDs agents hold for entries with an outage pool (issue #16 item 5).</summary>
    IPooledSvidStore PooledSvids => throw new NotSupportedException("this store does not record pooled SVIDs");

    /// <summary>Changes other servers on the same store must hear about at once (issue #16 fan-out): nodes, policy, bundle.</summary>
    /// <remarks>Wrappers that do not forward it (test fakes) get no cross-server signals.</remarks>
    IStoreSignals Signals => NoStoreSignals.Instance;

    /// <summary>Federation relationships with foreign trust domains (issue #16).</summary>
    IFederationStore Federations { get; }
}

/// <summary>A store without signals (one server): publishing does nothing and nobody else is heard.</summary>
public sealed class NoStoreSignals : IStoreSignals
{
    public static NoStoreSignals Instance { get; } = new();

    public Task PublishAsync(string kind, CancellationToken ct) => Task.CompletedTask;

    public IDisposable Subscribe(Action<string> onSignal) => new System.Threading.CancellationTokenRegistration();
}

/// <summary>
/// A best-effort broadcast between servers sharing one store (PostgreSQL NOTIFY; nothing on SQLite, which has one
/// server). Only a wake-up: the store stays the source of truth and every receiver re-reads it, so a lost signal only
/// delays a change until the next poll.
/// </summary>
public interface IStoreSignals
{
    /// <summary>Tells the other servers (not this one) that <paramref name="kind"/> changed. Never throws for a store outage.</summary>
    Task PublishAsync(string kind, CancellationToken ct);

    /// <summary>Calls <paramref name="onSignal"/> with the kind of every signal another server published, until disposed.</summary>
    IDisposable Subscribe(Action<string> onSignal);
}

/// <summary>
/// Facts about the data recorded once, at the first start, and checked at every later one (the trust domain the store
/// belongs to): a server configured otherwise is refused before it writes anything.
/// </summary>
public interface IMetadataStore
{
    Task<string?> GetAsync(string key, CancellationToken ct);

    /// <summary>
    /// Records <paramref name="value"/> unless the key has a value already; returns the value stored now (the existing
    /// one when another writer was first). Atomic across servers sharing the store.
    /// </summary>
    Task<string> SetIfAbsentAsync(string key, string value, CancellationToken ct);
}

public interface ICaJournalStore
{
    Task<CaJournal?> GetAsync(string name, CancellationToken ct);
    /// <summary>Creates or replaces the journal with this name.</summary>
    Task PutAsync(CaJournal journal, CancellationToken ct);

    /// <summary>Every journal (one per server sharing the store, issue #16), ordered by name.</summary>
    Task<IReadOnlyList<CaJournal>> ListAsync(CancellationToken ct);

    /// <summary>
    /// Renames journal <paramref name="from"/> to <paramref name="to"/> in one transaction: false (nothing changed) when
    /// <paramref name="from"/> is gone (another server renamed it first) or <paramref name="to"/> exists already.
    /// </summary>
    Task<bool> RenameAsync(string from, string to, CancellationToken ct);
}

public interface IBundleStore
{
    Task<StoredBundle?> GetAsync(string trustDomain, CancellationToken ct);
    /// <summary>Creates or replaces the bundle of this trust domain.</summary>
    Task PutAsync(StoredBundle bundle, CancellationToken ct);
    /// <summary>All bundles, ordered by trust domain.</summary>
    Task<IReadOnlyList<StoredBundle>> ListAsync(CancellationToken ct);

    /// <summary>
    /// Stores the bundle only if the stored one's sequence is still <paramref name="expectedSequence"/> (0: only if none is
    /// stored) — a compare-and-swap, so servers publishing at once never overwrite each other's keys. False: re-read and retry.
    /// </summary>
    Task<bool> PutIfSequenceAsync(StoredBundle bundle, long expectedSequence, CancellationToken ct);
}

/// <summary>The servers sharing the store (issue #16): who they are, where they listen, when they were last seen.</summary>
public interface IServerStore
{
    /// <summary>Records a server's start (creates its row or updates address, start and last-seen times).</summary>
    Task StartedAsync(ServerRecord server, CancellationToken ct);

    /// <summary>
    /// The server's heartbeat: last_seen = <paramref name="at"/> while the row still holds this process's boot nonce, and
    /// true. False when another process with the same id started after this one (or marked the row so): then the row is
    /// marked so that the other process's next heartbeat fails too, and last_seen is left alone.
    /// </summary>
    Task<bool> HeartbeatAsync(string serverId, string bootNonce, DateTimeOffset at, CancellationToken ct);

    /// <summary>Every server ever recorded (servers are not deleted automatically), ordered by id.</summary>
    Task<IReadOnlyList<ServerRecord>> ListAsync(CancellationToken ct);

    /// <summary>Replaces the CRLs this server publishes (one transaction: the rows of its authorities not listed are removed).</summary>
    Task PublishCrlsAsync(string serverId, IReadOnlyList<ServerCrl> crls, CancellationToken ct);

    /// <summary>Every server's published CRLs whose nextUpdate is after <paramref name="now"/>, ordered by server id and authority.</summary>
    Task<IReadOnlyList<ServerCrl>> ListCrlsAsync(DateTimeOffset now, CancellationToken ct);
}

public interface IEntryStore
{
    /// <summary>
    /// All or nothing, one transaction. Duplicate = same SpiffeId + ParentId + selector SET (order-insensitive) as an
    /// existing entry or another entry in the batch, or an id that already exists -> <see cref="StoreConflictException"/>
    /// naming it; nothing written. Ids given by the caller are kept; empty ids are assigned. An entry without selectors
    /// (it would match every workload) is refused with <see cref="ArgumentException"/>. All entries of one batch
    /// get the same new revision. Returns the entries as stored.
    /// </summary>
    /// <param name="audit">Ledger events appended in the same transaction (nothing is written when the create fails).</param>
    Task<IReadOnlyList<RegistrationEntry>> CreateAsync(IReadOnlyList<RegistrationEntry> entries, CancellationToken ct, IReadOnlyList<LedgerEvent>? audit = null);

    Task<RegistrationEntry?> GetAsync(string id, CancellationToken ct);

    /// <summary>Ordered by id (stable across pages); a token not made by this method -> <see cref="StoreException"/>.</summary>
    Task<EntryPage> ListAsync(EntryFilter filter, int pageSize, string? pageToken, CancellationToken ct);

    /// <summary>
    /// Replaces the entry with this id (CreatedAt kept, new revision). Absent -> <see cref="StoreNotFoundException"/>;
    /// duplicate of another entry, or a non-zero <see cref="RegistrationEntry.Revision"/> that is not the stored one
    /// -> <see cref="StoreConflictException"/>.
    /// </summary>
    /// <param name="audit">Ledger events appended in the same transaction.</param>
    Task<RegistrationEntry> UpdateAsync(RegistrationEntry entry, CancellationToken ct, IReadOnlyList<LedgerEvent>? audit = null);

    /// <summary>Absent -> <see cref="StoreNotFoundException"/>.</summary>
    /// <param name="audit">Ledger events appended in the same transaction.</param>
    Task DeleteAsync(string id, CancellationToken ct, IReadOnlyList<LedgerEvent>? audit = null);

    Task<long> CurrentRevisionAsync(CancellationToken ct);

    Task<long> CountAsync(CancellationToken ct);

    /// <summary>
    /// For the agent sync stream. since == 0 (or since beyond the store's revision, or before pruned deletions): full state, i.e. all live entries
    /// whose ParentId is in parentIds and no deletions (<see cref="EntryChanges.Full"/> = true).
    /// since &gt; 0: entries created/updated after since with ParentId in parentIds, and ids of entries deleted after
    /// since that were parented to one of parentIds (an update that moves an entry away from a parent counts as a
    /// deletion for that parent). Revision = the store revision the result is consistent with.
    /// </summary>
    Task<EntryChanges> ChangesSinceAsync(long since, IReadOnlyCollection<string> parentIds, CancellationToken ct);

    /// <summary>
    /// For the shared sync feed (one read per change for every agent): entries created or updated after
    /// <paramref name="since"/> (any parent) and deletions after it with their parents, in one consistent snapshot.
    /// since beyond the store's revision, or before pruned deletions: <see cref="AllEntryChanges.Full"/> with empty lists.
    /// </summary>
    Task<AllEntryChanges> AllChangesSinceAsync(long since, CancellationToken ct);

    /// <summary>
    /// Completes when the store revision is greater than <paramref name="revision"/>: at once after a commit in this
    /// process, within the poll interval for writers in other processes. Cancellation throws
    /// <see cref="OperationCanceledException"/>.
    /// </summary>
    Task WaitForChangeAsync(long revision, CancellationToken ct);

    /// <summary>
    /// Forgets deletions made before <paramref name="olderThan"/> (they are kept for <see cref="ChangesSinceAsync"/>).
    /// A later ChangesSince from a revision before the pruned ones answers with the full state instead of a delta.
    /// Returns how many tombstones were removed. Call it periodically, e.g. keeping a day of deletions.
    /// </summary>
    Task<int> PruneTombstonesAsync(DateTimeOffset olderThan, CancellationToken ct);
}

public interface INodeStore
{
    /// <summary>Sets CreatedAt and UpdatedAt. Exists -> <see cref="StoreConflictException"/>.</summary>
    Task CreateAsync(AttestedNode node, CancellationToken ct, IReadOnlyList<LedgerEvent>? audit = null);
    Task<AttestedNode?> GetAsync(string spiffeId, CancellationToken ct);
    /// <summary>All nodes, ordered by SPIFFE ID.</summary>
    Task<IReadOnlyList<AttestedNode>> ListAsync(CancellationToken ct);
    /// <summary>Replaces the node (CreatedAt kept, UpdatedAt set). Absent -> <see cref="StoreNotFoundException"/>.</summary>
    Task<AttestedNode> UpdateAsync(AttestedNode node, CancellationToken ct, IReadOnlyList<LedgerEvent>? audit = null);
    /// <summary>Absent -> <see cref="StoreNotFoundException"/>. The audit events (of every write method) are appended in the same transaction.</summary>
    Task DeleteAsync(string spiffeId, CancellationToken ct, IReadOnlyList<LedgerEvent>? audit = null);

    /// <summary>
    /// Node attestation's one write: burns <paramref name="burn"/> (when set) and stores the node in one transaction, so
    /// of two agents racing with the same single-use evidence exactly one is stored, and a refusal burns nothing. Only
    /// <see cref="NodeCreateOutcome.Created"/> changed anything. Sets CreatedAt and UpdatedAt.
    /// </summary>
    Task<NodeCreateOutcome> CreateAttestedAsync(AttestedNode node, SingleUseEvidence? burn, DateTimeOffset now, CancellationToken ct);

    /// <summary>
    /// A renewal's write, conditional in SQL: the serial becomes <paramref name="newSerial"/> only while the node exists,
    /// is not banned, still has <paramref name="expectedSerial"/> and that serial is not revoked. False (nothing written)
    /// otherwise, so a renewal in flight can never undo a ban, an eviction or a revocation of the agent's SVID, nor
    /// overwrite a renewal made meanwhile.
    /// </summary>
    Task<bool> TryRenewAsync(string spiffeId, string expectedSerial, string newSerial, DateTimeOffset expiresAt, CancellationToken ct);

    /// <summary>
    /// A re-attestation's write (a continuous attestor's node attested again with fresh evidence): serial, expiry,
    /// selectors, aliases and attestor state become <paramref name="node"/>'s only while the node exists, is not banned
    /// and is active. False (nothing written, no audit) otherwise, so a re-attestation never recreates an evicted node,
    /// undoes a ban or clears a drift.
    /// </summary>
    Task<bool> TryReattestAsync(AttestedNode node, CancellationToken ct, IReadOnlyList<LedgerEvent>? audit = null);

    /// <summary>
    /// Marks the node drifted with <paramref name="reason"/> while it exists, is active and (when given) still has
    /// <paramref name="expectedSerial"/>. False (nothing written, no audit) otherwise: a drift never recreates an evicted
    /// node, and a drift seen on an SVID the node has since replaced is dropped.
    /// </summary>
    Task<bool> TryMarkDriftedAsync(string spiffeId, string? expectedSerial, string reason, CancellationToken ct, IReadOnlyList<LedgerEvent>? audit = null);

    /// <summary>
    /// Readmits a drifted node (status active, reason cleared) while it exists, is drifted and is not banned. False
    /// (nothing written, no audit) otherwise: a readmit never undoes a ban.
    /// </summary>
    Task<bool> TryReadmitAsync(string spiffeId, CancellationToken ct, IReadOnlyList<LedgerEvent>? audit = null);

    /// <summary>
    /// A passed recheck's write: the node's selectors and attestor state, only while it exists, is active, is not banned
    /// and has <paramref name="expectedSerial"/>. False (nothing written) otherwise.
    /// </summary>
    Task<bool> TryUpdatePostureAsync(string spiffeId, string expectedSerial, IReadOnlyList<Selector> selectors, byte[]? attestorState, CancellationToken ct);
}

public interface IJoinTokenStore
{
    /// <summary>Same id or same secret hash as an existing token -> <see cref="StoreConflictException"/>.</summary>
    /// <param name="audit">Ledger events appended in the same transaction (never put the secret in them).</param>
    Task CreateAsync(JoinToken token, CancellationToken ct, IReadOnlyList<LedgerEvent>? audit = null);

    /// <summary>
    /// Atomic single use: of N concurrent calls with the same hash exactly one gets Consumed. Used tokens are kept
    /// (marked used) so a second use says AlreadyUsed, not Unknown. A token is expired when now &gt;= ExpiresAt.
    /// </summary>
    Task<JoinTokenConsumeResult> ConsumeAsync(byte[] secretHash, DateTimeOffset now, CancellationToken ct);

    /// <summary>
    /// Reads without consuming: <see cref="JoinTokenOutcome.Usable"/> when the token exists, is unexpired and unused
    /// (it is burnt later by <see cref="INodeStore.CreateAttestedAsync"/>), else why not.
    /// </summary>
    Task<JoinTokenConsumeResult> CheckAsync(byte[] secretHash, DateTimeOffset now, CancellationToken ct);

    /// <summary>Deletes tokens that expired, or were used, before <paramref name="olderThan"/>; returns how many.</summary>
    Task<int> PruneAsync(DateTimeOffset olderThan, CancellationToken ct);
}
