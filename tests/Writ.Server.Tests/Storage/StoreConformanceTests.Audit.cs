using Writ.Server.Ledger;
using Writ.Server.Storage;
using static Writ.Server.Tests.Storage.Entries;

namespace Writ.Server.Tests.Storage;

/// <summary>State changes and their ledger records commit together (issue #5), on every backend.</summary>
public abstract partial class StoreConformanceTests
{
    private static AttestedNode AuditNode(string id) => new()
    {
        SpiffeId = id,
        AttestationType = "join_token",
        SerialNumber = "01",
        ExpiresAt = Start.AddDays(1),
    };

    [Fact]
    public async Task Entry_create_update_delete_append_their_records_in_order_with_the_change()
    {
        var entry = New("spiffe://example.org/web", "spiffe://example.org/agent", "unix:uid:1") with { Id = "e-1" };
        await E.CreateAsync([entry], Ct, [LedgerEvents.Entry(LedgerEvents.EntryCreated, "uid:1000", entry)]);
        var changed = entry with { Hint = "h" };
        await E.UpdateAsync(changed, Ct, [LedgerEvents.Entry(LedgerEvents.EntryUpdated, "uid:1000", changed)]);
        await E.DeleteAsync("e-1", Ct, [LedgerEvents.Entry(LedgerEvents.EntryDeleted, "uid:1000", changed)]);

        var all = await AllLedgerAsync(Store);
        Assert.Equal(["entry.created", "entry.updated", "entry.deleted"], all.Select(e => e.Kind));
        Assert.All(all, e => Assert.Equal("e-1", e.Subject));
        Assert.All(all, e => Assert.Equal(Start, e.At));   // stamped by the store's clock
        Assert.Contains("\"hint\":\"h\"", all[1].DataJson, StringComparison.Ordinal);
        AssertChained(all);
        var head = await Store.Ledger.HeadAsync(Ct);
        Assert.Equal(3, head.Seq);
        Assert.Equal(all[2].Hash, head.Hash);
    }

    [Fact]
    public async Task A_refused_entry_write_appends_no_record()
    {
        var entry = New("spiffe://example.org/web", "spiffe://example.org/agent", "unix:uid:1") with { Id = "e-1" };
        await E.CreateAsync([entry], Ct, [LedgerEvents.Entry(LedgerEvents.EntryCreated, "uid:1000", entry)]);

        // A duplicate, an update of a missing entry, a delete of a missing entry: each fails and leaves the ledger as it was.
        var dup = entry with { Id = "e-2" };
        await Assert.ThrowsAsync<StoreConflictException>(() => E.CreateAsync([dup], Ct, [LedgerEvents.Entry(LedgerEvents.EntryCreated, "uid:1000", dup)]));
        var ghost = entry with { Id = "nope", Selectors = [Sel("unix:uid:9")] };
        await Assert.ThrowsAsync<StoreNotFoundException>(() => E.UpdateAsync(ghost, Ct, [LedgerEvents.Entry(LedgerEvents.EntryUpdated, "uid:1000", ghost)]));
        await Assert.ThrowsAsync<StoreNotFoundException>(() => E.DeleteAsync("nope", Ct, [LedgerEvents.Entry(LedgerEvents.EntryDeleted, "uid:1000", ghost)]));

        var all = await AllLedgerAsync(Store);
        Assert.Equal(["entry.created"], all.Select(e => e.Kind));
        Assert.Equal(1, (await Store.Ledger.HeadAsync(Ct)).Seq);
    }

    [Fact]
    public async Task A_ledger_record_that_cannot_be_written_rolls_the_entry_back()
    {
        var entry = New("spiffe://example.org/web", "spiffe://example.org/agent", "unix:uid:1") with { Id = "e-1" };
        // An event with an empty kind is refused by the ledger after the entry row was inserted: both roll back.
        var bad = LedgerEvents.Entry(LedgerEvents.EntryCreated, "uid:1000", entry) with { Kind = "" };
        await Assert.ThrowsAnyAsync<ArgumentException>(() => E.CreateAsync([entry], Ct, [bad]));
        Assert.Null(await E.GetAsync("e-1", Ct));
        Assert.Equal(0, await E.CurrentRevisionAsync(Ct));
        Assert.Empty(await AllLedgerAsync(Store));
    }

