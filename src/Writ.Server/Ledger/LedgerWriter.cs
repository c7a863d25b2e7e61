using Writ.Server.Storage;

namespace Writ.Server.Ledger;

/// <summary>
/// The one writer of the ledger: the only caller of <see cref="ILedgerStore.AppendAsync"/>. Issuance and denial
/// records, admin mints and agent reports (<c>jwt.replay</c>) all come through here. Records of an admin change that
/// must commit with the change itself (entries, nodes, join tokens, policy versions, revocations) are handed to that
/// store write as its <c>audit</c> events instead: the store's transaction appends them with the same chaining code
/// (<c>SqlLedgerStore.AppendInTxAsync</c>) that <see cref="ILedgerStore.AppendAsync"/> runs, so there is one append
/// and one hash chain, and a change never commits without its record.
/// <para>
/// Group commit: concurrent appends that arrive while a ledger transaction is being written are
/// batched into the next one, so N concurrent issuances cost one commit (one fsync) instead of N. Each caller's task
/// completes only when the transaction holding its records has committed, and fails if it failed — so a credential is
/// never handed out before its record is durable. The order of records within the ledger follows arrival order.
/// </para>
/// </summary>
public sealed class LedgerWriter(IWritStore store)
{
    /// <summary>At most this many records per transaction; the rest wait for the next one.</summary>
    public const int MaxEventsPerCommit = 4096;

    private readonly Lock _lock = new();
    private List<Pending> _pending = [];
    private bool _writing;

    private sealed record Pending(IReadOnlyList<LedgerEvent> Events, IReadOnlyList<IssuedCredential> Issued, TaskCompletionSource Done);

    /// <summary>Number of transactions written (tests and benchmarks read it).</summary>
    public long Commits => Interlocked.Read(ref _commits);

    private long _commits;

    /// <summary>
    /// Appends and waits for the commit; <paramref name="ct"/> stops the wait, not the write (once queued, records are
    /// written). A store failure becomes <see cref="StoreUnavailableException"/> with <paramref name="unrecorded"/> as
    /// its message (say what was not handed out or done, and to retry).
    /// </summary>
    public async Task RecordAsync(IReadOnlyList<LedgerEvent> events, IReadOnlyList<IssuedCredential> issued, string unrecorded, CancellationToken ct)
    {
        try
        {
            await AppendAsync(events, issued).WaitAsync(ct).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            throw new StoreUnavailableException(unrecorded, e);
        }
    }

    /// <summary>Completes when the records are durable; throws what the store threw if the transaction failed.</summary>
    public Task AppendAsync(IReadOnlyList<LedgerEvent> events, IReadOnlyList<IssuedCredential> issued)
    {
        var p = new Pending(events, issued, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
        bool start;
        lock (_lock)
        {
            _pending.Add(p);
            start = !_writing;
            _writing = true;
        }
        if (start)
        {
            _ = Task.Run(DrainAsync);
        }
        return p.Done.Task;
    }

    private async Task DrainAsync()
    {
        while (true)
        {
            List<Pending> batch;
            lock (_lock)
            {
                if (_pending.Count == 0)
                {
                    _writing = false;
                    return;
                }
                var take = 0;
                var events = 0;
                while (take < _pending.Count && (take == 0 || events + _pending[take].Events.Count <= MaxEventsPerCommit))
                {
                    events += _pending[take].Events.Count;
                    take++;
                }
                batch = _pending.GetRange(0, take);
                _pending.RemoveRange(0, take);
            }
            try
            {
                // Not cancellable: once a caller's records are queued they are written (a record without a credential
                // handed out is harmless; the reverse is what must never happen).
                await store.Ledger.AppendAsync([.. batch.SelectMany(b => b.Events)], [.. batch.SelectMany(b => b.Issued)], CancellationToken.None).ConfigureAwait(false);
                Interlocked.Increment(ref _commits);
                foreach (var b in batch)
                {
                    b.Done.TrySetResult();
                }
            }
            catch (Exception e)
            {
                foreach (var b in batch)
                {
                    b.Done.TrySetException(e);
                }
            }
        }
    }
}
