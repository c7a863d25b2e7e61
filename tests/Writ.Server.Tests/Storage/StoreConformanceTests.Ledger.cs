using Writ.Server.Ledger;
using Writ.Server.Storage;

namespace Writ.Server.Tests.Storage;

/// <summary>The ledger, issued-credential and policy-version contract (issue #5), on every backend.</summary>
public abstract partial class StoreConformanceTests
{
    private LedgerEvent Event(string kind, string subject = "spiffe://example.org/w", string? decision = null, string data = "{}") =>
        new() { At = Time.GetUtcNow(), Kind = kind, Actor = "uid:1000", Subject = subject, DecisionId = decision, DataJson = data };

    private IssuedCredential Issued(string id, string entry = "e1", string agent = "spiffe://example.org/writ/agent/a", string? instance = "42:100", TimeSpan? ttl = null) => new()
    {
        Kind = "x509", Id = id, SpiffeId = "spiffe://example.org/w", EntryId = entry, AgentId = agent, InstanceId = instance,
        DecisionId = "d-" + id, IssuedAt = Time.GetUtcNow(), ExpiresAt = Time.GetUtcNow() + (ttl ?? TimeSpan.FromHours(1)),
    };

    private async Task<List<LedgerEvent>> AllLedgerAsync(IWritStore store)
    {
        var all = new List<LedgerEvent>();
        long after = 0;
        while (true)
        {
            var page = await store.Ledger.ListAsync(after, 7, null, null, Ct);
            if (page.Count == 0)
                return all;
            all.AddRange(page);
            after = page[^1].Seq;
        }
    }

    private static void AssertChained(IReadOnlyList<LedgerEvent> events)
    {
        var prev = LedgerHash.Genesis;
        for (var i = 0; i < events.Count; i++)
        {
            Assert.Equal(i + 1, events[i].Seq);
            Assert.Equal(prev, events[i].PrevHash);
            Assert.Equal(LedgerHash.Compute(events[i], prev), events[i].Hash);
            prev = events[i].Hash;
        }
    }

    [Fact]
    public async Task Ledger_appends_are_numbered_and_hash_chained_across_calls()
    {
        var first = await Store.Ledger.AppendAsync([Event("entry.created"), Event("x509.issued", decision: "d-1")], [], Ct);
        Time.Advance(TimeSpan.FromSeconds(1));
        var second = await Store.Ledger.AppendAsync([Event("issuance.denied", decision: "d-2", data: """{"reason":"no permit"}""")], [], Ct);
        Assert.Equal([1L, 2L], first.Select(e => e.Seq));
        Assert.Equal(3, second[0].Seq);
        var all = await AllLedgerAsync(Store);
        Assert.Equal(3, all.Count);
        AssertChained(all);
        Assert.Equal(second[0].Hash, all[2].Hash);
        Assert.Equal("""{"reason":"no permit"}""", all[2].DataJson);
    }

    [Fact]
    public async Task Ledger_pages_stop_at_the_data_budget_but_always_hold_one_record_and_keep_the_filters()
    {
        // Records of 100, 5000, 100, 100, 8000 and 100 characters of data.
        var sizes = new[] { 100, 5000, 100, 100, 8000, 100 };
        await Store.Ledger.AppendAsync([.. sizes.Select((n, i) => Event(i % 2 == 0 ? "jwt.issued" : "issuance.denied", data: $$"""{"pad":"{{new string('x', n - 10)}}"}"""))], [], Ct);

        // Budget 1000: 1 (100) and 2 (5000, starts under budget) fit; 3 starts past it.
        Assert.Equal([1L, 2], (await Store.Ledger.ListPageAsync(0, 100, 1000, null, null, Ct)).Select(e => e.Seq));
        // A single record larger than the budget is still returned alone, so paging always moves on.
        Assert.Equal([5L], (await Store.Ledger.ListPageAsync(4, 100, 10, null, null, Ct)).Select(e => e.Seq));
        Assert.Equal([3L, 4, 5], (await Store.Ledger.ListPageAsync(2, 100, 1000, null, null, Ct)).Select(e => e.Seq));
        Assert.Equal([3L, 4], (await Store.Ledger.ListPageAsync(2, 2, 1_000_000, null, null, Ct)).Select(e => e.Seq));
        Assert.Equal([1L, 3, 5], (await Store.Ledger.ListPageAsync(0, 100, 1_000_000, "jwt.", null, Ct)).Select(e => e.Seq));
        Assert.Equal([2L], (await Store.Ledger.ListPageAsync(0, 100, 200, "issuance.", null, Ct)).Select(e => e.Seq));

        // Walking the whole ledger in small-budget pages returns every record once, in order.
        var all = new List<long>();
        long after = 0;
        while ((await Store.Ledger.ListPageAsync(after, 100, 150, null, null, Ct)) is { Count: > 0 } page)
        {
            all.AddRange(page.Select(e => e.Seq));
            after = page[^1].Seq;
        }
        Assert.Equal([1L, 2, 3, 4, 5, 6], all);
        Assert.Empty(await Store.Ledger.ListPageAsync(6, 100, 150, null, null, Ct));
    }

