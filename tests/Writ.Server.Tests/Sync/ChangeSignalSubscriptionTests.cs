using Writ.Protocol;

namespace Writ.Server.Tests.Sync;

/// <summary>The per-waiter wake-ups the sync streams use instead of sharing one task (issue #16 fan-out).</summary>
public sealed class ChangeSignalSubscriptionTests
{
    [Fact]
    public void Every_raise_calls_every_subscriber_until_it_unsubscribes()
    {
        var signal = new ChangeSignal();
        var a = 0;
        var b = 0;
        var subA = signal.Subscribe(() => a++);
        using var subB = signal.Subscribe(() => b++);
        signal.Raise();
        signal.Raise();
        Assert.Equal((2, 2), (a, b));
        subA.Dispose();
        signal.Raise();
        Assert.Equal((2, 3), (a, b));
        Assert.Equal(3, signal.Generation);
    }

    [Fact]
    public async Task A_raise_between_draining_and_waiting_is_not_lost()
    {
        // The stream's pattern: drain, read the state, wait. A raise after the drain completes the wait at once.
        var signal = new ChangeSignal();
        var wake = new Writ.Server.Sync.StreamWake();
        using var sub = signal.Subscribe(wake.Poke);
        signal.Raise();
        signal.Raise();
        Assert.True(wake.WaitAsync().IsCompleted);
        wake.Drain();
        var waiting = wake.WaitAsync();
        Assert.False(waiting.IsCompleted);
        signal.Raise();
        await waiting.WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken);
        wake.Drain();
        signal.Raise();   // between the drain and the wait
        Assert.True(wake.WaitAsync().IsCompleted);
    }

    [Fact]
    public async Task Pokes_racing_the_wait_from_other_threads_always_wake_it()
    {
        var wake = new Writ.Server.Sync.StreamWake();
        for (var i = 0; i < 2000; i++)
        {
            wake.Drain();
            var poker = Task.Run(wake.Poke, TestContext.Current.CancellationToken);
            await wake.WaitAsync().WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken);
            await poker;
        }
    }
}
