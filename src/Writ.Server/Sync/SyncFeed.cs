using Microsoft.Extensions.Logging;
using Writ.Protocol;
using Writ.Server.Storage;

namespace Writ.Server.Sync;

/// <summary>
/// One change feed per server (issue #16, <c>sync.fanout shared</c>): when the store revision moves, ONE read of the
/// delta for every parent (<see cref="IEntryStore.AllChangesSinceAsync"/>) and of the revocations, kept in a bounded
/// window of recent batches; each agent Sync stream takes its slice by its parent ids from memory
/// (<see cref="TrySlice"/>). A stream whose revision is outside the window (or after a reset of the store) reads the
/// store itself, as every stream does with <c>per_stream</c>. The re-authentication after each wake reads the node
/// records once for all streams woken together (<see cref="NodeAsync"/>). So the store queries per change do not grow
/// with the number of agents.
/// </summary>
public sealed class SyncFeed
{
    /// <summary>Batches kept: a stream more than this many changes behind reads the store itself.</summary>
    public const int MaxBatches = 1024;

    /// <summary>Entries, deletions and revocations kept in the window in all.</summary>
    public const int MaxItems = 200_000;

    private readonly IWritStore _store;
    private readonly TimeProvider _time;
    private readonly ILogger _log;
    private readonly CancellationToken _stopping;
    private readonly Lock _lock = new();
    // The window, replaced whole on every change (copy-on-write, at most MaxBatches references): the streams slice it
    // without a lock, so a thousand of them woken together do not queue on one.
    private Window _window = Window.Empty;
    private Task? _loop;

    private readonly ChangeSignal _nodeChanges;
    private NodeSnapshot? _nodes;
    private Task<NodeSnapshot>? _nodesReading;
    private NodeFreshness _nodesReadingAt;
    private long _nodesReadingStarted;

    /// <param name="nodeChanges">raised on node changes the revision does not carry (ban, eviction, drift; the server's <c>Changes</c>)</param>
    public SyncFeed(IWritStore store, TimeProvider time, ILogger log, CancellationToken stopping, ChangeSignal? nodeChanges = null)
    {
        _nodeChanges = nodeChanges ?? new ChangeSignal();
        _store = store;
        _time = time;
        _log = log;
        _stopping = stopping;
    }

    /// <summary>Raised whenever the feed moved (a new batch, or a reset): streams wake on it instead of on the store.</summary>
    public ChangeSignal Advanced { get; } = new();

    /// <summary>The store revision the window is consistent with; -1 before the first read.</summary>
    public long Head
    {
        get
        {
            return Volatile.Read(ref _window).Head;
        }
    }

    /// <summary>Moves when the store went backwards (a restored database): streams that saw an older epoch read the store.</summary>
    public long Epoch => Volatile.Read(ref _window).Epoch;

    /// <summary>How many store reads of changes the feed made (tests and the bench: one per change, whatever the number of streams).</summary>
    public long Reads => Interlocked.Read(ref _reads);

    private long _reads;

    /// <summary>Starts the feed's loop (once); it runs until the server stops.</summary>
    public void EnsureStarted()
    {
        if (Volatile.Read(ref _loop) is not null)
            return;
        lock (_lock)
        {
            _loop ??= Task.Run(RunAsync, CancellationToken.None);
        }
    }