    [Fact]
    public async Task Ledger_hash_changes_when_any_field_changes()
    {
        var e = (await Store.Ledger.AppendAsync([Event("x509.issued", decision: "d-1")], [], Ct))[0];
        Assert.NotEqual(e.Hash, LedgerHash.Compute(e with { Subject = e.Subject + "x" }, e.PrevHash));
        Assert.NotEqual(e.Hash, LedgerHash.Compute(e with { DecisionId = null }, e.PrevHash));
        Assert.NotEqual(e.Hash, LedgerHash.Compute(e with { DecisionId = "" }, e.PrevHash));
        Assert.NotEqual(e.Hash, LedgerHash.Compute(e with { At = e.At.AddTicks(10) }, e.PrevHash));
        Assert.NotEqual(e.Hash, LedgerHash.Compute(e with { DataJson = " {}" }, e.PrevHash));
        // Moving a byte between adjacent fields must not give the same hash (length-prefixed encoding).
        Assert.NotEqual(LedgerHash.Compute(LedgerHash.Genesis, 1, 0, "ab", "c", "", null, "{}"), LedgerHash.Compute(LedgerHash.Genesis, 1, 0, "a", "bc", "", null, "{}"));
    }

    [Fact]
    public async Task Two_servers_appending_at_once_make_one_unbroken_chain()
    {
        var other = await OpenExtraAsync();
        var tasks = Enumerable.Range(0, 40).Select(i =>
            (i % 2 == 0 ? Store : other).Ledger.AppendAsync([Event("x509.issued", decision: $"d-{i}"), Event("x509.issued")], [], Ct)).ToList();
        await Task.WhenAll(tasks);
        var all = await AllLedgerAsync(Store);
        Assert.Equal(80, all.Count);
        AssertChained(all);
    }

    [Fact]
    public async Task Ledger_times_never_go_back_along_seq_when_the_clock_steps_back_or_an_earlier_stamped_record_commits_later()
    {
        await Store.Ledger.AppendAsync([Event("entry.created")], [], Ct);
        Time.Advance(TimeSpan.FromSeconds(-30));   // the clock steps back (NTP)
        await Store.Ledger.AppendAsync([Event("entry.updated", subject: "e1"), Event("entry.updated", subject: "e2")], [], Ct);
        // A decision stamped before the records above reaches the ledger after them (a group commit queued it).
        await Store.Ledger.AppendAsync([Event("x509.issued", decision: "d-late") with { At = Start.AddMinutes(-5) }], [], Ct);
        Time.Advance(TimeSpan.FromMinutes(1));
        await Store.Ledger.AppendAsync([Event("entry.deleted")], [], Ct);

        var all = await AllLedgerAsync(Store);
        Assert.Equal([Start, Start, Start, Start, Start.AddSeconds(30)], all.Select(e => e.At));
        for (var i = 1; i < all.Count; i++)
        {
            Assert.True(all[i].At >= all[i - 1].At, $"record {all[i].Seq} at {all[i].At:O} is before record {all[i - 1].Seq} at {all[i - 1].At:O}");
        }
        AssertChained(all);   // the hash covers the time as stored
    }

    [Fact]
    public async Task Ledger_finds_decisions_and_filters_by_kind_prefix_and_subject()
    {
        await Store.Ledger.AppendAsync([Event("entry.created", subject: "e1"), Event("x509.issued", decision: "d-a"), Event("entry.deleted", subject: "e1"), Event("issuance.denied", decision: "d-b")], [], Ct);
        Assert.Equal("issuance.denied", (await Store.Ledger.GetByDecisionAsync("d-b", Ct))!.Kind);
        Assert.Null(await Store.Ledger.GetByDecisionAsync("d-zzz", Ct));
        Assert.Equal(["d-b", "d-a"], (await Store.Ledger.RecentDecisionsAsync(10, Ct)).Select(e => e.DecisionId));
        Assert.Equal(["entry.created", "entry.deleted"], (await Store.Ledger.ListAsync(0, 10, "entry.", null, Ct)).Select(e => e.Kind));
        Assert.Equal([1L, 3L], (await Store.Ledger.ListAsync(0, 10, null, "e1", Ct)).Select(e => e.Seq));
        Assert.Equal(3, (await Store.Ledger.GetAsync(3, Ct))!.Seq);
        Assert.Null(await Store.Ledger.GetAsync(99, Ct));
    }

    [Fact]
    public async Task A_decision_id_is_recorded_once()
    {
        await Store.Ledger.AppendAsync([Event("x509.issued", decision: "d-1")], [], Ct);
        await Assert.ThrowsAsync<StoreConflictException>(() => Store.Ledger.AppendAsync([Event("x509.issued", decision: "d-1")], [], Ct));
        Assert.Single(await AllLedgerAsync(Store));
    }

