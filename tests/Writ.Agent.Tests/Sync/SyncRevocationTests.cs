using Microsoft.Extensions.Logging.Abstractions;
using Writ.Agent.Cache;
using Writ.Agent.Sync;
using Writ.Agent.Tests.Instances;
using Writ.Agent.Tests.TestSupport;
using Writ.Protocol.Agent;
using Writ.Spiffe;

namespace Writ.Agent.Tests.Sync;

/// <summary>Revocations pushed over the sync stream reach the cache at once; the revoked workload gets a fresh SVID.</summary>
public sealed class SyncRevocationTests
{
    [Fact]
    public async Task A_revocation_on_the_sync_stream_drops_that_serial_only_and_a_fresh_one_is_signed()
    {
        using var rig = new InstanceRig();
        var entry = InstanceRig.Entry("web", "unix:uid:0");
        var options = new AgentOptions
        {
            ServerAddress = "127.0.0.1:1", TrustDomain = TrustDomain.Parse("example.org"), DataDir = "unused", SocketPath = "unused",
        };
        var sync = new SyncClient(() => rig.Server, _ => null, _ => { }, rig.State, options, TimeProvider.System, rig.Log);
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        var syncing = sync.RunAsync(cts.Token);
        using var rotation = new SvidRotationService(rig.Cache, rig.State, TimeProvider.System, Random.Shared, NullLogger<SvidRotationService>.Instance);
        await rotation.StartAsync(cts.Token);

        var full = new SyncUpdate { Reset = true, PageEnd = true, Revision = 1 };
        full.Upserts.Add(entry);
        await rig.Server.SyncUpdates.Writer.WriteAsync(full, TestContext.Current.CancellationToken);
        await Deadline.UntilAsync(() => rig.State.Synced, "the first sync");

        using var a = Child.Start("/bin/sleep", "60");
        using var b = Child.Start("/bin/sleep", "60");
        var ia = await rig.ObserveAsync(a.Pid);
        var ib = await rig.ObserveAsync(b.Pid);
        var revoked = Assert.Single((await rig.Cache.GetX509Async(ia, [entry], TestContext.Current.CancellationToken)).Svids);
        var kept = Assert.Single((await rig.Cache.GetX509Async(ib, [entry], TestContext.Current.CancellationToken)).Svids);

        var generation = rig.State.Changed.Generation;
        var update = new SyncUpdate { Revision = 2, PageEnd = true };
        update.Revocations.Add(new Revocation
        {
            SerialHex = revoked.SerialHex, SpiffeId = entry.SpiffeId, EntryId = entry.Id, InstanceId = ia.Id, Revision = 2,
            ExpiresAtUnix = revoked.ExpiresAt.ToUnixTimeSeconds(),
        });
        await rig.Server.SyncUpdates.Writer.WriteAsync(update, TestContext.Current.CancellationToken);

        // Dropped by the cache's own loop (no workload call needed), streams woken, the other instance untouched.
        await Deadline.UntilAsync(() => rig.Cache.X509Of(ia.Id).Count == 0, "the revoked SVID to leave the cache");
        Assert.True(rig.State.Changed.Generation > generation);
        Assert.True(rig.State.Revocations.IsSerialRevoked(revoked.SerialHex));
        Assert.Same(kept, Assert.Single(rig.Cache.X509Of(ib.Id)));
        Assert.Equal(2, rig.State.Current.Revision);

        var fresh = Assert.Single((await rig.Cache.GetX509Async(ia, [entry], TestContext.Current.CancellationToken)).Svids);
        Assert.NotEqual(revoked.SerialHex, fresh.SerialHex);

        await rotation.StopAsync(TestContext.Current.CancellationToken);
        Assert.Equal(0, rotation.Failures);
        await cts.CancelAsync();
        // The sync loop stops on cancellation (ending normally or with OperationCanceledException), never with another error.
        try
        {
            await syncing;
        }
        catch (OperationCanceledException)
        {
        }
    }
}
