using Writ.Server.Storage;
using static Writ.Server.Tests.Storage.Entries;

namespace Writ.Server.Tests.Storage;

/// <summary>The shared sync feed's read (issue #16): every change after a revision, any parent, on every backend.</summary>
public abstract partial class StoreConformanceTests
{
    [Fact]
    public async Task All_changes_since_a_revision_are_every_parents_upserts_and_deletions_with_their_parents()
    {
        const string a = "spiffe://example.org/agent/a", b = "spiffe://example.org/agent/b";
        var created = await E.CreateAsync(
        [
            New("spiffe://example.org/1", a, "unix:uid:1") with { Id = "1" },
            New("spiffe://example.org/2", a, "unix:uid:1") with { Id = "2" },
            New("spiffe://example.org/3", b, "unix:uid:1") with { Id = "3" },
        ], Ct);
        var since = await E.CurrentRevisionAsync(Ct);

        var updated = await E.UpdateAsync(created[0] with { Hint = "changed" }, Ct);
        await E.DeleteAsync("2", Ct);
        var moved = await E.UpdateAsync(created[2] with { ParentId = a }, Ct);   // away from b: a deletion for b
        var added = (await E.CreateAsync([New("spiffe://example.org/4", b, "unix:uid:1") with { Id = "4" }], Ct))[0];

        var all = await E.AllChangesSinceAsync(since, Ct);
        Assert.False(all.Full);
        Assert.Equal(await E.CurrentRevisionAsync(Ct), all.Revision);
        Assert.Equal(["1", "3", "4"], all.Upserts.Select(e => e.Id));   // in revision order
        Assert.Equal([updated.Revision, moved.Revision, added.Revision], all.Upserts.Select(e => e.Revision));
        Assert.Equal(a, all.Upserts[1].ParentId);
        Assert.Equal([("2", a), ("3", b)], all.Deletions.Select(d => (d.EntryId, d.ParentId)));
        Assert.All(all.Deletions, d => Assert.InRange(d.Revision, since + 1, all.Revision));

        // Nothing after the newest revision; and the old window still answers the same.
        var nothing = await E.AllChangesSinceAsync(all.Revision, Ct);
        Assert.False(nothing.Full);
        Assert.Empty(nothing.Upserts);
        Assert.Empty(nothing.Deletions);
        Assert.Equal(all.Revision, nothing.Revision);
        var later = await E.AllChangesSinceAsync(added.Revision - 1, Ct);
        Assert.Equal(["4"], later.Upserts.Select(e => e.Id));
        Assert.Empty(later.Deletions);
    }

    [Fact]
    public async Task All_changes_from_beyond_the_store_or_before_pruned_deletions_say_full_and_list_nothing()
    {
        const string p = "spiffe://example.org/agent";
        await E.CreateAsync([New("spiffe://example.org/a", p, "unix:uid:1") with { Id = "a" }, New("spiffe://example.org/b", p, "unix:uid:1") with { Id = "b" }], Ct);
        var beyond = await E.AllChangesSinceAsync(1000, Ct);
        Assert.True(beyond.Full);
        Assert.Empty(beyond.Upserts);
        Assert.Equal(1, beyond.Revision);

        var since = await E.CurrentRevisionAsync(Ct);
        await E.DeleteAsync("a", Ct);
        var afterDelete = await E.CurrentRevisionAsync(Ct);
        Time.Advance(TimeSpan.FromDays(2));
        Assert.Equal(1, await E.PruneTombstonesAsync(Start.AddDays(1), Ct));
        var old = await E.AllChangesSinceAsync(since, Ct);
        Assert.True(old.Full);   // the delta would miss the deletion of "a"
        Assert.Empty(old.Deletions);
        Assert.False((await E.AllChangesSinceAsync(afterDelete, Ct)).Full);
    }

    [Fact]
    public async Task A_signal_reaches_the_other_servers_on_the_store_and_not_its_sender()
    {
        if (Store.Kind != "postgres")
        {
            await Store.Signals.PublishAsync(Writ.Server.Sync.ChangeKinds.Nodes, Ct);   // one server: nothing to tell, no error
            return;
        }
        var other = await OpenExtraAsync();
        var own = new System.Collections.Concurrent.ConcurrentQueue<string>();
        using var mine = Store.Signals.Subscribe(own.Enqueue);
        var heard = await PublishUntilHeardAsync(Store, other, "nodes");
        Assert.Equal("nodes", heard);
        // The other way round: by the time this store hears "policy", its own earlier "nodes" would have arrived before it.
        Assert.Equal("policy", await PublishUntilHeardAsync(other, Store, "policy"));
        Assert.DoesNotContain("nodes", own);
    }

    /// <summary>Publishes on <paramref name="from"/> until <paramref name="to"/> hears it (its LISTEN starts in the background); 30 s deadline.</summary>
    private static async Task<string> PublishUntilHeardAsync(IWritStore from, IWritStore to, string kind)
    {
        var heard = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        using var listening = to.Signals.Subscribe(k =>
        {
            if (k == kind)
                heard.TrySetResult(k);
        });
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        deadline.CancelAfter(TimeSpan.FromSeconds(30));
        while (!heard.Task.IsCompleted)
        {
            await from.Signals.PublishAsync(kind, deadline.Token);
            await Task.WhenAny(heard.Task, Task.Delay(100, deadline.Token));
            deadline.Token.ThrowIfCancellationRequested();
        }
        return await heard.Task;
    }
}
