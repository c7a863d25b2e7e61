namespace Writ.Protocol;

/// <summary>
/// An in-process "something changed" broadcast: waiters get a task that completes at the next <see cref="Raise"/>.
/// Used for changes the store does not version (bundle rotation, agent ban/evict) so sync streams wake at once.
/// </summary>
public sealed class ChangeSignal
{
    private TaskCompletionSource _next = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private long _generation;

    public long Generation => Interlocked.Read(ref _generation);

    /// <summary>A task that completes once the generation moves past <paramref name="seen"/>.</summary>
    public Task WaitAsync(long seen, CancellationToken ct)
    {
        var tcs = Volatile.Read(ref _next);
        if (Generation != seen)
        {
            return Task.CompletedTask;
        }
        return tcs.Task.WaitAsync(ct);
    }

    public void Raise()
    {
        // Generation first: a waiter that reads the new source must also see the new generation, or it would miss this raise.
        Interlocked.Increment(ref _generation);
        var old = Interlocked.Exchange(ref _next, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
        old.TrySetResult();
    }
}
