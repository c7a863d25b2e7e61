using System.Security.Cryptography;
using Writ.Protocol.Errors;
using Writ.Server.Issuance;
using Writ.Server.Storage;
using Writ.Server.Tests.Policy;
using Writ.Spiffe.X509;

namespace Writ.Server.Tests.Issuance;

/// <summary>
/// An attacker's review of the outage pool (issue #16 item 5): a compromised agent freeing slots with made-up reports,
/// pooled issuance outside the issuance budgets, and pooled SVIDs signed for what an entry no longer is.
/// </summary>
public sealed class OutagePoolAttackTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static async Task<PipelineHarness> HarnessAsync(Writ.Server.Configuration.LedgerOptions? options = null)
    {
        var h = await PipelineHarness.CreateAsync(options);
        await h.PushAsync(("default.cedar", Writ.Server.Policy.WritPolicyCompiler.DefaultFiles[0].Text),
            ("pool.cedar", """@id("pool") permit (principal, action == Writ::Action::"IssuePooledX509Svid", resource);"""));
        return h;
    }

    private static async Task<RegistrationEntry> PooledEntryAsync(PipelineHarness h, int pool)
    {
        var e = await h.EntryAsync("spiffe://example.org/pooled/web", "unix:uid:1000");
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
        await using var h = await HarnessAsync(new Writ.Server.Configuration.LedgerOptions { IssuancePerAgent = 1, IssuancePerWorkload = 1 });
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
