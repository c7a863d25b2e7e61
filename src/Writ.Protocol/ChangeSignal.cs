namespace Writ.Protocol;

/// <summary>
/// An in-process "something changed" broadcast: waiters get a task that completes at the next <see cref="Raise"/>.
/// Used for changes the store does not version (bundle rotation, agent ban/evict) so sync streams wake at once.
/// </summary>
public sealed class ChangeSignal
{
    private TaskCompletionSource _next = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private long _generation;
    private readonly System.Collections.Concurrent.ConcurrentDictionary<object, Action> _subscribers = new();

    /// <summary>
    /// Calls <paramref name="onRaise"/> after every <see cref="Raise"/> until the subscription is disposed. For many
    /// long-lived waiters (a server's sync streams): each has its own wake-up instead of one more continuation on a task
    /// that thousands share, whose registration and removal contend on one lock. Keep the callback short and non-blocking.
    /// </summary>
    public IDisposable Subscribe(Action onRaise)
    {
        ArgumentNullException.ThrowIfNull(onRaise);
        var key = new object();
        _subscribers[key] = onRaise;
        return new Subscription(this, key);
    }

    private sealed class Subscription(ChangeSignal signal, object key) : IDisposable
    {
        public void Dispose() => signal._subscribers.TryRemove(key, out _);
    }

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
        foreach (var subscriber in _subscribers)   // enumerates without taking the dictionary's locks
        {
            try
            {
                subscriber.Value();
            }
            catch (Exception)
            {
                // One subscriber's failure must neither cost the others their wake-up nor reach the raiser (a feed loop).
            }
        }
    }
}
