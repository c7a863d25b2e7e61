using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Writ.Agent.Cache;
using Writ.Agent.Tests.Instances;
using Writ.Agent.Tests.TestSupport;

namespace Writ.Agent.Tests.Cache;

/// <summary>The SVID rotation loop as a hosted service, driven by a fake clock and a pinned jitter: no waiting for real time.</summary>
public sealed class SvidRotationServiceTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task A_watched_svid_is_rotated_exactly_when_the_fake_clock_reaches_its_pinned_rotation_time()
    {
        using var rig = new InstanceRig();
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var cache = new SvidCache(() => rig.Server, _ => null, rig.State, rig.Tracker, time, rig.Log, new PinnedRandom(0.5));
        var entry = InstanceRig.Entry("web", "unix:uid:0");
        rig.SetEntries(entry);
        using var child = Child.Start("/bin/sleep", "60");
        var instance = await rig.ObserveAsync(child.Pid);
        var first = Assert.Single((await cache.GetX509Async(instance, [entry], Ct)).Svids);

        // Jitter pinned at the middle of its range: 90 % of the way to half-life.
        var nb = new DateTimeOffset(first.Chain[0].NotBefore.ToUniversalTime());
        Assert.Equal(SvidCache.RotationTime(nb, first.ExpiresAt, time.GetUtcNow(), 0.5), first.RotateAt);
        Assert.Equal(nb + ((first.ExpiresAt - nb) / 2 * 0.9), first.RotateAt);

        instance.StreamOpened();   // only SVIDs a stream is watching are rotated ahead of time
        using var rotation = new SvidRotationService(cache, rig.State, time, new PinnedRandom(0.5), NullLogger<SvidRotationService>.Instance);
        await rotation.StartAsync(Ct);
        await rotation.Running.WaitAsync(TimeSpan.FromSeconds(10), Ct);
        try
        {
            // Up to a moment before the rotation time nothing is due: the loop's passes (woken by the fake clock) sign nothing.
            time.Advance(first.RotateAt - time.GetUtcNow() - TimeSpan.FromSeconds(1));
            var generation = rig.State.Changed.Generation;
            Assert.Single(rig.Server.Signs);

            // Past the rotation time. The loop re-arms its timer (at most 1 s of fake time) after each pass, so a pass that
            // ends after an Advance waits for the next one: keep the fake clock moving a second at a time until it rotates.
            bool Rotated() => cache.X509Of(instance.Id) is [var c] && c.SerialHex != first.SerialHex;
            var until = DateTime.UtcNow.AddSeconds(15);
            while (!Rotated() && DateTime.UtcNow < until)
            {
                time.Advance(TimeSpan.FromSeconds(1));
                var pass = DateTime.UtcNow.AddMilliseconds(200);   // give the loop's pass a moment of real time
                while (!Rotated() && DateTime.UtcNow < pass)
                {
                    await Task.Delay(10, Ct);
                }
            }
            Assert.True(Rotated(), "the watched SVID was not rotated once the fake clock passed its rotation time");
            Assert.True(time.GetUtcNow() >= first.RotateAt);
            Assert.Equal(2, rig.Server.Signs.Count);
            Assert.Equal(instance.Id, rig.Server.Signs[^1].Csrs.Single().Evidence.InstanceId);
            await Deadline.UntilAsync(() => rig.State.Changed.Generation > generation, "the streams to be woken");
        }
        finally
        {
            instance.StreamClosed();
            await rotation.StopAsync(Ct);
        }
        await rotation.Completion.WaitAsync(TimeSpan.FromSeconds(10), Ct);
        Assert.Equal(0, rotation.Failures);
    }
}
