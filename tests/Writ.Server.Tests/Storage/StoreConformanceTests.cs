using System.Security.Cryptography;
using Writ.Server.Storage;
using static Writ.Server.Tests.Storage.Entries;
using Writ.Protocol.Evidence;

namespace Writ.Server.Tests.Storage;

/// <summary>
/// The whole store contract, run against every backend (SQLite, PostgreSQL). Each test gets a fresh, empty database.
/// </summary>
public abstract partial class StoreConformanceTests : IAsyncLifetime
{
    private static readonly DateTimeOffset Start = new(2026, 3, 1, 12, 0, 0, TimeSpan.Zero);
    private readonly List<IWritStore> _extraStores = [];

    private protected ManualTime Time { get; } = new(Start);
    protected IWritStore Store { get; private set; } = null!;
    protected static CancellationToken Ct => TestContext.Current.CancellationToken;

    protected abstract string ExpectedKind { get; }

    /// <summary>Creates the empty database for this test (or skips). Called once before <see cref="OpenAsync"/>.</summary>
    protected abstract ValueTask CreateDatabaseAsync();

    /// <summary>Opens another store on this test's database.</summary>
    protected abstract Task<IWritStore> OpenAsync(TimeProvider time, WritStoreOptions options);

    /// <summary>Runs SQL directly on this test's database (outside the store).</summary>
    protected abstract Task ExecuteRawAsync(string sql);

    protected abstract ValueTask DropDatabaseAsync();

