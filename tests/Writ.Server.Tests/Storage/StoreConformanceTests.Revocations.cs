using Writ.Server.Storage;

namespace Writ.Server.Tests.Storage;

/// <summary>The revocation contract (issue #6), on every backend.</summary>
public abstract partial class StoreConformanceTests
{
    private RevocationRecord RevokedSerial(string serial, TimeSpan? ttl = null, string spiffe = "spiffe://example.org/w", string reason = "test") => new()
    {
        SerialHex = serial, SpiffeId = spiffe, EntryId = "e1", InstanceId = "42:100", RevokedAt = Time.GetUtcNow(),
        ExpiresAt = Time.GetUtcNow() + (ttl ?? TimeSpan.FromHours(1)), Reason = reason,
    };

    private RevocationRecord RevokedJti(string jti, TimeSpan? ttl = null) => new()
    {
        Jti = jti, SpiffeId = "spiffe://example.org/w", RevokedAt = Time.GetUtcNow(), ExpiresAt = Time.GetUtcNow() + (ttl ?? TimeSpan.FromMinutes(5)), Reason = "test",
    };

    private LedgerEvent RevokedEvent(string id, string kind = "svid.revoked") =>
        new() { At = Time.GetUtcNow(), Kind = kind, Actor = "uid:1000", Subject = "spiffe://example.org/w", DataJson = $$"""{"id":"{{id}}"}""" };

    [Fact]
    public async Task Revoke_stores_serials_and_jtis_with_one_new_revision_and_wakes_waiters()
    {
        var before = await Store.Entries.CurrentRevisionAsync(Ct);
        var wait = Store.Entries.WaitForChangeAsync(before, Ct);
        Assert.False(wait.IsCompleted);

        var stored = await Store.Revocations.RevokeAsync([RevokedSerial("0a1b"), RevokedJti("jti-1")], [RevokedEvent("0A1B"), RevokedEvent("jti-1", "jwt.revoked")], Ct);

        Assert.Equal(2, stored.Count);
        Assert.Equal("0A1B", stored[0].SerialHex);   // upper-cased
        Assert.Null(stored[0].Jti);
        Assert.Equal("jti-1", stored[1].Jti);
        Assert.Null(stored[1].SerialHex);
        Assert.All(stored, r => Assert.Equal(before + 1, r.Revision));
        Assert.Equal(before + 1, await Store.Entries.CurrentRevisionAsync(Ct));
        await wait.WaitAsync(TimeSpan.FromSeconds(10), Ct);   // the Sync loop's wait returns at once

        var listed = await Store.Revocations.ListAsync(Time.GetUtcNow(), includeExpired: false, Ct);
        Assert.Equal(stored.OrderBy(r => r.Jti is null), listed);   // same revision: by kind ("jwt" before "x509"), then id
        var events = await Store.Ledger.ListAsync(0, 10, "", null, Ct);
        Assert.Equal(["svid.revoked", "jwt.revoked"], events.Select(e => e.Kind));
    }

    [Fact]
    public async Task Revoking_an_already_revoked_credential_is_skipped_with_its_audit_event_but_new_ones_in_the_batch_are_kept()
    {
        var first = await Store.Revocations.RevokeAsync([RevokedSerial("AA", reason: "first")], [RevokedEvent("AA")], Ct);
        Time.Advance(TimeSpan.FromSeconds(1));
        var second = await Store.Revocations.RevokeAsync(
            [RevokedSerial("aa", reason: "second"), RevokedSerial("BB"), RevokedSerial("BB")],
            [RevokedEvent("AA"), RevokedEvent("BB"), RevokedEvent("BB"), RevokedEvent("x", "instance.gone")], Ct);

        var only = Assert.Single(second);
        Assert.Equal("BB", only.SerialHex);
        var all = await Store.Revocations.ListAsync(Time.GetUtcNow(), includeExpired: true, Ct);
        Assert.Equal(["AA", "BB"], all.Select(r => r.SerialHex));
        Assert.Equal("first", all[0].Reason);                 // the first revocation stands
        Assert.Equal(first[0].Revision, all[0].Revision);
        var events = await Store.Ledger.ListAsync(0, 10, "", null, Ct);
        Assert.Equal(["""{"id":"AA"}""", """{"id":"BB"}""", """{"id":"x"}"""], events.Select(e => e.DataJson));
    }

