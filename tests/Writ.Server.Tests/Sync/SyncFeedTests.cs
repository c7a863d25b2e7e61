using Microsoft.Extensions.Logging.Abstractions;
using Writ.Protocol;
using Writ.Server.Storage;
using Writ.Server.Sync;
using static Writ.Server.Tests.Storage.Entries;

namespace Writ.Server.Tests.Sync;

/// <summary>
/// The shared sync feed (issue #16) against the store it replaces: for every revision in its window and every set of
/// parents, the slice it answers from memory equals what <see cref="IEntryStore.ChangesSinceAsync"/> answers, after a
/// random mix of creates, updates, moves between parents and deletes (a differential test on a real SQLite store).
/// </summary>
public sealed class SyncFeedTests : IAsyncLifetime
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;
    private readonly string _dir = Directory.CreateTempSubdirectory("writ-feed-").FullName;
    private readonly CancellationTokenSource _stop = new();
    private IWritStore _store = null!;

    public async ValueTask InitializeAsync() =>
        _store = await WritStoreFactory.OpenAsync("sqlite", Path.Combine(_dir, "writ.db"), TimeProvider.System, Ct);

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await _store.DisposeAsync();
        _stop.Dispose();
        Directory.Delete(_dir, recursive: true);
    }

    private static readonly string[] Parents = [.. Enumerable.Range(0, 4).Select(i => $"spiffe://example.org/agent/{i}")];

    [Fact]
    public async Task Every_slice_equals_the_stores_answer_for_the_same_revision_and_parents()
    {
        var feed = new SyncFeed(_store, TimeProvider.System, NullLogger.Instance, _stop.Token);
        feed.EnsureStarted();
        await WaitForAsync(() => feed.Head >= 0);
        var start = feed.Head;
        var random = new Random(1616);
        var live = new List<RegistrationEntry>();
        for (var step = 0; step < 120; step++)
        {
            var op = live.Count < 3 ? 0 : random.Next(4);
            switch (op)
            {
                case 0:
                    live.Add((await _store.Entries.CreateAsync([New($"spiffe://example.org/w/{step}", Parents[random.Next(Parents.Length)], "unix:uid:1")], Ct))[0]);
                    break;
                case 1:
                {
                    var i = random.Next(live.Count);
                    live[i] = await _store.Entries.UpdateAsync(live[i] with { Hint = $"h{step}" }, Ct);
                    break;
                }
                case 2:
                {
                    var i = random.Next(live.Count);
                    live[i] = await _store.Entries.UpdateAsync(live[i] with { ParentId = Parents[random.Next(Parents.Length)] }, Ct);
                    break;
                }
                default:
                {
                    var i = random.Next(live.Count);
                    await _store.Entries.DeleteAsync(live[i].Id, Ct);
                    live.RemoveAt(i);
                    break;
                }
            }
            if (random.Next(3) == 0)
            {
                // Let the feed catch up now and then, so the window holds batches of one and of several revisions.
                var now = await _store.Entries.CurrentRevisionAsync(Ct);
                await WaitForAsync(() => feed.Head >= now);
            }
        }
        var head = await _store.Entries.CurrentRevisionAsync(Ct);
        await WaitForAsync(() => feed.Head >= head);

        var parentSets = new[] { new[] { Parents[0] }, [Parents[1]], [Parents[2], Parents[3]], Parents, ["spiffe://example.org/agent/none"] };
        for (var since = start; since <= head; since++)
        {
            foreach (var parents in parentSets)
            {
                Assert.True(feed.TrySlice(since, since, parents, feed.Epoch, DateTimeOffset.UtcNow, out var slice, out var revocations, out var cursor));
                var expected = await _store.Entries.ChangesSinceAsync(since, parents, Ct);
                if (since == 0)
                    continue;   // the store answers a full state for 0; streams never ask the feed for it
                Assert.Equal(expected.Revision, Math.Max(slice.Revision, since));
                Assert.Equal(expected.Upserts.Select(e => (e.Id, e.Revision, e.ParentId, e.Hint)), slice.Upserts.Select(e => (e.Id, e.Revision, e.ParentId, e.Hint)));
                Assert.Equal(expected.DeletedIds, slice.DeletedIds);
                Assert.Empty(revocations);
                Assert.Equal(head, cursor);
            }
        }
    }

    [Fact]
    public async Task A_stream_behind_the_window_or_before_the_feed_started_reads_the_store()
    {
        await _store.Entries.CreateAsync([New("spiffe://example.org/w", Parents[0], "unix:uid:1")], Ct);
        var feed = new SyncFeed(_store, TimeProvider.System, NullLogger.Instance, _stop.Token);
        Assert.False(feed.TrySlice(1, 1, Parents, feed.Epoch, DateTimeOffset.UtcNow, out _, out _, out _));   // not started
        feed.EnsureStarted();
        await WaitForAsync(() => feed.Head >= 1);
        Assert.False(feed.TrySlice(0, 0, Parents, feed.Epoch, DateTimeOffset.UtcNow, out _, out _, out _));   // before its window
        Assert.True(feed.TrySlice(1, 1, Parents, feed.Epoch, DateTimeOffset.UtcNow, out var none, out _, out _));
        Assert.Empty(none.Upserts);
        Assert.False(feed.TrySlice(1, 1, Parents, feed.Epoch + 1, DateTimeOffset.UtcNow, out _, out _, out _));   // another epoch
    }

    [Fact]
    public async Task Revocations_come_once_in_the_slice_after_the_cursor_and_expired_ones_never()
    {
        var feed = new SyncFeed(_store, TimeProvider.System, NullLogger.Instance, _stop.Token);
        feed.EnsureStarted();
        await WaitForAsync(() => feed.Head >= 0);
        var since = feed.Head;
        var now = DateTimeOffset.UtcNow;
        RevocationRecord Serial(string s, TimeSpan ttl) => new() { SerialHex = s, SpiffeId = "spiffe://example.org/w", RevokedAt = now, ExpiresAt = now + ttl, Reason = "test" };
        await _store.Revocations.RevokeAsync([Serial("0A", TimeSpan.FromHours(1)), Serial("0B", TimeSpan.FromSeconds(1))], [], Ct);
        var head = await _store.Entries.CurrentRevisionAsync(Ct);
        await WaitForAsync(() => feed.Head >= head);

        Assert.True(feed.TrySlice(since, since, Parents, feed.Epoch, now, out _, out var both, out var cursor));
        Assert.Equal(["0A", "0B"], both.Select(r => r.SerialHex).Order());
        Assert.True(feed.TrySlice(since, since, Parents, feed.Epoch, now.AddMinutes(1), out _, out var unexpired, out _));
        Assert.Equal(["0A"], unexpired.Select(r => r.SerialHex));
        Assert.True(feed.TrySlice(head, cursor, Parents, feed.Epoch, now, out _, out var again, out _));
        Assert.Empty(again);
    }

    [Fact]
    public async Task Streams_share_one_read_of_the_nodes_until_a_node_announcement_or_its_age_asks_for_another()
    {
        var nodeChanges = new ChangeSignal();
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.UtcNow);
        var feed = new SyncFeed(_store, time, NullLogger.Instance, _stop.Token, nodeChanges);
        var node = new AttestedNode { SpiffeId = Parents[0], AttestationType = "join_token", SerialNumber = "01", ExpiresAt = DateTimeOffset.UtcNow.AddHours(1) };
        await _store.Nodes.CreateAsync(node, Ct);
        var woke = feed.Freshness();
        var all = await Task.WhenAll(Enumerable.Range(0, 50).Select(_ => feed.NodeAsync(Parents[0], woke, Ct)));
        Assert.All(all, n => Assert.Equal("01", n!.SerialNumber));
        // Streams that get there one after another (each after writing its own update), and the entry changes that woke
        // them, share the read.
        for (var i = 0; i < 50; i++)
        {
            feed.Advanced.Raise();
            Assert.Equal("01", (await feed.NodeAsync(Parents[0], feed.Freshness(), Ct))!.SerialNumber);
        }
        Assert.Null(await feed.NodeAsync(Parents[1], woke, Ct));
        Assert.Equal(1, feed.NodeReads);

        // A ban announced after the read: the next stream to wake reads the nodes again and sees it.
        await _store.Nodes.UpdateAsync(node with { Banned = true }, Ct);
        nodeChanges.Raise();
        Assert.True((await feed.NodeAsync(Parents[0], feed.Freshness(), Ct))!.Banned);
        Assert.Equal(2, feed.NodeReads);

        // A change whose announcement was lost (another server's NOTIFY): seen once the read is too old to be reused.
        await _store.Nodes.UpdateAsync(node with { Banned = false }, Ct);
        Assert.True((await feed.NodeAsync(Parents[0], feed.Freshness(), Ct))!.Banned);
        time.Advance(SyncFeed.DefaultNodeReadMaxAge);
        Assert.False((await feed.NodeAsync(Parents[0], feed.Freshness(), Ct))!.Banned);
        Assert.Equal(3, feed.NodeReads);

        // Past half that age a stream still gets the read it has, and a refresh starts behind it.
        await _store.Nodes.UpdateAsync(node with { Banned = true }, Ct);
        time.Advance(SyncFeed.DefaultNodeReadMaxAge / 2);
        Assert.False((await feed.NodeAsync(Parents[0], feed.Freshness(), Ct))!.Banned);
        await WaitForAsync(() => feed.NodeReads == 4);
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        deadline.CancelAfter(TimeSpan.FromSeconds(30));
        while (!(await feed.NodeAsync(Parents[0], feed.Freshness(), Ct))!.Banned)
            await Task.Delay(10, deadline.Token);
        Assert.Equal(4, feed.NodeReads);
    }

    private static async Task WaitForAsync(Func<bool> condition)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        deadline.CancelAfter(TimeSpan.FromSeconds(30));
        while (!condition())
            await Task.Delay(10, deadline.Token);
    }
}