    [Fact]
    public async Task Node_and_join_token_writes_append_their_records_with_the_change()
    {
        var node = AuditNode("spiffe://example.org/writ/agent/join_token/t1");
        await Store.Nodes.CreateAsync(node, Ct, [LedgerEvents.Node(LedgerEvents.NodeAttested, node.SpiffeId, node)]);
        await Store.Nodes.UpdateAsync(node with { Banned = true }, Ct, [LedgerEvents.Node(LedgerEvents.NodeBanned, "uid:0", node with { Banned = true })]);
        await Store.Nodes.DeleteAsync(node.SpiffeId, Ct, [LedgerEvents.Node(LedgerEvents.NodeEvicted, "uid:0", node)]);
        var token = new JoinToken("t2", new byte[32], Start.AddHours(1), null, Start);
        await Store.JoinTokens.CreateAsync(token, Ct, [LedgerEvents.JoinToken("uid:0", token, "spiffe://example.org/writ/agent/join_token/t2")]);
        // A duplicate token is refused and leaves no record.
        await Assert.ThrowsAsync<StoreConflictException>(() =>
            Store.JoinTokens.CreateAsync(token, Ct, [LedgerEvents.JoinToken("uid:0", token, "x")]));

        var all = await AllLedgerAsync(Store);
        Assert.Equal(["node.attested", "node.banned", "node.evicted", "join_token.created"], all.Select(e => e.Kind));
        Assert.Equal("""{"alias":null,"expires_at":"2026-03-01T13:00:00Z","token_id":"t2"}""", all[3].DataJson);
        Assert.Contains("\"banned\":true", all[1].DataJson, StringComparison.Ordinal);
        AssertChained(all);
    }

    [Fact]
    public async Task Writes_without_audit_events_leave_the_ledger_alone()
    {
        await E.CreateAsync([New("spiffe://example.org/web", "spiffe://example.org/agent", "unix:uid:1")], Ct);
        await Store.Nodes.CreateAsync(AuditNode("spiffe://example.org/writ/agent/x"), Ct);
        Assert.Empty(await AllLedgerAsync(Store));
        var head = await Store.Ledger.HeadAsync(Ct);
        Assert.Equal(0, head.Seq);
        Assert.Equal(LedgerHash.Genesis, head.Hash);
    }

    [Fact]
    public async Task A_verifier_fed_from_the_store_names_a_row_altered_in_the_database()
    {
        for (var i = 0; i < 5; i++)
            await Store.Ledger.AppendAsync([Event("entry.created", subject: $"e-{i}")], [], Ct);
        await ExecuteRawAsync("UPDATE ledger SET data = '{\"x\":1}' WHERE seq = 3");
        var v = new LedgerVerifier();
        foreach (var e in await AllLedgerAsync(Store))
        {
            if (!v.Add(e))
                break;
        }
        Assert.False(v.Finish(await Store.Ledger.HeadAsync(Ct)));
        Assert.Equal(3, v.Problem!.Seq);
        Assert.Equal("ledger record 3 was altered (its hash does not match its contents): restore the database from a backup", v.Problem.Message);
    }

    [Fact]
    public async Task A_policy_comment_that_reads_like_the_version_placeholder_is_recorded_as_written()
    {
        var version = new StoredPolicyVersion
        {
            Files = [new PolicyFileRecord("{version}", "permit(principal,action,resource);")],
            Sha256 = "cc",
            Author = "uid:1000",
            Comment = "{version}",
        };
        var stored = await Store.Policies.PushAsync(version, 0, [LedgerEvents.Policy(LedgerEvents.PolicyPushed, "uid:1000", version, 1)], Ct);
        var e = Assert.Single(await AllLedgerAsync(Store));
        Assert.Equal("policy:" + stored.Version, e.Subject);
        Assert.Equal("""{"author":"uid:1000","comment":"{version}","files":["{version}"],"policies":1,"rolled_back_from":null,"sha256":"cc","version":1}""", e.DataJson);
    }
}
