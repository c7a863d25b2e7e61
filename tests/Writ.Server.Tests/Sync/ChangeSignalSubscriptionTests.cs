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
        var wake = System.Threading.Channels.Channel.CreateBounded<bool>(new System.Threading.Channels.BoundedChannelOptions(1)
        {
            FullMode = System.Threading.Channels.BoundedChannelFullMode.DropWrite,
        });
        using var sub = signal.Subscribe(() => wake.Writer.TryWrite(true));
        signal.Raise();
        signal.Raise();   // dropped: one wake-up is pending already
        Assert.True(wake.Reader.TryRead(out _));
        Assert.False(wake.Reader.TryRead(out _));
        signal.Raise();
        var waited = wake.Reader.WaitToReadAsync(TestContext.Current.CancellationToken).AsTask();
        Assert.True(waited.IsCompleted);
        Assert.True(await waited);
    }
}
