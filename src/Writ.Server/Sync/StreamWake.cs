namespace Writ.Server.Sync;

/// <summary>
/// One sync stream's wake-up (issue #16 fan-out): poked by the signals the stream follows (their
/// <c>ChangeSignal.Subscribe</c> callbacks), its CRL timer and its cancellation; the stream drains it before it reads
/// anything and waits on it after, so a poke in between is never lost. Lock-free: a change poking a thousand streams
/// contends on nothing, and a poke while one is pending costs one interlocked read.
/// </summary>
public sealed class StreamWake
{
    private int _poked;
    private TaskCompletionSource? _waiter;

    /// <summary>Marks the stream to wake; completes its wait if it is waiting. Cheap, non-blocking, any thread.</summary>
    public void Poke()
    {
        if (Volatile.Read(ref _poked) == 1 || Interlocked.Exchange(ref _poked, 1) == 1)
            return;
        Interlocked.Exchange(ref _waiter, null)?.TrySetResult();
    }

    /// <summary>Forgets the pokes so far: call before reading what they announce.</summary>
    public void Drain() => Interlocked.Exchange(ref _poked, 0);

    /// <summary>Completes at the first poke since the last <see cref="Drain"/> (at once if there was one). One waiter at a time.</summary>
    public Task WaitAsync()
    {
        if (Volatile.Read(ref _poked) == 1)
            return Task.CompletedTask;
        var waiter = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Interlocked.Exchange(ref _waiter, waiter);
        // A poke between the check above and the exchange found no waiter to complete: see it here.
        if (Volatile.Read(ref _poked) == 1)
            Interlocked.Exchange(ref _waiter, null)?.TrySetResult();
        return waiter.Task;
    }
}