    private async Task RunAsync()
    {
        var ct = _stopping;
        var failing = false;
        while (!ct.IsCancellationRequested)
        {
            try
            {
                var head = Volatile.Read(ref _window).Head;
                if (head < 0)
                {
                    var start = await _store.Entries.CurrentRevisionAsync(ct).ConfigureAwait(false);
                    Reset(start, backwards: false);
                    continue;
                }
                await _store.Entries.WaitForChangeAsync(head, ct).ConfigureAwait(false);
                Interlocked.Increment(ref _reads);
                var changes = await _store.Entries.AllChangesSinceAsync(head, ct).ConfigureAwait(false);
                if (changes.Full)
                {
                    ServerLog.SyncFeedReset(_log, head, changes.Revision);
                    Reset(changes.Revision, backwards: changes.Revision < head);
                    continue;
                }
                if (changes.Revision <= head)
                {
                    // The watcher saw a revision this read does not (yet): look again shortly.
                    await Task.Delay(TimeSpan.FromMilliseconds(10), _time, ct).ConfigureAwait(false);
                    continue;
                }
                // Every revision up to changes.Revision has committed (the revision row serialises writers), so this read
                // sees all revocations of the batch; later ones belong to the next batch.
                var revocations = (await _store.Revocations.SinceAsync(head, ct).ConfigureAwait(false)).Where(r => r.Revision <= changes.Revision).ToList();
                Append(new Batch(head, changes.Revision, changes, revocations));
                if (failing)
                {
                    failing = false;
                    ServerLog.SyncFeedRecovered(_log, changes.Revision);
                }
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                return;
            }
            catch (ObjectDisposedException)
            {
                return;   // the store was disposed (the server is gone)
            }
            catch (StoreException e)
            {
                // The streams keep their state; they catch up from the window (or the store) once the feed reads again.
                if (!failing)
                    ServerLog.SyncFeedFailed(_log, e.Message);
                failing = true;
                try
                {
                    await Task.Delay(TimeSpan.FromSeconds(1), _time, ct).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        }
    }

    private void Reset(long revision, bool backwards)
    {
        lock (_lock)
        {
            var epoch = backwards ? Volatile.Read(ref _window).Epoch + 1 : Volatile.Read(ref _window).Epoch;
            Volatile.Write(ref _window, new Window(revision, revision, [], 0, epoch));
        }
        Advanced.Raise();
    }

    private void Append(Batch batch)
    {
        lock (_lock)
        {
            var w = Volatile.Read(ref _window);
            var batches = new List<Batch>(w.Batches.Length + 1);
            batches.AddRange(w.Batches);
            batches.Add(batch);
            var items = w.Items + batch.Items;
            var drop = 0;
            while (batches.Count - drop > 1 && (batches.Count - drop > MaxBatches || items > MaxItems))
            {
                items -= batches[drop].Items;
                drop++;
            }
            var kept = batches.Skip(drop).ToArray();
            Volatile.Write(ref _window, new Window(drop > 0 ? kept[0].From : w.Start, batch.To, kept, items, w.Epoch));
        }
        Advanced.Raise();
    }

    /// <summary>
    /// The changes for <paramref name="parents"/> after <paramref name="since"/> and the unexpired revocations after
    /// <paramref name="revocationCursor"/>, from memory, consistent with the feed's head (the same answer the store
    /// would give at that revision). False when the window cannot answer (the stream is too far behind, the feed has not
    /// read yet, or the store was reset since <paramref name="epoch"/>): the caller reads the store.
    /// </summary>
    public bool TrySlice(long since, long revocationCursor, IReadOnlyCollection<string> parents, long epoch, DateTimeOffset now,
        out EntryChanges changes, out IReadOnlyList<RevocationRecord> revocations, out long cursor)
    {
        ArgumentNullException.ThrowIfNull(parents);
        changes = new EntryChanges(since, [], []);
        revocations = [];
        cursor = revocationCursor;
        var w = Volatile.Read(ref _window);
        {
            if (w.Head < 0 || epoch != w.Epoch || since < w.Start || revocationCursor < w.Start)
                return false;
            if (since >= w.Head && revocationCursor >= w.Head)
                return true;   // nothing newer yet (a stream that read the store itself may be ahead of the feed)
            Dictionary<string, RegistrationEntry?>? state = null;
            List<RevocationRecord>? revoked = null;
            foreach (var b in w.Batches)
            {
                if (b.To <= Math.Min(since, revocationCursor))
                    continue;
                if (b.To > since)
                {
                    // Deletions of the batch first, for every parent, then its upserts: within a batch an entry live under
                    // one of the parents wins over its deletion from another (moved between two of this agent's parents)
                    // or from the same one (moved away and back), as in the store's answer.
                    foreach (var p in parents)
                    {
                        if (b.Deletions.TryGetValue(p, out var gone))
                        {
                            foreach (var d in gone)
                            {
                                if (d.Revision > since)
                                    (state ??= new(StringComparer.Ordinal))[d.EntryId] = null;
                            }
                        }
                    }
                    foreach (var p in parents)
                    {
                        if (b.Upserts.TryGetValue(p, out var live))
                        {
                            foreach (var e in live)
                            {
                                if (e.Revision > since)
                                    (state ??= new(StringComparer.Ordinal))[e.Id] = e;
                            }
                        }
                    }
                }
                foreach (var r in b.Revocations)
                {
                    if (r.Revision > revocationCursor && r.ExpiresAt > now)
                        (revoked ??= []).Add(r);
                }
            }
            var head = Math.Max(w.Head, since);
            if (state is not null)
            {
                changes = new EntryChanges(head,
                    [.. state.Values.OfType<RegistrationEntry>().OrderBy(e => e.Id, StringComparer.Ordinal)],
                    [.. state.Where(p => p.Value is null).Select(p => p.Key).Order(StringComparer.Ordinal)]);
            }
            else
            {
                changes = new EntryChanges(head, [], []);
            }
            revocations = revoked ?? [];
            cursor = Math.Max(revocationCursor, w.Head);
            return true;
        }
    }

    /// <summary>
    /// How fresh a node read must be for a stream that just woke: every node announcement (ban, eviction, drift,
    /// readmission: <c>nodeChanges</c>, raised here and on NOTIFY from the other servers) it has seen. Take it after the
    /// wake, before <see cref="NodeAsync"/>.
    /// </summary>
    public NodeFreshness Freshness() => new(_nodeChanges.Generation);

    /// <summary>Store reads of the node records the feed made for the streams' re-authentication (tests).</summary>
    public long NodeReads => Interlocked.Read(ref _nodeReads);

    private long _nodeReads;

    /// <summary>
    /// The node record for a stream's re-authentication after a wake. One read of all nodes serves every stream until a
    /// node announcement (<paramref name="freshness"/>) asks for a newer one, or until it is <see cref="NodeReadMaxAge"/>
    /// old; past half that age it is refreshed in the background, so an entry change reaches its streams without a node
    /// read on their path, and the reads do not grow with the number of streams. A ban whose announcement is lost (a
    /// dropped listening connection on another server) is seen within <see cref="NodeReadMaxAge"/>; the agent's revoked
    /// credentials are checked on every wake anyway. Null: no such node (evicted).
    /// </summary>
    public async Task<AttestedNode?> NodeAsync(string spiffeId, NodeFreshness freshness, CancellationToken ct)
    {
        Task<NodeSnapshot> reading;
        var now = _time.GetTimestamp();
        // The common case without the lock: a fresh enough read that is not yet due for a refresh.
        if (Volatile.Read(ref _nodes) is { } fresh && fresh.At.Covers(freshness) && _time.GetElapsedTime(fresh.Started, now) < NodeReadMaxAge / 2)
            return fresh.Nodes.GetValueOrDefault(spiffeId);
        lock (_lock)
        {
            if (_nodes is { } s && s.At.Covers(freshness))
            {
                var age = _time.GetElapsedTime(s.Started, now);
                if (age < NodeReadMaxAge)
                {
                    if (age >= NodeReadMaxAge / 2 && !ReadingCoversLocked(freshness, now))
                        StartReadLocked(now);   // ahead of time, off the streams' path
                    return s.Nodes.GetValueOrDefault(spiffeId);
                }
            }
            reading = ReadingCoversLocked(freshness, now) ? _nodesReading! : StartReadLocked(now);
        }
        var snapshot = await reading.WaitAsync(ct).ConfigureAwait(false);
        return snapshot.Nodes.GetValueOrDefault(spiffeId);
    }

    /// <summary>How long one read of the node records may serve the streams when no node announcement came.</summary>
    public static readonly TimeSpan DefaultNodeReadMaxAge = TimeSpan.FromSeconds(5);

    /// <summary><see cref="DefaultNodeReadMaxAge"/>; tests lengthen it to make a stale read certain.</summary>
    internal TimeSpan NodeReadMaxAge { get; set; } = DefaultNodeReadMaxAge;

    // A read still under way that will do (a finished one is in _nodes already, or was superseded by a newer one).
    private bool ReadingCoversLocked(NodeFreshness freshness, long now) =>
        _nodesReading is { IsCompleted: false } && _nodesReadingAt.Covers(freshness) && _time.GetElapsedTime(_nodesReadingStarted, now) < NodeReadMaxAge;

    private Task<NodeSnapshot> StartReadLocked(long now)
    {
        // The generation before the read: an announcement raised before this point is of a committed change the read sees.
        var at = Freshness();
        var reading = ReadNodesAsync(at, now, Interlocked.Increment(ref _nodeReads));
        ObserveBackground(reading);   // a read whose streams all went away may fault unobserved
        _nodesReading = reading;
        _nodesReadingAt = at;
        _nodesReadingStarted = now;
        return reading;
    }

    private static void ObserveBackground(Task reading) =>
        _ = reading.ContinueWith(t => _ = t.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted, TaskScheduler.Default);

    private async Task<NodeSnapshot> ReadNodesAsync(NodeFreshness at, long started, long order)
    {
        await Task.Yield();   // outside the caller's lock
        var nodes = await _store.Nodes.ListAsync(_stopping).ConfigureAwait(false);
        var snapshot = new NodeSnapshot(at, started, order, nodes.ToDictionary(n => n.SpiffeId, StringComparer.Ordinal));
        lock (_lock)
        {
            if (_nodes is null || _nodes.Order < order)
                Volatile.Write(ref _nodes, snapshot);   // reads that finish out of order: the later-started one wins
        }
        return snapshot;
    }

    private sealed record NodeSnapshot(NodeFreshness At, long Started, long Order, Dictionary<string, AttestedNode> Nodes);

    /// <summary>The batches kept, revisions (Start, Head]; Head -1 before the first read.</summary>
    private sealed record Window(long Start, long Head, Batch[] Batches, int Items, long Epoch)
    {
        public static readonly Window Empty = new(-1, -1, [], 0, 0);
    }

    /// <summary>The changes of revisions (From, To], indexed by parent.</summary>
    private sealed class Batch
    {
        public Batch(long from, long to, AllEntryChanges changes, IReadOnlyList<RevocationRecord> revocations)
        {
            From = from;
            To = to;
            Upserts = changes.Upserts.GroupBy(e => e.ParentId, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.ToList(), StringComparer.Ordinal);
            Deletions = changes.Deletions.GroupBy(d => d.ParentId, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.ToList(), StringComparer.Ordinal);
            Revocations = revocations;
            Items = changes.Upserts.Count + changes.Deletions.Count + revocations.Count + 1;
        }

        public long From { get; }
        public long To { get; }
        public Dictionary<string, List<RegistrationEntry>> Upserts { get; }
        public Dictionary<string, List<EntryDeletion>> Deletions { get; }
        public IReadOnlyList<RevocationRecord> Revocations { get; }
        public int Items { get; }
    }
}

/// <summary>The node-announcement generation a stream has seen (<see cref="SyncFeed.Freshness"/>).</summary>
public readonly record struct NodeFreshness(long Nodes)
{
    /// <summary>True when a read taken at this point is fresh enough for a stream that has seen <paramref name="f"/>.</summary>
    public bool Covers(NodeFreshness f) => Nodes >= f.Nodes;
}
