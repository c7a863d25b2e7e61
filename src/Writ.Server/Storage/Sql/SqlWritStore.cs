using System.Globalization;

namespace Writ.Server.Storage.Sql;

/// <summary>The store over a SQL dialect: migrates at open, then hands out the per-aggregate stores.</summary>
internal sealed class SqlWritStore : IWritStore
{
    private readonly Db _db;
    private readonly RevisionWatcher _watcher;
    private int _disposed;

    private SqlWritStore(Db db, RevisionWatcher watcher, TimeProvider time)
    {
        _db = db;
        _watcher = watcher;
        Entries = new SqlEntryStore(db, time, watcher);
        Nodes = new SqlNodeStore(db, time);
        JoinTokens = new SqlJoinTokenStore(db, time);
        Bundles = new SqlBundleStore(db);
        CaJournal = new SqlCaJournalStore(db);
        Ledger = new SqlLedgerStore(db, time);
        Policies = new SqlPolicyStore(db, time);
        Revocations = new SqlRevocationStore(db, time, watcher);
        Metadata = new SqlMetadataStore(db);
        TpmReferenceSets = new SqlTpmReferenceSetStore(db, time);
        CiSessions = new SqlCiSessionStore(db, time);
        Servers = new SqlServerStore(db);
        PooledSvids = new SqlPooledSvidStore(db, time);
        Signals = new SqlStoreSignals(db, watcher);
        Federations = new SqlFederationStore(db, time, watcher);
    }

    public string Kind => _db.Dialect.Kind;
    public IEntryStore Entries { get; }
    public INodeStore Nodes { get; }
    public IJoinTokenStore JoinTokens { get; }
    public IBundleStore Bundles { get; }
    public ICaJournalStore CaJournal { get; }
    public ILedgerStore Ledger { get; }
    public IPolicyStore Policies { get; }
    public IRevocationStore Revocations { get; }
    public IMetadataStore Metadata { get; }
    public ITpmReferenceSetStore TpmReferenceSets { get; }
    public ICiSessionStore CiSessions { get; }
    public IServerStore Servers { get; }
    public IPooledSvidStore PooledSvids { get; }
    public IStoreSignals Signals { get; }
    public IFederationStore Federations { get; }