    [Fact]
    public async Task Revoke_refuses_records_that_name_no_credential_or_two_and_writes_nothing()
    {
        var before = await Store.Entries.CurrentRevisionAsync(Ct);
        await Assert.ThrowsAsync<ArgumentException>(() => Store.Revocations.RevokeAsync([RevokedSerial("AA") with { Jti = "j" }], [], Ct));
        await Assert.ThrowsAsync<ArgumentException>(() => Store.Revocations.RevokeAsync([RevokedSerial("") with { Jti = null }], [], Ct));
        var e = await Assert.ThrowsAsync<ArgumentException>(() => Store.Revocations.RevokeAsync([RevokedSerial("AA"), RevokedSerial("12:34")], [], Ct));
        Assert.DoesNotContain('\n', e.Message);
        Assert.Equal(before, await Store.Entries.CurrentRevisionAsync(Ct));
        Assert.Empty(await Store.Revocations.ListAsync(Time.GetUtcNow(), includeExpired: true, Ct));
        Assert.Empty(await Store.Revocations.RevokeAsync([], [], Ct));
    }

    [Fact]
    public async Task Since_returns_revocations_after_a_revision_in_order_and_list_hides_expired_ones()
    {
        var a = await Store.Revocations.RevokeAsync([RevokedSerial("01", TimeSpan.FromMinutes(1))], [], Ct);
        await Store.Entries.CreateAsync([Entries.New("spiffe://example.org/x", "spiffe://example.org/agent", "unix:uid:1")], Ct);
        var b = await Store.Revocations.RevokeAsync([RevokedJti("j2", TimeSpan.FromHours(1))], [], Ct);

        Assert.Equal(["01", null], (await Store.Revocations.SinceAsync(0, Ct)).Select(r => r.SerialHex));
        var since = await Store.Revocations.SinceAsync(a[0].Revision, Ct);
        Assert.Equal("j2", Assert.Single(since).Jti);
        Assert.Empty(await Store.Revocations.SinceAsync(b[0].Revision, Ct));
        Assert.Equal(a[0].Revision + 2, b[0].Revision);   // the entry change took the revision between them

        Time.Advance(TimeSpan.FromMinutes(2));
        Assert.Equal("j2", Assert.Single(await Store.Revocations.ListAsync(Time.GetUtcNow(), includeExpired: false, Ct)).Jti);
        Assert.Equal(2, (await Store.Revocations.ListAsync(Time.GetUtcNow(), includeExpired: true, Ct)).Count);
    }

    [Fact]
    public async Task Prune_forgets_only_revocations_of_credentials_expired_before_the_horizon()
    {
        await Store.Revocations.RevokeAsync([RevokedSerial("01", TimeSpan.FromMinutes(1)), RevokedSerial("02", TimeSpan.FromHours(2))], [], Ct);
        Time.Advance(TimeSpan.FromMinutes(30));
        Assert.Equal(1, await Store.Revocations.PruneAsync(Time.GetUtcNow(), Ct));
        Assert.Equal(0, await Store.Revocations.PruneAsync(Time.GetUtcNow(), Ct));
        Assert.Equal("02", Assert.Single(await Store.Revocations.ListAsync(Time.GetUtcNow(), includeExpired: true, Ct)).SerialHex);
    }

    [Fact]
    public async Task Revocations_survive_a_reopen_and_two_servers_revoking_the_same_credential_store_it_once()
    {
        var other = await OpenExtraAsync();
        var results = await Task.WhenAll(Enumerable.Range(0, 10).Select(i =>
            (i % 2 == 0 ? Store : other).Revocations.RevokeAsync([RevokedSerial("CAFE"), RevokedSerial($"{i + 16:X2}")], [RevokedEvent("CAFE"), RevokedEvent($"{i}")], Ct)));
        Assert.Equal(1, results.Count(r => r.Any(x => x.SerialHex == "CAFE")));
        await ReopenAsync();
        var all = await Store.Revocations.ListAsync(Time.GetUtcNow(), includeExpired: false, Ct);
        Assert.Equal(11, all.Count);
        var events = await Store.Ledger.ListAsync(0, 100, "svid.", null, Ct);
        Assert.Equal(11, events.Count);
        Assert.Single(events, e => e.DataJson.Contains("CAFE", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_revocation_by_another_server_wakes_this_servers_waiters()
    {
        var other = await OpenExtraAsync(WritStoreOptions.Default with { ChangePollInterval = TimeSpan.FromMilliseconds(100) });
        var rev = await other.Entries.CurrentRevisionAsync(Ct);
        var wait = other.Entries.WaitForChangeAsync(rev, Ct);
        await Task.Yield();
        Assert.False(wait.IsCompleted);
        await Store.Revocations.RevokeAsync([RevokedSerial("0B")], [], Ct);
        await wait.WaitAsync(TimeSpan.FromSeconds(10), Ct);
        Assert.Equal("0B", Assert.Single(await other.Revocations.SinceAsync(rev, Ct)).SerialHex);
    }
}
