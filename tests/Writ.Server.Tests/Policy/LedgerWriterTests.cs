using Writ.Server.Ledger;
using Writ.Server.Storage;
using Writ.Server.Tests.Ca;

namespace Writ.Server.Tests.Policy;

/// <summary>Group commit: concurrent appends share transactions, every caller waits for its own commit, failures reach every caller of the batch.</summary>
public sealed class LedgerWriterTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static LedgerEvent Event(int i) => new()
    {
        At = CaHarness.Start,
        Kind = "x509.issued",
        Actor = "spiffe://example.org/writ/agent/join_token/t",
        Subject = "spiffe://example.org/w",
        DecisionId = "d-" + i.ToString("x20", System.Globalization.CultureInfo.InvariantCulture),
        DataJson = "{}",
    };

    [Fact]
    public async Task Concurrent_appends_are_all_durable_in_fewer_transactions_and_chained_in_order()
    {
        await using var h = await CaHarness.CreateAsync();
        var writer = new LedgerWriter(h.Store);
        var tasks = Enumerable.Range(0, 200).Select(i => Task.Run(() => writer.AppendAsync([Event(i)], [new IssuedCredential
        {
            Kind = "x509", Id = i.ToString("X8", System.Globalization.CultureInfo.InvariantCulture), SpiffeId = "spiffe://example.org/w",
            AgentId = "a", DecisionId = "d-" + i.ToString("x20", System.Globalization.CultureInfo.InvariantCulture), IssuedAt = CaHarness.Start, ExpiresAt = CaHarness.Start.AddHours(1),
        }]), Ct)).ToArray();
        await Task.WhenAll(tasks);

        var stored = await h.Store.Ledger.ListAsync(0, 1000, "x509.issued", null, Ct);
        Assert.Equal(200, stored.Count);
        Assert.Equal(200, stored.Select(e => e.DecisionId).Distinct().Count());
        Assert.InRange(writer.Commits, 1, 199);   // at least two appends shared a transaction
        for (var i = 1; i < stored.Count; i++)
        {
            Assert.Equal(stored[i - 1].Hash, stored[i].PrevHash);
        }
        Assert.Equal(200, (await h.Store.Ledger.IssuedAsync(new IssuedFilter(IncludeExpired: true), CaHarness.Start, Ct)).Count);
    }

    [Fact]
    public async Task A_failed_transaction_fails_every_caller_in_it_and_the_writer_recovers()
    {
        await using var h = await CaHarness.CreateAsync();
        var store = new FlakyLedgerStore(h.Store) { FailLedger = true };
        var writer = new LedgerWriter(store);
        var failing = Enumerable.Range(0, 20).Select(i => writer.AppendAsync([Event(i)], [])).ToArray();
        foreach (var t in failing)
        {
            await Assert.ThrowsAsync<InvalidOperationException>(() => t);
        }
        Assert.Empty(await h.Store.Ledger.ListAsync(0, 100, null, null, Ct));

        store.FailLedger = false;
        await writer.AppendAsync([Event(100)], []).WaitAsync(TimeSpan.FromSeconds(30), Ct);
        Assert.Single(await h.Store.Ledger.ListAsync(0, 100, null, null, Ct));
    }
}