    public static async Task<IWritStore> OpenAsync(SqlDialect dialect, TimeProvider time, WritStoreOptions options, CancellationToken ct)
    {
        var db = new Db(dialect);
        var latest = dialect.Migrations.Count;
        try
        {
            await dialect.PrepareAsync(latest, ct).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not StoreException && dialect.IsDriverException(e))
        {
            ct.ThrowIfCancellationRequested();
            throw dialect.Translate(e, "open");
        }
        await db.WriteAsync("migrate", async (conn, tx) =>
        {
            await dialect.LockForMigrationAsync(conn, tx, ct).ConfigureAwait(false);
            await Db.ExecuteAsync(conn, tx, dialect.CreateMigrationsTableSql, ct).ConfigureAwait(false);
            var current = Convert.ToInt64(await Db.ScalarAsync(conn, tx, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations", ct).ConfigureAwait(false), CultureInfo.InvariantCulture);
            if (current > latest)
                throw new StoreUnavailableException(SqlDialect.NewSchemaMessage(dialect.Description, current, latest));
            for (var v = current + 1; v <= latest; v++)
            {
                await Db.ExecuteAsync(conn, tx, dialect.Migrations[(int)v - 1], ct).ConfigureAwait(false);
                await Db.ExecuteAsync(conn, tx, "INSERT INTO schema_migrations (version, applied_at_us) VALUES (@v, @at)", ct,
                    ("v", v), ("at", Time.ToMicros(time.GetUtcNow()))).ConfigureAwait(false);
            }
            return 0;
        }, ct).ConfigureAwait(false);
        var revision = await db.ReadAsync("read revision", (conn, tx) => Db.ReadRevisionAsync(conn, tx, ct), ct).ConfigureAwait(false);
        var watcher = new RevisionWatcher(db, revision, options.ChangePollInterval, time);
        return new SqlWritStore(db, watcher, time);
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
            return;
        await _watcher.DisposeAsync().ConfigureAwait(false);
        await _db.Dialect.DisposeAsync().ConfigureAwait(false);
    }
}

/// <summary>
/// Knows the latest revision this process has seen and wakes waiters when it moves: at once for commits made through
/// this store; for writers in other processes through the dialect's listener (PostgreSQL LISTEN/NOTIFY) and one shared
/// poll as a safety net. Both start with the first waiter.
/// </summary>
internal sealed class RevisionWatcher(Db db, long initial, TimeSpan pollInterval, TimeProvider time) : IAsyncDisposable
{
    private readonly CancellationTokenSource _stop = new();
    private readonly Lock _startLock = new();
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private long _known = initial;
    private Task? _poller;
    private Task? _listener;
    private volatile bool _disposed;

    public long Known => Interlocked.Read(ref _known);

    /// <summary>Records a revision (from a commit, a notification or a poll) and wakes waiters if it is new.</summary>
    public void Observe(long revision)
    {
        long seen;
        do
        {
            seen = Interlocked.Read(ref _known);
            if (revision <= seen)
                return;
        }
        while (Interlocked.CompareExchange(ref _known, revision, seen) != seen);
        if (!_disposed)
            Interlocked.Exchange(ref _changed, new(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();
    }

    public async Task WaitAsync(long revision, CancellationToken ct)
    {
        while (true)
        {
            ct.ThrowIfCancellationRequested();
            ObjectDisposedException.ThrowIf(_disposed, this);
            var changed = Volatile.Read(ref _changed).Task;   // take the signal before the check: no lost wake-up
            if (Known > revision)
                return;
            EnsureWatching();
            await changed.WaitAsync(ct).ConfigureAwait(false);
        }
    }

    /// <summary>The payload of every store signal (issue #16), from the listener; see <see cref="SqlStoreSignals"/>.</summary>
    public event Action<string>? Signal;

    /// <summary>Starts the listener and the poll now (a signal subscriber needs them before the first waiter).</summary>
    public void EnsureWatching()
    {
        if (_poller is not null)
            return;
        lock (_startLock)
        {
            if (_poller is not null || _stop.IsCancellationRequested)
                return;
            _listener = db.Dialect.ListenForRevisionsAsync(Observe, p => Signal?.Invoke(p), _stop.Token);
            _poller = Task.Run(PollAsync);
        }
    }

    private async Task PollAsync()
    {
        var ct = _stop.Token;
        while (!ct.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(pollInterval, time, ct).ConfigureAwait(false);
                var revision = await db.ReadAsync("poll revision", (conn, tx) => Db.ReadRevisionAsync(conn, tx, ct), ct).ConfigureAwait(false);
                Observe(revision);
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                return;
            }
            catch (StoreException)
            {
                // Database briefly unavailable: keep polling; callers see the error on their own operations.
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        Task[] running;
        lock (_startLock)
        {
            if (_disposed)
                return;
            _disposed = true;
            _stop.Cancel();
            running = new[] { _poller, _listener }.OfType<Task>().ToArray();
        }
        var last = Volatile.Read(ref _changed);
        last.TrySetException(new ObjectDisposedException(nameof(IWritStore), "the store was disposed while waiting for a change"));
        _ = last.Task.Exception;   // observed: nobody may be waiting
        try
        {
            await Task.WhenAll(running).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            // Stopped.
        }
        _stop.Dispose();
    }
}

/// <summary>
/// Store signals over the dialect (PostgreSQL NOTIFY on <c>writ_change</c>, payload "kind:origin"): a server ignores its
/// own (it raised the change locally already). Handlers run on the listener's thread and must be quick.
/// </summary>
internal sealed class SqlStoreSignals(Db db, RevisionWatcher watcher) : IStoreSignals
{
    private readonly string _origin = Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(8));

    public async Task PublishAsync(string kind, CancellationToken ct)
    {
        ArgumentException.ThrowIfNullOrEmpty(kind);
        if (!db.Dialect.CanSignal)
            return;
        try
        {
            await db.ReadAsync("publish signal", async (conn, _) =>
            {
                await db.Dialect.PublishSignalAsync(conn, kind + ":" + _origin, ct).ConfigureAwait(false);
                return 0;
            }, ct).ConfigureAwait(false);
        }
        catch (StoreException)
        {
            // Store unreachable: the receivers' poll finds the change once it is back (the store is the source of truth).
        }
    }

    public IDisposable Subscribe(Action<string> onSignal)
    {
        ArgumentNullException.ThrowIfNull(onSignal);
        void Handler(string payload)
        {
            var colon = payload.LastIndexOf(':');
            if (colon > 0 && payload.AsSpan(colon + 1).SequenceEqual(_origin))
                return;
            // NOTIFY needs no table privilege: any role that can connect may send one. Only the kinds servers publish are
            // handed on (and so logged); anything else is no signal.
            var kind = colon > 0 ? payload[..colon] : payload;
            if (kind is Sync.ChangeKinds.Nodes or Sync.ChangeKinds.Policy or Sync.ChangeKinds.Bundle or Sync.ChangeKinds.Crl)
                onSignal(kind);
        }
        watcher.Signal += Handler;
        watcher.EnsureWatching();
        return new Unsubscribe(() => watcher.Signal -= Handler);
    }

    private sealed class Unsubscribe(Action undo) : IDisposable
    {
        private Action? _undo = undo;

        public void Dispose() => Interlocked.Exchange(ref _undo, null)?.Invoke();
    }
}
