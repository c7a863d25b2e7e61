using System.Security.Cryptography;
using Writ.Protocol.Errors;
using Writ.Server.Issuance;
using Writ.Server.Revocation;
using Writ.Server.Storage;
using Writ.Server.Tests.Policy;
using Writ.Spiffe.X509;
using Writ.Protocol.Evidence;

namespace Writ.Server.Tests.Issuance;

/// <summary>
/// The server side of the outage pool (issue #16 item 5) through the real pipeline and store: opt-in per entry, the
/// IssuePooledX509Svid permit, the bound from the store, the reports, and what an agent trying to get past them sees.
/// </summary>
public sealed class OutagePoolTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private const string Permit = """
        @id("pool") permit (principal, action == Writ::Action::"IssuePooledX509Svid", resource);
        """;

    private static async Task<PipelineHarness> HarnessAsync(bool permit = true, Writ.Server.Configuration.LedgerOptions? options = null)
    {
        var h = await PipelineHarness.CreateAsync(options);
        if (permit)
            await h.PushAsync(("default.cedar", WritPolicyCompilerDefault()), ("pool.cedar", Permit));
        return h;
    }

    private static string WritPolicyCompilerDefault() => Writ.Server.Policy.WritPolicyCompiler.DefaultFiles[0].Text;

    private static async Task<RegistrationEntry> PooledEntryAsync(PipelineHarness h, int pool, string path = "/pooled/web")
    {
        var e = await h.EntryAsync("spiffe://example.org" + path, "unix:uid:1000");
        return await h.Store.Entries.UpdateAsync(e with { OutagePool = pool, Revision = 0 }, Ct);
    }

    private static List<ReadOnlyMemory<byte>> Csrs(int n)
    {
        var list = new List<ReadOnlyMemory<byte>>();
        for (var i = 0; i < n; i++)
        {
            using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
            list.Add(Csr.Create(key));
        }
        return list;
    }

    [Fact]
    public async Task A_permitted_entry_gets_up_to_its_pool_recorded_as_pooled_issuances_with_issued_credentials()
    {
        await using var h = await HarnessAsync();
        var entry = await PooledEntryAsync(h, 2);

        var issued = await h.Pipeline.SignPooledX509Async(h.Node, entry.Id, Csrs(2), Ct);

        Assert.Equal(2, issued.Select(i => i.Leaf.SerialNumber).Distinct().Count());
        var records = await h.Store.Ledger.ListAsync(0, 100, "x509.issued", null, Ct);
        Assert.Equal(2, records.Count);
        Assert.All(records, r => Assert.Contains("\"pooled\":true", r.DataJson, StringComparison.Ordinal));
        foreach (var i in issued)
        {
            var row = await h.Store.PooledSvids.GetAsync(i.Leaf.SerialNumber, Ct);
            Assert.Equal(PipelineHarness.AgentId, row!.AgentId);
            Assert.Null(row.UsedAt);
        }
        // The pool is full: one more is refused from the store's count, and nothing is recorded for it.
        var full = await Assert.ThrowsAsync<WritException>(() => h.Pipeline.SignPooledX509Async(h.Node, entry.Id, Csrs(1), Ct));
        Assert.Equal(OutagePoolRules.FullCode, full.Code);
        Assert.Equal(2, (await h.Store.Ledger.ListAsync(0, 100, "x509.issued", null, Ct)).Count);
    }

    [Fact]
    public async Task Without_a_permit_the_default_policy_refuses_pooled_svids_and_records_the_denial()
    {
        await using var h = await HarnessAsync(permit: false);
        var entry = await PooledEntryAsync(h, 2);

        var e = await Assert.ThrowsAsync<WritException>(() => h.Pipeline.SignPooledX509Async(h.Node, entry.Id, Csrs(1), Ct));

        Assert.Equal(IssuanceErrors.Denied, e.Code);
        Assert.Empty(await h.Store.Ledger.ListAsync(0, 100, "x509.issued", null, Ct));
        Assert.Single(await h.Store.Ledger.ListAsync(0, 100, "issuance.denied", null, Ct));
    }

    [Fact]
    public async Task An_entry_without_opt_in_is_refused_even_with_a_permit()
    {
        await using var h = await HarnessAsync();
        var entry = await h.EntryAsync("spiffe://example.org/pooled/plain", "unix:uid:1000");

        var e = await Assert.ThrowsAsync<WritException>(() => h.Pipeline.SignPooledX509Async(h.Node, entry.Id, Csrs(1), Ct));

        Assert.Equal(OutagePoolRules.NotEnabledCode, e.Code);
        Assert.Empty(await h.Store.Ledger.ListAsync(0, 100, "x509.issued", null, Ct));
    }

    [Fact]
    public async Task An_agent_asking_for_an_entry_of_another_parent_or_for_more_than_the_pool_is_refused()
    {
        await using var h = await HarnessAsync();
        var entry = await PooledEntryAsync(h, 2);
        var foreign = (await h.Store.Entries.CreateAsync([new RegistrationEntry
        {
            SpiffeId = "spiffe://example.org/pooled/other", ParentId = "spiffe://example.org/writ/agent/join_token/other",
            Selectors = [new Selector("unix", "uid:1000")], OutagePool = 2,
        }], Ct))[0];

        Assert.Equal(IssuanceErrors.EntryUnauthorized, (await Assert.ThrowsAsync<WritException>(() => h.Pipeline.SignPooledX509Async(h.Node, foreign.Id, Csrs(1), Ct))).Code);
        Assert.Equal(OutagePoolRules.FullCode, (await Assert.ThrowsAsync<WritException>(() => h.Pipeline.SignPooledX509Async(h.Node, entry.Id, Csrs(3), Ct))).Code);
        Assert.Empty(await h.Store.Ledger.ListAsync(0, 100, "x509.issued", null, Ct));
    }

    [Fact]
    public async Task Racing_requests_never_overshoot_the_pool()
    {
        await using var h = await HarnessAsync();
        var entry = await PooledEntryAsync(h, 3);

        var calls = Enumerable.Range(0, 6).Select(async _ =>
        {
            try
            {
                return (await h.Pipeline.SignPooledX509Async(h.Node, entry.Id, Csrs(1), Ct)).Count;
            }
            catch (WritException e) when (e.Code == OutagePoolRules.FullCode)
            {
                return 0;
            }
        });

        Assert.Equal(3, (await Task.WhenAll(calls)).Sum());
    }

    [Fact]
    public async Task A_report_is_recorded_once_frees_a_slot_and_a_report_of_a_foreign_serial_writes_nothing()
    {
        await using var h = await HarnessAsync();
        var entry = await PooledEntryAsync(h, 1);
        var serial = (await h.Pipeline.SignPooledX509Async(h.Node, entry.Id, Csrs(1), Ct))[0].Leaf.SerialNumber;
        var now = h.Server.Time.GetUtcNow();

        // An agent reporting a serial that is not one of its pooled SVIDs (an ordinary SVID's, or made up): refused as a whole.
        var ordinary = (await h.SignAsync(entry, PipelineHarness.Evidence("10:1", "unix:uid:1000"))).Issued[0].Leaf.SerialNumber;
        foreach (var bad in new[] { ordinary, "00DEADBEEF" })
        {
            var e = await Assert.ThrowsAsync<WritException>(() => h.Pipeline.RecordPooledUsesAsync(h.Node,
                [new PooledUse(serial, entry.Id, "11:1", 11, 1000, "ab", now), new PooledUse(bad, entry.Id, "12:1", 12, 1000, "ab", now)], Ct));
            Assert.Equal(OutagePoolRules.UnknownSerialCode, e.Code);
        }
        Assert.Empty(await h.Store.Ledger.ListAsync(0, 100, "svid.pooled_used", null, Ct));
        Assert.Null((await h.Store.PooledSvids.GetAsync(serial, Ct))!.UsedAt);

        // Another agent cannot report this agent's serial either.
        var other = h.Node with { SpiffeId = "spiffe://example.org/writ/agent/join_token/other" };
        Assert.Equal(OutagePoolRules.UnknownSerialCode, (await Assert.ThrowsAsync<WritException>(() =>
            h.Pipeline.RecordPooledUsesAsync(other, [new PooledUse(serial, entry.Id, "11:1", 11, 1000, "ab", now)], Ct))).Code);

        var use = new PooledUse(serial, entry.Id, "11:1", 11, 1000, "ab", now);
        Assert.Equal([serial], await h.Pipeline.RecordPooledUsesAsync(h.Node, [use], Ct));
        Assert.Equal([serial], await h.Pipeline.RecordPooledUsesAsync(h.Node, [use], Ct));   // a retry is acknowledged, not recorded again
        var used = Assert.Single(await h.Store.Ledger.ListAsync(0, 100, "svid.pooled_used", null, Ct));
        Assert.Contains("\"instance_id\":\"11:1\"", used.DataJson, StringComparison.Ordinal);
        Assert.Equal("11:1", (await h.Store.PooledSvids.GetAsync(serial, Ct))!.UsedInstance);

        // The used one no longer counts against the pool: the agent may refill.
        Assert.Single(await h.Pipeline.SignPooledX509Async(h.Node, entry.Id, Csrs(1), Ct));
    }

    [Fact]
    public async Task A_pooled_serial_can_be_revoked_like_any_issued_svid()
    {
        await using var h = await HarnessAsync();
        var entry = await PooledEntryAsync(h, 1);
        var serial = (await h.Pipeline.SignPooledX509Async(h.Node, entry.Id, Csrs(1), Ct))[0].Leaf.SerialNumber;

        Assert.True(RevocationTarget.TryCreate(RevocationTargetKind.Serial, serial, out var target, out _));
        var revoked = await h.Server.Revocations.RevokeAsync(target, "test", "uid:0", Ct);

        Assert.Single(revoked);
        Assert.True(h.Server.Revocations.IsSerialRevoked(serial));
    }

    // An attacker's review (issue #16 item 5): made-up reports freeing slots, pooled issuance outside the issuance
    // budgets, pooled SVIDs signed for what an entry no longer is.

    [Fact]
    public async Task A_report_dated_outside_the_svids_life_is_refused_and_frees_no_slot()
    {
        await using var h = await HarnessAsync();
        var entry = await PooledEntryAsync(h, 2);
        var issued = await h.Pipeline.SignPooledX509Async(h.Node, entry.Id, Csrs(2), Ct);
        foreach (var at in new[] { DateTimeOffset.FromUnixTimeSeconds(1), h.Server.Time.GetUtcNow().AddHours(1) })
        {
            var e = await Assert.ThrowsAsync<WritException>(() => h.Pipeline.RecordPooledUsesAsync(h.Node,
                [.. issued.Select((i, n) => new PooledUse(i.Leaf.SerialNumber, entry.Id, $"fake-{n}", 1, 0, "00", at))], Ct));
            Assert.Equal(OutagePoolRules.BadReportCode, e.Code);
        }
        Assert.All(issued, i => Assert.Null(h.Store.PooledSvids.GetAsync(i.Leaf.SerialNumber, Ct).Result!.UsedAt));
        var full = await Assert.ThrowsAsync<WritException>(() => h.Pipeline.SignPooledX509Async(h.Node, entry.Id, Csrs(1), Ct));
        Assert.Equal(OutagePoolRules.FullCode, full.Code);
    }

    [Fact]
    public async Task Pooled_issuance_takes_from_the_agents_issuance_budget()
    {
        await using var h = await HarnessAsync(options: new Writ.Server.Configuration.LedgerOptions { IssuancePerAgent = 1, IssuancePerWorkload = 1 });
        var entry = await PooledEntryAsync(h, 16);
        var e = await Assert.ThrowsAsync<WritException>(() => h.Pipeline.SignPooledX509Async(h.Node, entry.Id, Csrs(16), Ct));
        Assert.Equal(IssuanceErrors.RateLimited, e.Code);
    }

    [Fact]
    public async Task Unused_pooled_svids_of_a_changed_entry_are_revoked_and_the_pool_refills()
    {
        await using var h = await HarnessAsync();
        var entry = await PooledEntryAsync(h, 2);
        var old = await h.Pipeline.SignPooledX509Async(h.Node, entry.Id, Csrs(2), Ct);
        // One was handed out (reported): it stays with its instance; the other was signed for what the entry was.
        await h.Pipeline.RecordPooledUsesAsync(h.Node, [new PooledUse(old[0].Leaf.SerialNumber, entry.Id, "i-1", 1, 0, "00", h.Server.Time.GetUtcNow())], Ct);
        var current = (await h.Store.Entries.GetAsync(entry.Id, Ct))!;
        await h.Store.Entries.UpdateAsync(current with { SpiffeId = "spiffe://example.org/pooled/renamed", Revision = 0 }, Ct);

        var revoked = await h.Server.Revocations.RevokeUnusedPooledAsync(entry.Id, "entry changed", "test", Ct);
        Assert.Equal([old[1].Leaf.SerialNumber], revoked.Select(r => r.SerialHex));
        Assert.True(h.Server.Revocations.IsSerialRevoked(old[1].Leaf.SerialNumber));
        Assert.False(h.Server.Revocations.IsSerialRevoked(old[0].Leaf.SerialNumber));
        // The revoked one no longer holds a slot: the renamed identity's pool fills again.
        var refill = await h.Pipeline.SignPooledX509Async(h.Node, entry.Id, Csrs(1), Ct);
        Assert.Single(refill);
    }
}
