namespace Writ.Workload.Tests.Fakes;

/// <summary>Waits on a condition with a deadline (no fixed sleeps): polls, fails with <paramref name="what"/> when the deadline passes.</summary>
public static class Until
{
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(20);

    public static async Task TrueAsync(Func<bool> condition, string what, TimeSpan? timeout = null)
    {
        ArgumentNullException.ThrowIfNull(condition);
        var deadline = DateTime.UtcNow + (timeout ?? DefaultTimeout);
        while (!condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                Assert.Fail($"timed out waiting for: {what}");
            }
            await Task.Delay(20, TestContext.Current.CancellationToken);
        }
    }

    /// <summary>A task completed by the next raise of an event (subscribe before causing it).</summary>
    public static Task NextAsync(Action<EventHandler> subscribe, TimeSpan? timeout = null)
    {
        ArgumentNullException.ThrowIfNull(subscribe);
        var tcs = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        subscribe((_, _) => tcs.TrySetResult());
        return tcs.Task.WaitAsync(timeout ?? DefaultTimeout, TestContext.Current.CancellationToken);
    }
}