    [Fact]
    public async Task Issued_credentials_are_found_by_entry_agent_and_instance_until_they_expire()
    {
        await Store.Ledger.AppendAsync([Event("x509.issued", decision: "d-A")], [Issued("A"), Issued("B", entry: "e2", instance: "7:1"), Issued("C", agent: "spiffe://example.org/writ/agent/b", ttl: TimeSpan.FromMinutes(1))], Ct);
        var now = Time.GetUtcNow();
        Assert.Equal(["A", "C"], (await Store.Ledger.IssuedAsync(new IssuedFilter(EntryId: "e1"), now, Ct)).Select(c => c.Id));
        Assert.Equal(["B"], (await Store.Ledger.IssuedAsync(new IssuedFilter(InstanceId: "7:1"), now, Ct)).Select(c => c.Id));
        Assert.Equal(["C"], (await Store.Ledger.IssuedAsync(new IssuedFilter(AgentId: "spiffe://example.org/writ/agent/b"), now, Ct)).Select(c => c.Id));
        var later = now + TimeSpan.FromMinutes(5);
        Assert.Equal(["A"], (await Store.Ledger.IssuedAsync(new IssuedFilter(EntryId: "e1"), later, Ct)).Select(c => c.Id));
        Assert.Equal(["A", "C"], (await Store.Ledger.IssuedAsync(new IssuedFilter(EntryId: "e1", IncludeExpired: true), later, Ct)).Select(c => c.Id));
        var a = (await Store.Ledger.IssuedAsync(new IssuedFilter(Id: "A"), now, Ct)).Single();
        Assert.Equal(("d-A", "42:100", "e1"), (a.DecisionId, a.InstanceId, a.EntryId));
    }

    [Fact]
    public async Task A_failed_append_writes_neither_its_events_nor_its_credentials()
    {
        await Store.Ledger.AppendAsync([Event("x509.issued", decision: "d-1")], [Issued("A")], Ct);
        await Assert.ThrowsAsync<StoreConflictException>(() => Store.Ledger.AppendAsync([Event("x509.issued", decision: "d-2")], [Issued("Z"), Issued("A")], Ct));
        Assert.Single(await AllLedgerAsync(Store));
        Assert.Empty(await Store.Ledger.IssuedAsync(new IssuedFilter(Id: "Z"), Time.GetUtcNow(), Ct));
        var next = await Store.Ledger.AppendAsync([Event("x509.issued", decision: "d-3")], [], Ct);
        Assert.Equal(2, next[0].Seq);
        AssertChained(await AllLedgerAsync(Store));
    }

    private static StoredPolicyVersion Policy(string text, string sha = "aa") =>
        new() { Files = [new PolicyFileRecord("main.cedar", text)], Sha256 = sha, Author = "uid:0", Comment = "test" };

    [Fact]
    public async Task Policy_versions_count_up_and_the_highest_is_active()
    {
        Assert.Null(await Store.Policies.ActiveAsync(Ct));
        var v1 = await Store.Policies.PushAsync(Policy("permit(principal,action,resource);"), null,
            [Event("policy.pushed", subject: "policy:{version}", data: """{"version":"{version}"}""")], Ct);
        var v2 = await Store.Policies.PushAsync(Policy("forbid(principal,action,resource);", "bb") with { RolledBackFrom = 1 }, 1, [], Ct);
        Assert.Equal((1L, 2L), (v1.Version, v2.Version));
        var active = await Store.Policies.ActiveAsync(Ct);
        Assert.Equal(2, active!.Version);
        Assert.Equal("forbid(principal,action,resource);", active.Files[0].Text);
        Assert.Equal(1, active.RolledBackFrom);
        Assert.Equal([2L, 1L], (await Store.Policies.ListAsync(Ct)).Select(v => v.Version));
        Assert.Equal("bb", (await Store.Policies.GetAsync(2, Ct))!.Sha256);
        Assert.Null(await Store.Policies.GetAsync(3, Ct));
        var audit = Assert.Single(await AllLedgerAsync(Store));
        Assert.Equal(("policy:1", """{"version":1}"""), (audit.Subject, audit.DataJson));
    }

    [Fact]
    public async Task A_push_over_a_stale_version_changes_nothing()
    {
        await Store.Policies.PushAsync(Policy("permit(principal,action,resource);"), null, [Event("policy.pushed")], Ct);
        await StoreAssert.ThrowsOneLineAsync<StoreConflictException>(() =>
            Store.Policies.PushAsync(Policy("forbid(principal,action,resource);"), 0, [Event("policy.pushed")], Ct));
        Assert.Equal(1, (await Store.Policies.ActiveAsync(Ct))!.Version);
        Assert.Single(await AllLedgerAsync(Store));
    }
}