    public async ValueTask InitializeAsync()
    {
        await CreateDatabaseAsync();
        Store = await OpenAsync(Time, WritStoreOptions.Default);
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var s in _extraStores)
            await s.DisposeAsync();
        if (Store is not null)
            await Store.DisposeAsync();
        await DropDatabaseAsync();
        GC.SuppressFinalize(this);
    }

    protected async Task<IWritStore> OpenExtraAsync(WritStoreOptions? options = null)
    {
        var s = await OpenAsync(Time, options ?? WritStoreOptions.Default);
        _extraStores.Add(s);
        return s;
    }

    protected async Task ReopenAsync()
    {
        await Store.DisposeAsync();
        Store = null!;
        Store = await OpenAsync(Time, WritStoreOptions.Default);
    }

    private IEntryStore E => Store.Entries;

    // ---------------------------------------------------------------- entries: CRUD

    [Fact]
    public void Kind_names_the_backend() => Assert.Equal(ExpectedKind, Store.Kind);

    [Fact]
    public async Task Create_assigns_id_revision_and_created_at_and_get_returns_the_same()
    {
        var entry = New("spiffe://example.org/web", "spiffe://example.org/agent/a", "unix:uid:1000", "k8s:pod-label:app=web") with
        {
            X509TtlSeconds = 3600,
            JwtTtlSeconds = 300,
            DnsNames = ["web.example.org", "web"],
            Hint = "frontend",
            Admin = true,
            ExpiresAt = Start.AddDays(30).AddTicks(7),   // sub-microsecond part is dropped consistently
        };
        var created = Assert.Single(await E.CreateAsync([entry], Ct));

        Assert.NotEqual("", created.Id);
        Assert.True(Guid.TryParse(created.Id, out _), created.Id);
        Assert.Equal(1, created.Revision);
        Assert.Equal(Start, created.CreatedAt);
        Assert.Equal(entry.SpiffeId, created.SpiffeId);
        Assert.Equal(entry.Selectors, created.Selectors);
        Assert.Equal(["web.example.org", "web"], created.DnsNames);
        Assert.Equal(Start.AddDays(30), created.ExpiresAt);

        var read = await E.GetAsync(created.Id, Ct);
        Assert.Equal(created, read);
        Assert.Null(await E.GetAsync("no-such-entry", Ct));
        Assert.Equal(1, await E.CountAsync(Ct));
    }

    [Fact]
    public async Task Create_keeps_ids_given_by_the_caller_and_rejects_an_id_that_exists()
    {
        var created = await E.CreateAsync([New("spiffe://example.org/a", "spiffe://example.org/agent", "unix:uid:1") with { Id = "entry-a" }], Ct);
        Assert.Equal("entry-a", created[0].Id);

        var e = await StoreAssert.ThrowsOneLineAsync<StoreConflictException>(() =>
            E.CreateAsync([New("spiffe://example.org/b", "spiffe://example.org/agent", "unix:uid:2") with { Id = "entry-a" }], Ct));
        Assert.Contains("entry-a", e.Message, StringComparison.Ordinal);
        Assert.Equal(1, await E.CountAsync(Ct));
    }

    [Fact]
    public async Task Create_of_an_empty_batch_writes_nothing()
    {
        Assert.Empty(await E.CreateAsync([], Ct));
        Assert.Equal(0, await E.CurrentRevisionAsync(Ct));
    }

    [Fact]
    public async Task Duplicate_of_an_existing_entry_is_a_conflict_regardless_of_selector_order()
    {
        var first = (await E.CreateAsync([New("spiffe://example.org/web", "spiffe://example.org/agent", "unix:uid:1000", "unix:gid:1000")], Ct))[0];
        var revision = await E.CurrentRevisionAsync(Ct);

        var e = await StoreAssert.ThrowsOneLineAsync<StoreConflictException>(() =>
            E.CreateAsync([New("spiffe://example.org/web", "spiffe://example.org/agent", "unix:gid:1000", "unix:uid:1000")], Ct));
        Assert.Contains(first.Id, e.Message, StringComparison.Ordinal);

        // The same selector twice is still the same set.
        await Assert.ThrowsAsync<StoreConflictException>(() =>
            E.CreateAsync([New("spiffe://example.org/web", "spiffe://example.org/agent", "unix:gid:1000", "unix:uid:1000", "unix:uid:1000")], Ct));

        Assert.Equal(1, await E.CountAsync(Ct));
        Assert.Equal(revision, await E.CurrentRevisionAsync(Ct));
    }

    [Fact]
    public async Task Entries_that_differ_in_spiffe_id_parent_or_selector_set_are_not_duplicates()
    {
        await E.CreateAsync(
        [
            New("spiffe://example.org/web", "spiffe://example.org/agent", "unix:uid:1000"),
            New("spiffe://example.org/web2", "spiffe://example.org/agent", "unix:uid:1000"),
            New("spiffe://example.org/web", "spiffe://example.org/agent2", "unix:uid:1000"),
            New("spiffe://example.org/web", "spiffe://example.org/agent", "unix:uid:1000", "unix:gid:1"),
            // A selector subset is a different set too; and splitting type/value differently is a different selector.
            New("spiffe://example.org/web", "spiffe://example.org/agent", "unix:uid:10"),
        ], Ct);
        Assert.Equal(5, await E.CountAsync(Ct));
    }

    [Fact]
    public async Task Duplicates_inside_one_batch_are_a_conflict_and_nothing_is_written()
    {
        var e = await StoreAssert.ThrowsOneLineAsync<StoreConflictException>(() => E.CreateAsync(
        [
            New("spiffe://example.org/a", "spiffe://example.org/agent", "unix:uid:1"),
            New("spiffe://example.org/web", "spiffe://example.org/agent", "unix:uid:1000", "unix:gid:5"),
            New("spiffe://example.org/web", "spiffe://example.org/agent", "unix:gid:5", "unix:uid:1000"),
        ], Ct));
        Assert.Contains("spiffe://example.org/web", e.Message, StringComparison.Ordinal);
        Assert.Equal(0, await E.CountAsync(Ct));
        Assert.Equal(0, await E.CurrentRevisionAsync(Ct));

        await Assert.ThrowsAsync<StoreConflictException>(() => E.CreateAsync(
        [
            New("spiffe://example.org/a", "spiffe://example.org/agent", "unix:uid:1") with { Id = "same" },
            New("spiffe://example.org/b", "spiffe://example.org/agent", "unix:uid:2") with { Id = "same" },
        ], Ct));
        Assert.Equal(0, await E.CountAsync(Ct));
    }

    [Fact]
    public async Task Batch_create_is_all_or_nothing_when_a_later_entry_conflicts_with_the_database()
    {
        var existing = (await E.CreateAsync([New("spiffe://example.org/db", "spiffe://example.org/agent", "unix:uid:5432")], Ct))[0];
        var revision = await E.CurrentRevisionAsync(Ct);

        var e = await StoreAssert.ThrowsOneLineAsync<StoreConflictException>(() => E.CreateAsync(
        [
            New("spiffe://example.org/new1", "spiffe://example.org/agent", "unix:uid:1") with { Id = "new1" },
            New("spiffe://example.org/new2", "spiffe://example.org/agent", "unix:uid:2") with { Id = "new2" },
            New("spiffe://example.org/db", "spiffe://example.org/agent", "unix:uid:5432"),
        ], Ct));
        Assert.Contains(existing.Id, e.Message, StringComparison.Ordinal);

        Assert.Null(await E.GetAsync("new1", Ct));
        Assert.Null(await E.GetAsync("new2", Ct));
        Assert.Equal(1, await E.CountAsync(Ct));
        Assert.Equal(revision, await E.CurrentRevisionAsync(Ct));
        var changes = await E.ChangesSinceAsync(revision, ["spiffe://example.org/agent"], Ct);
        Assert.Empty(changes.Upserts);
    }

    [Fact]
    public async Task Concurrent_creates_of_the_same_entry_let_exactly_one_win()
    {
        var tasks = Enumerable.Range(0, 10).Select(_ => Task.Run(async () =>
        {
            try
            {
                await E.CreateAsync([New("spiffe://example.org/race", "spiffe://example.org/agent", "unix:uid:1")], Ct);
                return true;
            }
            catch (StoreConflictException)
            {
                return false;
            }
        }, Ct)).ToArray();
        var results = await Task.WhenAll(tasks);
        Assert.Single(results, r => r);
        Assert.Equal(1, await E.CountAsync(Ct));
    }

    [Fact]
    public async Task Concurrent_creates_from_many_tasks_all_land_with_distinct_revisions()
    {
        var tasks = Enumerable.Range(0, 20).Select(i => Task.Run(() =>
            E.CreateAsync([New($"spiffe://example.org/w{i}", "spiffe://example.org/agent", $"unix:uid:{i}")], Ct), Ct)).ToArray();
        var created = (await Task.WhenAll(tasks)).Select(r => Assert.Single(r)).ToList();
        Assert.Equal(20, created.Select(c => c.Revision).Distinct().Count());
        Assert.Equal(20, await E.CountAsync(Ct));
        Assert.Equal(20, await E.CurrentRevisionAsync(Ct));
    }

    [Fact]
    public async Task Readers_running_alongside_writers_always_see_a_consistent_snapshot()
    {
        const string p = "spiffe://example.org/agent";
        var writers = Enumerable.Range(0, 8).Select(w => Task.Run(async () =>
        {
            for (var i = 0; i < 5; i++)
                await E.CreateAsync([New($"spiffe://example.org/w{w}-{i}", p, "unix:uid:1")], Ct);
        }, Ct)).ToList();
        var readers = Enumerable.Range(0, 8).Select(_ => Task.Run(async () =>
        {
            var seen = new List<(long Revision, int Count)>();
            while (!writers.All(t => t.IsCompleted))
            {
                // Every write adds exactly one entry and one revision, so a consistent full state has Count == Revision.
                var full = await E.ChangesSinceAsync(0, [p], Ct);
                seen.Add((full.Revision, full.Upserts.Count));
                await E.ListAsync(new EntryFilter(ParentId: p), 7, null, Ct);
            }
            return seen;
        }, Ct)).ToList();

        await Task.WhenAll(writers);
        var observations = (await Task.WhenAll(readers)).SelectMany(x => x).ToList();
        Assert.All(observations, o => Assert.Equal(o.Revision, o.Count));
        Assert.Equal(40, await E.CountAsync(Ct));
        Assert.Equal(40, await E.CurrentRevisionAsync(Ct));
    }

    [Fact]
    public async Task Update_replaces_the_entry_with_a_new_revision_and_keeps_created_at()
    {
        var created = (await E.CreateAsync([New("spiffe://example.org/web", "spiffe://example.org/agent", "unix:uid:1000")], Ct))[0];
        Time.Advance(TimeSpan.FromMinutes(5));

        var updated = await E.UpdateAsync(created with { Selectors = [Sel("unix:uid:2000")], Hint = "moved", X509TtlSeconds = 60 }, Ct);

        Assert.Equal(created.Id, updated.Id);
        Assert.True(updated.Revision > created.Revision);
        Assert.Equal(created.CreatedAt, updated.CreatedAt);
        Assert.Equal([Sel("unix:uid:2000")], updated.Selectors);
        Assert.Equal(updated, await E.GetAsync(created.Id, Ct));
        Assert.Equal(updated.Revision, await E.CurrentRevisionAsync(Ct));
        // The old selector no longer finds it, the new one does.
        Assert.Empty((await E.ListAsync(new EntryFilter(Selector: Sel("unix:uid:1000")), 10, null, Ct)).Entries);
        Assert.Single((await E.ListAsync(new EntryFilter(Selector: Sel("unix:uid:2000")), 10, null, Ct)).Entries);
    }

    [Fact]
    public async Task Update_of_a_missing_entry_is_not_found_and_changes_nothing()
    {
        var e = await StoreAssert.ThrowsOneLineAsync<StoreNotFoundException>(() =>
            E.UpdateAsync(New("spiffe://example.org/web", "spiffe://example.org/agent", "unix:uid:1") with { Id = "ghost" }, Ct));
        Assert.Contains("ghost", e.Message, StringComparison.Ordinal);
        Assert.Equal(0, await E.CountAsync(Ct));
        Assert.Equal(0, await E.CurrentRevisionAsync(Ct));
    }

    [Fact]
    public async Task Update_that_would_duplicate_another_entry_is_a_conflict()
    {
        var created = await E.CreateAsync(
        [
            New("spiffe://example.org/a", "spiffe://example.org/agent", "unix:uid:1"),
            New("spiffe://example.org/b", "spiffe://example.org/agent", "unix:uid:2"),
        ], Ct);
        var e = await StoreAssert.ThrowsOneLineAsync<StoreConflictException>(() =>
            E.UpdateAsync(created[1] with { SpiffeId = "spiffe://example.org/a", Selectors = [Sel("unix:uid:1")] }, Ct));
        Assert.Contains(created[0].Id, e.Message, StringComparison.Ordinal);
        Assert.Equal(created[1], await E.GetAsync(created[1].Id, Ct));

        // Updating an entry to its own identity (no change) is fine.
        await E.UpdateAsync(created[0] with { Revision = 0 }, Ct);
    }

    [Fact]
    public async Task Update_with_a_stale_revision_is_a_conflict()
    {
        var created = (await E.CreateAsync([New("spiffe://example.org/a", "spiffe://example.org/agent", "unix:uid:1")], Ct))[0];
        var first = await E.UpdateAsync(created with { Hint = "first" }, Ct);
        await StoreAssert.ThrowsOneLineAsync<StoreConflictException>(() => E.UpdateAsync(created with { Hint = "second" }, Ct));
        Assert.Equal("first", (await E.GetAsync(created.Id, Ct))!.Hint);
        await E.UpdateAsync(first with { Hint = "third" }, Ct);
        Assert.Equal("third", (await E.GetAsync(created.Id, Ct))!.Hint);
    }

    [Fact]
    public async Task Delete_removes_the_entry_and_a_second_delete_is_not_found()
    {
        var created = (await E.CreateAsync([New("spiffe://example.org/a", "spiffe://example.org/agent", "unix:uid:1")], Ct))[0];
        await E.DeleteAsync(created.Id, Ct);
        Assert.Null(await E.GetAsync(created.Id, Ct));
        Assert.Equal(0, await E.CountAsync(Ct));
        Assert.Equal(2, await E.CurrentRevisionAsync(Ct));

        await StoreAssert.ThrowsOneLineAsync<StoreNotFoundException>(() => E.DeleteAsync(created.Id, Ct));
        Assert.Equal(2, await E.CurrentRevisionAsync(Ct));

        // The identity is free again.
        await E.CreateAsync([New("spiffe://example.org/a", "spiffe://example.org/agent", "unix:uid:1")], Ct);
    }

    [Fact]
    public async Task Invalid_entries_are_refused_before_anything_is_written()
    {
        await Assert.ThrowsAsync<ArgumentException>(() => E.CreateAsync([New("", "spiffe://example.org/agent", "unix:uid:1")], Ct));
        await Assert.ThrowsAsync<ArgumentException>(() => E.CreateAsync([New("spiffe://example.org/a", "", "unix:uid:1")], Ct));
        await Assert.ThrowsAsync<ArgumentException>(() => E.CreateAsync([New("spiffe://example.org/a", "spiffe://example.org/agent") with { Selectors = [new Selector("UNIX", "uid:1")] }], Ct));
        await Assert.ThrowsAsync<ArgumentException>(() => E.CreateAsync([New("spiffe://example.org/a", "spiffe://example.org/agent", "unix:uid:1") with { Id = "has space" }], Ct));
        await Assert.ThrowsAsync<ArgumentException>(() => E.CreateAsync([New("spiffe://example.org/a", "spiffe://example.org/agent", "unix:uid:1") with { X509TtlSeconds = -1 }], Ct));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => E.ListAsync(new EntryFilter(), 0, null, Ct));
        // An entry without selectors would match every workload of its parent: refused even if the API layer let it through.
        await Assert.ThrowsAsync<ArgumentException>(() => E.CreateAsync([New("spiffe://example.org/all", "spiffe://example.org/agent")], Ct));
        var ok = (await E.CreateAsync([New("spiffe://example.org/a", "spiffe://example.org/agent", "unix:uid:1")], Ct))[0];
        await Assert.ThrowsAsync<ArgumentException>(() => E.UpdateAsync(ok with { Selectors = [] }, Ct));
        Assert.Equal(ok, await E.GetAsync(ok.Id, Ct));
        await E.DeleteAsync(ok.Id, Ct);
        Assert.Equal(0, await E.CountAsync(Ct));
        Assert.Equal(2, await E.CurrentRevisionAsync(Ct));   // only the valid create and its delete
    }

    // ---------------------------------------------------------------- entries: listing

    [Fact]
    public async Task List_pages_through_all_entries_in_a_stable_order()
    {
        var created = await E.CreateAsync(Enumerable.Range(0, 25)
            .Select(i => New($"spiffe://example.org/w{i}", "spiffe://example.org/agent", $"unix:uid:{i}")).ToList(), Ct);

        var pages = new List<EntryPage>();
        string? token = null;
        do
        {
            var page = await E.ListAsync(new EntryFilter(), 10, token, Ct);
            pages.Add(page);
            token = page.NextPageToken;
        }
        while (token is not null && pages.Count < 10);

        Assert.Equal([10, 10, 5], pages.Select(p => p.Entries.Count));
        Assert.Null(pages[^1].NextPageToken);
        var ids = pages.SelectMany(p => p.Entries).Select(e => e.Id).ToList();
        Assert.Equal(created.Select(e => e.Id).Order(StringComparer.Ordinal), ids);

        // Same token, same page.
        var again = await E.ListAsync(new EntryFilter(), 10, pages[0].NextPageToken, Ct);
        Assert.Equal(pages[1].Entries.Select(e => e.Id), again.Entries.Select(e => e.Id));

        // Exactly one full page: no next token.
        var all = await E.ListAsync(new EntryFilter(), 25, null, Ct);
        Assert.Equal(25, all.Entries.Count);
        Assert.Null(all.NextPageToken);
    }

    [Fact]
    public async Task List_keeps_its_place_when_entries_are_deleted_between_pages()
    {
        var created = await E.CreateAsync(Enumerable.Range(0, 6)
            .Select(i => New($"spiffe://example.org/w{i}", "spiffe://example.org/agent", $"unix:uid:{i}")).ToList(), Ct);
        var sorted = created.Select(e => e.Id).Order(StringComparer.Ordinal).ToList();
        var first = await E.ListAsync(new EntryFilter(), 3, null, Ct);
        await E.DeleteAsync(sorted[2], Ct);   // the last entry of the first page
        var second = await E.ListAsync(new EntryFilter(), 3, first.NextPageToken, Ct);
        Assert.Equal(sorted[3..], second.Entries.Select(e => e.Id));
    }

    [Theory]
    [InlineData("garbage")]
    [InlineData("e1.")]
    [InlineData("e1.!!!.00000000")]
    [InlineData("e1.YWJj.ffffffff")]
    public async Task List_rejects_a_page_token_it_did_not_make(string token)
    {
        await E.CreateAsync([New("spiffe://example.org/a", "spiffe://example.org/agent", "unix:uid:1")], Ct);
        await StoreAssert.ThrowsOneLineAsync<StoreException>(() => E.ListAsync(new EntryFilter(), 10, token, Ct));
    }

    [Fact]
    public async Task List_rejects_a_page_token_made_for_another_filter()
    {
        await E.CreateAsync(Enumerable.Range(0, 3)
            .Select(i => New($"spiffe://example.org/w{i}", "spiffe://example.org/agent", $"unix:uid:{i}")).ToList(), Ct);
        var page = await E.ListAsync(new EntryFilter(ParentId: "spiffe://example.org/agent"), 1, null, Ct);
        Assert.NotNull(page.NextPageToken);
        await StoreAssert.ThrowsOneLineAsync<StoreException>(() => E.ListAsync(new EntryFilter(), 1, page.NextPageToken, Ct));
        // A token whose id part was edited by the caller does not match its tag either way; a tampered tag is refused.
        var tampered = page.NextPageToken![..^1] + (page.NextPageToken[^1] == '0' ? '1' : '0');
        await StoreAssert.ThrowsOneLineAsync<StoreException>(() =>
            E.ListAsync(new EntryFilter(ParentId: "spiffe://example.org/agent"), 1, tampered, Ct));
    }

    [Fact]
    public async Task List_filters_by_parent_spiffe_id_and_selector()
    {
        await E.CreateAsync(
        [
            New("spiffe://example.org/web", "spiffe://example.org/agent/a", "unix:uid:1000", "unix:gid:1") with { Id = "1" },
            New("spiffe://example.org/web", "spiffe://example.org/agent/b", "unix:uid:1000") with { Id = "2" },
            New("spiffe://example.org/db", "spiffe://example.org/agent/a", "unix:uid:5432") with { Id = "3" },
            New("spiffe://example.org/db", "spiffe://example.org/agent/b", "unix:uid:5432", "unix:gid:1") with { Id = "4" },
        ], Ct);

        async Task<string[]> Ids(EntryFilter f) => (await E.ListAsync(f, 100, null, Ct)).Entries.Select(e => e.Id).ToArray();

        Assert.Equal(["1", "3"], await Ids(new EntryFilter(ParentId: "spiffe://example.org/agent/a")));
        Assert.Equal(["3", "4"], await Ids(new EntryFilter(SpiffeId: "spiffe://example.org/db")));
        Assert.Equal(["1", "4"], await Ids(new EntryFilter(Selector: Sel("unix:gid:1"))));
        Assert.Equal(["4"], await Ids(new EntryFilter(ParentId: "spiffe://example.org/agent/b", Selector: Sel("unix:gid:1"))));
        Assert.Equal(["2"], await Ids(new EntryFilter("spiffe://example.org/agent/b", "spiffe://example.org/web", Sel("unix:uid:1000"))));
        Assert.Empty(await Ids(new EntryFilter(ParentId: "spiffe://example.org/agent/c")));
        Assert.Equal(["1", "2", "3", "4"], await Ids(new EntryFilter()));
    }

    [Fact]
    public async Task Filter_values_are_data_not_sql()
    {
        await E.CreateAsync([New("spiffe://example.org/web", "spiffe://example.org/agent", "unix:uid:1")], Ct);
        // An attacker-controlled filter tries to widen the query; it must match nothing.
        foreach (var evil in new[] { "' OR '1'='1", "x' OR 1=1 --", "spiffe://example.org/agent'; DROP TABLE entries; --", "%" })
        {
            Assert.Empty((await E.ListAsync(new EntryFilter(ParentId: evil), 10, null, Ct)).Entries);
            Assert.Empty((await E.ListAsync(new EntryFilter(SpiffeId: evil), 10, null, Ct)).Entries);
            Assert.Null(await E.GetAsync(evil, Ct));
            Assert.Empty((await E.ChangesSinceAsync(0, [evil], Ct)).Upserts);
        }
        Assert.Equal(1, await E.CountAsync(Ct));
    }

    // ---------------------------------------------------------------- revision and sync

    [Fact]
    public async Task Revision_moves_up_by_one_per_write_and_not_on_failed_writes()
    {
        var revisions = new List<long> { await E.CurrentRevisionAsync(Ct) };
        var a = (await E.CreateAsync([New("spiffe://example.org/a", "spiffe://example.org/agent", "unix:uid:1")], Ct))[0];
        revisions.Add(await E.CurrentRevisionAsync(Ct));
        await E.CreateAsync([New("spiffe://example.org/b", "spiffe://example.org/agent", "unix:uid:2"), New("spiffe://example.org/c", "spiffe://example.org/agent", "unix:uid:3")], Ct);
        revisions.Add(await E.CurrentRevisionAsync(Ct));
        await Assert.ThrowsAsync<StoreConflictException>(() => E.CreateAsync([New("spiffe://example.org/a", "spiffe://example.org/agent", "unix:uid:1")], Ct));
        await Assert.ThrowsAsync<StoreNotFoundException>(() => E.DeleteAsync("ghost", Ct));
        revisions.Add(await E.CurrentRevisionAsync(Ct));
        a = await E.UpdateAsync(a with { Hint = "x" }, Ct);
        revisions.Add(await E.CurrentRevisionAsync(Ct));
        await E.DeleteAsync(a.Id, Ct);
        revisions.Add(await E.CurrentRevisionAsync(Ct));

        Assert.Equal([0L, 1, 2, 2, 3, 4], revisions);
        await ReopenAsync();
        Assert.Equal(4, await Store.Entries.CurrentRevisionAsync(Ct));
    }

    [Fact]
    public async Task Changes_since_zero_is_the_full_state_of_the_given_parents()
    {
        await E.CreateAsync(
        [
            New("spiffe://example.org/a", "spiffe://example.org/agent/1", "unix:uid:1") with { Id = "a" },
            New("spiffe://example.org/b", "spiffe://example.org/agent/2", "unix:uid:1") with { Id = "b" },
            New("spiffe://example.org/c", "spiffe://example.org/agent/3", "unix:uid:1") with { Id = "c" },
        ], Ct);
        await E.DeleteAsync("c", Ct);

        var changes = await E.ChangesSinceAsync(0, ["spiffe://example.org/agent/1", "spiffe://example.org/agent/2", "spiffe://example.org/agent/3"], Ct);
        Assert.True(changes.Full);
        Assert.Equal(2, changes.Revision);
        Assert.Equal(["a", "b"], changes.Upserts.Select(e => e.Id));
        Assert.Empty(changes.DeletedIds);

        var one = await E.ChangesSinceAsync(0, ["spiffe://example.org/agent/2"], Ct);
        Assert.Equal(["b"], one.Upserts.Select(e => e.Id));

        var none = await E.ChangesSinceAsync(0, [], Ct);
        Assert.Empty(none.Upserts);
        Assert.Equal(2, none.Revision);
    }

    [Fact]
    public async Task Changes_since_a_revision_are_the_creates_updates_and_deletes_after_it()
    {
        const string p = "spiffe://example.org/agent/1";
        var created = await E.CreateAsync(
        [
            New("spiffe://example.org/a", p, "unix:uid:1") with { Id = "a" },
            New("spiffe://example.org/b", p, "unix:uid:1") with { Id = "b" },
            New("spiffe://example.org/c", p, "unix:uid:1") with { Id = "c" },
            New("spiffe://example.org/x", "spiffe://example.org/agent/other", "unix:uid:1") with { Id = "x" },
        ], Ct);
        var since = await E.CurrentRevisionAsync(Ct);

        await E.UpdateAsync(created[0] with { Hint = "changed" }, Ct);
        await E.DeleteAsync("b", Ct);
        await E.CreateAsync([New("spiffe://example.org/d", p, "unix:uid:1") with { Id = "d" }], Ct);
        await E.DeleteAsync("x", Ct);   // another agent's entry: not reported here

        var changes = await E.ChangesSinceAsync(since, [p], Ct);
        Assert.False(changes.Full);
        Assert.Equal(await E.CurrentRevisionAsync(Ct), changes.Revision);
        Assert.Equal(["a", "d"], changes.Upserts.Select(e => e.Id));
        Assert.Equal("changed", changes.Upserts[0].Hint);
        Assert.Equal(["b"], changes.DeletedIds);

        var nothing = await E.ChangesSinceAsync(changes.Revision, [p], Ct);
        Assert.Empty(nothing.Upserts);
        Assert.Empty(nothing.DeletedIds);
        Assert.False(nothing.Full);
    }

    [Fact]
    public async Task An_entry_moved_to_another_parent_is_a_deletion_for_the_old_parent()
    {
        const string a = "spiffe://example.org/agent/a", b = "spiffe://example.org/agent/b";
        var entry = (await E.CreateAsync([New("spiffe://example.org/w", a, "unix:uid:1") with { Id = "w" }], Ct))[0];
        var since = await E.CurrentRevisionAsync(Ct);

        await E.UpdateAsync(entry with { ParentId = b }, Ct);

        var forA = await E.ChangesSinceAsync(since, [a], Ct);
        Assert.Empty(forA.Upserts);
        Assert.Equal(["w"], forA.DeletedIds);

        var forB = await E.ChangesSinceAsync(since, [b], Ct);
        Assert.Equal(["w"], forB.Upserts.Select(e => e.Id));
        Assert.Empty(forB.DeletedIds);

        // An agent serving both (alias) just sees the upsert.
        var forBoth = await E.ChangesSinceAsync(since, [a, b], Ct);
        Assert.Equal(["w"], forBoth.Upserts.Select(e => e.Id));
        Assert.Empty(forBoth.DeletedIds);

        // Moved back: for A it is an upsert again, not a deletion.
        var moved = (await E.GetAsync("w", Ct))!;
        await E.UpdateAsync(moved with { ParentId = a }, Ct);
        var forAAgain = await E.ChangesSinceAsync(since, [a], Ct);
        Assert.Equal(["w"], forAAgain.Upserts.Select(e => e.Id));
        Assert.Empty(forAAgain.DeletedIds);
    }

    [Fact]
    public async Task Changes_since_a_revision_beyond_the_store_is_the_full_state()
    {
        await E.CreateAsync([New("spiffe://example.org/a", "spiffe://example.org/agent", "unix:uid:1") with { Id = "a" }], Ct);
        var changes = await E.ChangesSinceAsync(1000, ["spiffe://example.org/agent"], Ct);
        Assert.True(changes.Full);
        Assert.Equal(["a"], changes.Upserts.Select(e => e.Id));
        Assert.Equal(1, changes.Revision);
    }

    [Fact]
    public async Task Pruned_deletions_turn_an_old_delta_into_a_full_state()
    {
        const string p = "spiffe://example.org/agent";
        await E.CreateAsync(
        [
            New("spiffe://example.org/a", p, "unix:uid:1") with { Id = "a" },
            New("spiffe://example.org/b", p, "unix:uid:1") with { Id = "b" },
            New("spiffe://example.org/c", p, "unix:uid:1") with { Id = "c" },
        ], Ct);
        var since = await E.CurrentRevisionAsync(Ct);
        await E.DeleteAsync("a", Ct);                       // old deletion
        var afterOld = await E.CurrentRevisionAsync(Ct);
        Time.Advance(TimeSpan.FromDays(2));
        await E.DeleteAsync("b", Ct);                       // recent deletion

        Assert.Equal(0, await E.PruneTombstonesAsync(Start.AddSeconds(-1), Ct));
        Assert.Equal(1, await E.PruneTombstonesAsync(Start.AddDays(1), Ct));
        Assert.Equal(0, await E.PruneTombstonesAsync(Start.AddDays(1), Ct));

        // From before the pruned deletion: the delta would miss "a", so the answer is the full state.
        var old = await E.ChangesSinceAsync(since, [p], Ct);
        Assert.True(old.Full);
        Assert.Equal(["c"], old.Upserts.Select(e => e.Id));
        Assert.Empty(old.DeletedIds);

        // From after it: still an exact delta with the recent deletion.
        var recent = await E.ChangesSinceAsync(afterOld, [p], Ct);
        Assert.False(recent.Full);
        Assert.Equal(["b"], recent.DeletedIds);
        Assert.Empty(recent.Upserts);
    }

    [Fact]
    public async Task WaitForChange_wakes_when_an_entry_is_written()
    {
        var revision = await E.CurrentRevisionAsync(Ct);
        var wait = E.WaitForChangeAsync(revision, Ct);
        await Task.Yield();
        Assert.False(wait.IsCompleted);

        await E.CreateAsync([New("spiffe://example.org/a", "spiffe://example.org/agent", "unix:uid:1")], Ct);
        await wait.WaitAsync(TimeSpan.FromSeconds(10), Ct);
        Assert.True(wait.IsCompletedSuccessfully);
    }

    [Fact]
    public async Task WaitForChange_returns_at_once_when_the_revision_is_already_past()
    {
        await E.CreateAsync([New("spiffe://example.org/a", "spiffe://example.org/agent", "unix:uid:1")], Ct);
        await E.WaitForChangeAsync(0, Ct).WaitAsync(TimeSpan.FromSeconds(10), Ct);
        var after = E.WaitForChangeAsync(1, Ct);
        await Task.Yield();
        Assert.False(after.IsCompleted);
        await E.DeleteAsync((await E.ListAsync(new EntryFilter(), 1, null, Ct)).Entries[0].Id, Ct);
        await after.WaitAsync(TimeSpan.FromSeconds(10), Ct);
    }

    [Fact]
    public async Task WaitForChange_honours_cancellation()
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var wait = E.WaitForChangeAsync(await E.CurrentRevisionAsync(Ct), cts.Token);
        await Task.Yield();
        Assert.False(wait.IsCompleted);
        await cts.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => wait.WaitAsync(TimeSpan.FromSeconds(10), Ct));
    }

    [Fact]
    public async Task WaitForChange_sees_writes_made_through_another_store_on_the_same_database()
    {
        var watcher = await OpenExtraAsync(WritStoreOptions.Default with { ChangePollInterval = TimeSpan.FromMilliseconds(100) });
        var wait = watcher.Entries.WaitForChangeAsync(await watcher.Entries.CurrentRevisionAsync(Ct), Ct);
        await Task.Yield();
        Assert.False(wait.IsCompleted);

        await E.CreateAsync([New("spiffe://example.org/a", "spiffe://example.org/agent", "unix:uid:1")], Ct);   // the "other server"
        await wait.WaitAsync(TimeSpan.FromSeconds(10), Ct);
        Assert.Equal(1, await watcher.Entries.CurrentRevisionAsync(Ct));
    }

    [Fact]
    public async Task Disposing_the_store_releases_its_waiters()
    {
        var store = await OpenExtraAsync();
        var wait = store.Entries.WaitForChangeAsync(await store.Entries.CurrentRevisionAsync(Ct), Ct);
        await Task.Yield();
        Assert.False(wait.IsCompleted);
        await store.DisposeAsync();
        await Assert.ThrowsAsync<ObjectDisposedException>(() => wait.WaitAsync(TimeSpan.FromSeconds(10), Ct));
    }

    // ---------------------------------------------------------------- join tokens

    private static (byte[] Hash, JoinToken Token) NewToken(string id, DateTimeOffset expires, string? alias = null)
    {
        var hash = SHA256.HashData(RandomNumberGenerator.GetBytes(32));
        return (hash, new JoinToken(id, hash, expires, alias, Start));
    }

    [Fact]
    public async Task Join_token_is_consumed_once_then_already_used()
    {
        var (hash, token) = NewToken("tok-1", Start.AddHours(1), "spiffe://example.org/alias/web-nodes");
        await Store.JoinTokens.CreateAsync(token, Ct);

        var first = await Store.JoinTokens.ConsumeAsync(hash, Start.AddMinutes(1), Ct);
        Assert.Equal(JoinTokenOutcome.Consumed, first.Outcome);
        Assert.Equal("tok-1", first.Token!.Id);
        Assert.Equal("spiffe://example.org/alias/web-nodes", first.Token.Alias);
        Assert.Equal(hash, first.Token.SecretHash);
        Assert.Equal(Start.AddHours(1), first.Token.ExpiresAt);

        var second = await Store.JoinTokens.ConsumeAsync(hash, Start.AddMinutes(2), Ct);
        Assert.Equal(JoinTokenOutcome.AlreadyUsed, second.Outcome);
        Assert.Equal("tok-1", second.Token!.Id);

        await ReopenAsync();
        Assert.Equal(JoinTokenOutcome.AlreadyUsed, (await Store.JoinTokens.ConsumeAsync(hash, Start.AddMinutes(3), Ct)).Outcome);
    }

    [Fact]
    public async Task Join_token_consumed_by_20_parallel_callers_is_consumed_exactly_once()
    {
        var (hash, token) = NewToken("tok-race", Start.AddHours(1));
        await Store.JoinTokens.CreateAsync(token, Ct);
        // Two stores on the same database, like two servers: the database, not a process lock, must decide.
        var other = await OpenExtraAsync();

        using var go = new ManualResetEventSlim();
        var tasks = Enumerable.Range(0, 20).Select(i => Task.Run(async () =>
        {
            go.Wait(Ct);
            var store = i % 2 == 0 ? Store : other;
            return (await store.JoinTokens.ConsumeAsync(hash, Start.AddMinutes(1), Ct)).Outcome;
        }, Ct)).ToArray();
        go.Set();
        var outcomes = await Task.WhenAll(tasks);

        Assert.Single(outcomes, o => o == JoinTokenOutcome.Consumed);
        Assert.Equal(19, outcomes.Count(o => o == JoinTokenOutcome.AlreadyUsed));
    }

    [Fact]
    public async Task Expired_join_token_is_expired_and_stays_unused()
    {
        var (hash, token) = NewToken("tok-old", Start.AddMinutes(10));
        await Store.JoinTokens.CreateAsync(token, Ct);

        var atExpiry = await Store.JoinTokens.ConsumeAsync(hash, Start.AddMinutes(10), Ct);
        Assert.Equal(JoinTokenOutcome.Expired, atExpiry.Outcome);
        Assert.Equal("tok-old", atExpiry.Token!.Id);
        Assert.Equal(JoinTokenOutcome.Expired, (await Store.JoinTokens.ConsumeAsync(hash, Start.AddHours(1), Ct)).Outcome);
        // The failed attempts did not mark it used: expiry is judged against the caller's clock only.
        Assert.Equal(JoinTokenOutcome.Consumed, (await Store.JoinTokens.ConsumeAsync(hash, Start.AddMinutes(9), Ct)).Outcome);
    }

    [Fact]
    public async Task Unknown_join_token_is_unknown()
    {
        var (_, token) = NewToken("tok-1", Start.AddHours(1));
        await Store.JoinTokens.CreateAsync(token, Ct);
        var guess = await Store.JoinTokens.ConsumeAsync(SHA256.HashData("guess"u8), Start, Ct);
        Assert.Equal(JoinTokenOutcome.Unknown, guess.Outcome);
        Assert.Null(guess.Token);
    }

    [Fact]
    public async Task Join_token_with_an_existing_id_or_secret_is_a_conflict()
    {
        var (hash, token) = NewToken("tok-1", Start.AddHours(1));
        await Store.JoinTokens.CreateAsync(token, Ct);
        await StoreAssert.ThrowsOneLineAsync<StoreConflictException>(() => Store.JoinTokens.CreateAsync(token with { SecretHash = SHA256.HashData("x"u8) }, Ct));
        var e = await StoreAssert.ThrowsOneLineAsync<StoreConflictException>(() => Store.JoinTokens.CreateAsync(token with { Id = "tok-2" }, Ct));
        Assert.DoesNotContain(Convert.ToHexString(hash), e.Message, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public async Task Prune_removes_expired_and_used_tokens_older_than_the_cutoff()
    {
        var (usedHash, used) = NewToken("used", Start.AddDays(1));
        var (_, expired) = NewToken("expired", Start.AddMinutes(5));
        var (liveHash, live) = NewToken("live", Start.AddDays(1));
        foreach (var t in new[] { used, expired, live })
            await Store.JoinTokens.CreateAsync(t, Ct);
        await Store.JoinTokens.ConsumeAsync(usedHash, Start.AddMinutes(1), Ct);

        Assert.Equal(2, await Store.JoinTokens.PruneAsync(Start.AddHours(1), Ct));
        Assert.Equal(0, await Store.JoinTokens.PruneAsync(Start.AddHours(1), Ct));
        Assert.Equal(JoinTokenOutcome.Unknown, (await Store.JoinTokens.ConsumeAsync(usedHash, Start.AddHours(2), Ct)).Outcome);
        Assert.Equal(JoinTokenOutcome.Consumed, (await Store.JoinTokens.ConsumeAsync(liveHash, Start.AddHours(2), Ct)).Outcome);
    }

    // ---------------------------------------------------------------- nodes

    private static AttestedNode Node(string id) => new()
    {
        SpiffeId = id,
        AttestationType = "join_token",
        SerialNumber = "0a1b2c",
        ExpiresAt = Start.AddHours(1),
        Selectors = [Sel("join_token:tok-1")],
        Aliases = ["spiffe://example.org/alias/web-nodes"],
    };

    [Fact]
    public async Task Nodes_create_get_list_update_delete()
    {
        await Store.Nodes.CreateAsync(Node("spiffe://example.org/spire/agent/join_token/b"), Ct);
        await Store.Nodes.CreateAsync(Node("spiffe://example.org/spire/agent/join_token/a"), Ct);

        var a = await Store.Nodes.GetAsync("spiffe://example.org/spire/agent/join_token/a", Ct);
        Assert.NotNull(a);
        Assert.Equal(Node(a.SpiffeId) with { CreatedAt = Start, UpdatedAt = Start }, a);
        Assert.Null(await Store.Nodes.GetAsync("spiffe://example.org/nope", Ct));
        Assert.Equal(["spiffe://example.org/spire/agent/join_token/a", "spiffe://example.org/spire/agent/join_token/b"],
            (await Store.Nodes.ListAsync(Ct)).Select(n => n.SpiffeId));

        Time.Advance(TimeSpan.FromMinutes(30));
        var updated = await Store.Nodes.UpdateAsync(a with { SerialNumber = "ff", ExpiresAt = Start.AddHours(2), Banned = true, CreatedAt = default }, Ct);
        Assert.Equal(Start, updated.CreatedAt);
        Assert.Equal(Start.AddMinutes(30), updated.UpdatedAt);
        var read = await Store.Nodes.GetAsync(a.SpiffeId, Ct);
        Assert.Equal(updated, read);
        Assert.True(read!.Banned);
        Assert.Equal("ff", read.SerialNumber);

        await Store.Nodes.DeleteAsync(a.SpiffeId, Ct);
        Assert.Null(await Store.Nodes.GetAsync(a.SpiffeId, Ct));
        Assert.Single(await Store.Nodes.ListAsync(Ct));
    }

    [Fact]
    public async Task Nodes_conflict_and_not_found()
    {
        await Store.Nodes.CreateAsync(Node("spiffe://example.org/agent/a"), Ct);
        await StoreAssert.ThrowsOneLineAsync<StoreConflictException>(() => Store.Nodes.CreateAsync(Node("spiffe://example.org/agent/a") with { SerialNumber = "evil" }, Ct));
        Assert.Equal("0a1b2c", (await Store.Nodes.GetAsync("spiffe://example.org/agent/a", Ct))!.SerialNumber);
        await StoreAssert.ThrowsOneLineAsync<StoreNotFoundException>(() => Store.Nodes.UpdateAsync(Node("spiffe://example.org/agent/x"), Ct));
        await StoreAssert.ThrowsOneLineAsync<StoreNotFoundException>(() => Store.Nodes.DeleteAsync("spiffe://example.org/agent/x", Ct));
        Assert.Null(await Store.Nodes.GetAsync("spiffe://example.org/agent/x", Ct));
    }

    // ---------------------------------------------------------------- bundles and CA journal

    [Fact]
    public async Task Bundle_compare_and_swap_stores_only_over_the_expected_sequence()
    {
        Assert.False(await Store.Bundles.PutIfSequenceAsync(new StoredBundle("example.org", """{"keys":[1]}""", 2, Start), 1, Ct));
        Assert.Null(await Store.Bundles.GetAsync("example.org", Ct));
        Assert.True(await Store.Bundles.PutIfSequenceAsync(new StoredBundle("example.org", """{"keys":[1]}""", 1, Start), 0, Ct));
        Assert.False(await Store.Bundles.PutIfSequenceAsync(new StoredBundle("example.org", """{"keys":[9]}""", 1, Start), 0, Ct));
        Assert.True(await Store.Bundles.PutIfSequenceAsync(new StoredBundle("example.org", """{"keys":[2]}""", 2, Start), 1, Ct));
        Assert.False(await Store.Bundles.PutIfSequenceAsync(new StoredBundle("example.org", """{"keys":[3]}""", 2, Start), 1, Ct));
        Assert.Equal("""{"keys":[2]}""", (await Store.Bundles.GetAsync("example.org", Ct))!.SpiffeBundleJson);
    }

    [Fact]
    public async Task Ca_journals_list_and_rename_once()
    {
        await Store.CaJournal.PutAsync(new CaJournal("ca", [1], Start), Ct);
        await Store.CaJournal.PutAsync(new CaJournal("ca/s-b", [2], Start), Ct);
        Assert.Equal(["ca", "ca/s-b"], (await Store.CaJournal.ListAsync(Ct)).Select(j => j.Name));
        Assert.False(await Store.CaJournal.RenameAsync("ca", "ca/s-b", Ct));   // taken: nothing changes
        Assert.True(await Store.CaJournal.RenameAsync("ca", "ca/s-a", Ct));
        Assert.False(await Store.CaJournal.RenameAsync("ca", "ca/s-c", Ct));   // gone: another server was first
        Assert.Equal([1], (await Store.CaJournal.GetAsync("ca/s-a", Ct))!.Data);
        Assert.Null(await Store.CaJournal.GetAsync("ca", Ct));
    }

    [Fact]
    public async Task Servers_are_recorded_with_a_heartbeat()
    {
        await Store.Servers.StartedAsync(new ServerRecord("s-b", "127.0.0.1:2", Start, Start), Ct);
        await Store.Servers.StartedAsync(new ServerRecord("s-a", "127.0.0.1:1", Start, Start), Ct);
        Assert.True(await Store.Servers.HeartbeatAsync("s-a", "", Start.AddSeconds(10), Ct));
        await Store.Servers.StartedAsync(new ServerRecord("s-b", "127.0.0.1:3", Start.AddMinutes(1), Start.AddMinutes(1)), Ct);
        Assert.Equal(
            [new ServerRecord("s-a", "127.0.0.1:1", Start, Start.AddSeconds(10)), new ServerRecord("s-b", "127.0.0.1:3", Start.AddMinutes(1), Start.AddMinutes(1))],
            await Store.Servers.ListAsync(Ct));
    }

    [Fact]
    public async Task A_second_live_process_with_one_server_id_fails_both_heartbeats_and_a_restart_after_a_crash_does_not()
    {
        await Store.Servers.StartedAsync(new ServerRecord("s-c", "127.0.0.1:1", Start, Start) { BootNonce = "n1" }, Ct);
        Assert.True(await Store.Servers.HeartbeatAsync("s-c", "n1", Start.AddSeconds(1), Ct));
        // A restart after kill -9: the new process writes its nonce; the dead one never beats again. Nothing to see.
        await Store.Servers.StartedAsync(new ServerRecord("s-c", "127.0.0.1:1", Start.AddSeconds(2), Start.AddSeconds(2)) { BootNonce = "n2" }, Ct);
        Assert.True(await Store.Servers.HeartbeatAsync("s-c", "n2", Start.AddSeconds(3), Ct));
        // A copy of its data dir starts while it lives: its next heartbeat finds another nonce, and marks the row ...
        await Store.Servers.StartedAsync(new ServerRecord("s-c", "127.0.0.2:1", Start.AddSeconds(4), Start.AddSeconds(4)) { BootNonce = "n3" }, Ct);
        Assert.False(await Store.Servers.HeartbeatAsync("s-c", "n2", Start.AddSeconds(5), Ct));
        // ... so the copy's heartbeat fails too: neither can tell which one is rightful.
        Assert.False(await Store.Servers.HeartbeatAsync("s-c", "n3", Start.AddSeconds(5), Ct));
        Assert.Equal(Start.AddSeconds(4), (await Store.Servers.ListAsync(Ct)).Single(s => s.ServerId == "s-c").LastSeen);
        // The operator stops one and restarts the other: it beats again.
        await Store.Servers.StartedAsync(new ServerRecord("s-c", "127.0.0.1:1", Start.AddSeconds(9), Start.AddSeconds(9)) { BootNonce = "n4" }, Ct);
        Assert.True(await Store.Servers.HeartbeatAsync("s-c", "n4", Start.AddSeconds(10), Ct));
    }

    [Fact]
    public async Task Each_server_replaces_its_own_published_crls_and_expired_ones_are_not_listed()
    {
        await Store.Servers.PublishCrlsAsync("s-a", [new ServerCrl("s-a", "ka1", [1], Start.AddHours(1)), new ServerCrl("s-a", "ka0", [2], Start.AddHours(1))], Ct);
        await Store.Servers.PublishCrlsAsync("s-b", [new ServerCrl("s-b", "kb1", [3], Start.AddMinutes(1))], Ct);
        // A new publication replaces all of that server's rows (a retired authority gone), and leaves the others alone.
        await Store.Servers.PublishCrlsAsync("s-a", [new ServerCrl("s-a", "ka1", [4], Start.AddHours(2))], Ct);
        var all = await Store.Servers.ListCrlsAsync(Start, Ct);
        Assert.Equal(["s-a/ka1/4", "s-b/kb1/3"], all.Select(c => $"{c.ServerId}/{c.AuthorityKeyId}/{string.Join(",", c.Der)}"));
        Assert.Equal(Start.AddHours(2), all[0].NextUpdate);
        // Past its nextUpdate a CRL is no use to a relying party: not listed.
        Assert.Equal(["s-a"], (await Store.Servers.ListCrlsAsync(Start.AddMinutes(1), Ct)).Select(c => c.ServerId));
    }

    [Fact]
    public async Task Bundles_put_get_replace_list()
    {
        Assert.Null(await Store.Bundles.GetAsync("example.org", Ct));
        await Store.Bundles.PutAsync(new StoredBundle("example.org", """{"keys":[]}""", 1, Start), Ct);
        await Store.Bundles.PutAsync(new StoredBundle("another.org", """{"keys":[1]}""", 7, Start), Ct);
        await Store.Bundles.PutAsync(new StoredBundle("example.org", """{"keys":[2]}""", 2, Start.AddMinutes(1)), Ct);

        Assert.Equal(new StoredBundle("example.org", """{"keys":[2]}""", 2, Start.AddMinutes(1)), await Store.Bundles.GetAsync("example.org", Ct));
        Assert.Equal(["another.org", "example.org"], (await Store.Bundles.ListAsync(Ct)).Select(b => b.TrustDomain));
    }

    [Fact]
    public async Task Ca_journal_put_get_replace()
    {
        Assert.Null(await Store.CaJournal.GetAsync("ca", Ct));
        var data = RandomNumberGenerator.GetBytes(5000);
        await Store.CaJournal.PutAsync(new CaJournal("ca", [1, 2, 3], Start), Ct);
        await Store.CaJournal.PutAsync(new CaJournal("ca", data, Start.AddHours(1)), Ct);

        var read = await Store.CaJournal.GetAsync("ca", Ct);
        Assert.NotNull(read);
        Assert.Equal(data, read.Data);
        Assert.Equal(Start.AddHours(1), read.UpdatedAt);
        Assert.Null(await Store.CaJournal.GetAsync("other", Ct));
    }

    // ---------------------------------------------------------------- lifecycle

    [Fact]
    public async Task Reopening_keeps_all_data()
    {
        var entry = (await E.CreateAsync([New("spiffe://example.org/a", "spiffe://example.org/agent", "unix:uid:1")], Ct))[0];
        await Store.Nodes.CreateAsync(Node("spiffe://example.org/agent"), Ct);
        await Store.Bundles.PutAsync(new StoredBundle("example.org", "{}", 3, Start), Ct);
        await Store.CaJournal.PutAsync(new CaJournal("ca", [9], Start), Ct);

        await ReopenAsync();

        Assert.Equal(entry, await Store.Entries.GetAsync(entry.Id, Ct));
        Assert.Equal(1, await Store.Entries.CurrentRevisionAsync(Ct));
        Assert.NotNull(await Store.Nodes.GetAsync("spiffe://example.org/agent", Ct));
        Assert.Equal(3, (await Store.Bundles.GetAsync("example.org", Ct))!.Sequence);
        Assert.Equal([9], (await Store.CaJournal.GetAsync("ca", Ct))!.Data);
    }

    [Fact]
    public async Task Outage_pool_round_trips_and_racing_pooled_adds_never_exceed_it()
    {
        var entry = (await E.CreateAsync([New("spiffe://example.org/a", "spiffe://example.org/agent", "unix:uid:1") with { OutagePool = 3 }], Ct))[0];
        Assert.Equal(3, (await E.GetAsync(entry.Id, Ct))!.OutagePool);
        var adds = Enumerable.Range(0, 8).Select(i => Store.PooledSvids.TryAddAsync(
            [new PooledSvid($"{i:X4}", entry.Id, "spiffe://example.org/agent", Start, Start.AddHours(1))], Start, Ct)).ToArray();
        var results = await Task.WhenAll(adds);
        Assert.Equal(3, results.Count(r => r is null));
        Assert.All(results.Where(r => r is not null), r => Assert.Equal((3, 3), r!.Value));

        // A used one frees a slot; a repeated mark writes nothing; another agent's mark is unknown.
        var held = "";
        for (var i = 0; held.Length == 0; i++)
        {
            if (await Store.PooledSvids.GetAsync($"{i:X4}", Ct) is { } row)
                held = row.Serial;
        }
        Assert.Equal(PooledUseOutcome.Unknown, await Store.PooledSvids.MarkUsedAsync(held, "spiffe://example.org/other", "1:1", Start, [], Ct));
        Assert.Equal(PooledUseOutcome.Marked, await Store.PooledSvids.MarkUsedAsync(held, "spiffe://example.org/agent", "1:1", Start, [], Ct));
        Assert.Equal(PooledUseOutcome.AlreadyMarked, await Store.PooledSvids.MarkUsedAsync(held, "spiffe://example.org/agent", "2:2", Start, [], Ct));
        Assert.Equal("1:1", (await Store.PooledSvids.GetAsync(held, Ct))!.UsedInstance);
        Assert.Null(await Store.PooledSvids.TryAddAsync([new PooledSvid("FFFF", entry.Id, "spiffe://example.org/agent", Start, Start.AddHours(1))], Start, Ct));
        // Expired ones no longer count either.
        Assert.Null(await Store.PooledSvids.TryAddAsync([new PooledSvid("FFFE", entry.Id, "spiffe://example.org/agent", Start, Start.AddHours(1))], Start.AddHours(2), Ct));
    }

    [Fact]
    public async Task Upgrading_from_schema_version_1_keeps_the_data()
    {
        var entry = (await E.CreateAsync([New("spiffe://example.org/a", "spiffe://example.org/agent", "unix:uid:1")], Ct))[0];
        await E.DeleteAsync(entry.Id, Ct);
        await Store.DisposeAsync();
        Store = null!;
        // Turn the database back into what version 1 created.
        foreach (var table in new[] { "ledger", "ledger_head", "issued_credentials", "policy_versions", "revocations", "store_metadata", "tpm_reference_sets", "ci_sessions", "servers", "federation_relationships", "server_crls", "pooled_svids" })
            await ExecuteRawAsync($"DROP TABLE {table}");
        await ExecuteRawAsync("ALTER TABLE entries DROP COLUMN federates_with");
        await ExecuteRawAsync("ALTER TABLE entries DROP COLUMN outage_pool");
        await ExecuteRawAsync("DROP INDEX entries_revision");
        await ExecuteRawAsync("DROP INDEX entry_tombstones_revision");
        await ExecuteRawAsync("ALTER TABLE entry_tombstones DROP COLUMN deleted_at_us");
        await ExecuteRawAsync("ALTER TABLE store_revision DROP COLUMN tombstones_pruned_through");
        foreach (var column in new[] { "status", "status_reason", "attestor_state" })
            await ExecuteRawAsync($"ALTER TABLE nodes DROP COLUMN {column}");
        await ExecuteRawAsync("DELETE FROM schema_migrations WHERE version > 1");

        Store = await OpenAsync(Time, WritStoreOptions.Default);

        Assert.Equal(2, await Store.Entries.CurrentRevisionAsync(Ct));
        var changes = await Store.Entries.ChangesSinceAsync(1, ["spiffe://example.org/agent"], Ct);
        Assert.Equal([entry.Id], changes.DeletedIds);
        Assert.Equal(1, await Store.Entries.PruneTombstonesAsync(Start.AddDays(1), Ct));   // pre-upgrade tombstones count as oldest
    }

    [Fact]
    public async Task A_database_with_a_newer_schema_is_refused_with_upgrade_advice()
    {
        await E.CreateAsync([New("spiffe://example.org/a", "spiffe://example.org/agent", "unix:uid:1")], Ct);
        await Store.DisposeAsync();
        Store = null!;
        await ExecuteRawAsync("INSERT INTO schema_migrations (version, applied_at_us) VALUES (999, 0)");

        var e = await StoreAssert.ThrowsOneLineAsync<StoreUnavailableException>(() => OpenAsync(Time, WritStoreOptions.Default));
        Assert.Matches(@"database schema version 999 is newer than this writ supports \(\d+\): upgrade writ", e.Message);

        // Nothing was changed: removing the future version makes it open again, data intact.
        await ExecuteRawAsync("DELETE FROM schema_migrations WHERE version = 999");
        Store = await OpenAsync(Time, WritStoreOptions.Default);
        Assert.Equal(1, await Store.Entries.CountAsync(Ct));
    }
}
