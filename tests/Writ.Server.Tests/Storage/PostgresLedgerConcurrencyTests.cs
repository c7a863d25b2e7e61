using System.Security.Cryptography;
using Npgsql;
using Writ.Server.Ledger;
using Writ.Server.Storage;
using Writ.Tests.Shared;

namespace Writ.Server.Tests.Storage;

/// <summary>
/// Issue #16 item 3: one ledger chain under concurrent writers. Three stores on one PostgreSQL database stand for three
/// servers (each its own Npgsql pool, so their transactions really interleave at READ COMMITTED); each runs several
/// writers at once, mixing plain appends (with issued credentials) and entry batches whose audit records commit with
/// them. The result must be one chain: seq 1..N with no gap or duplicate, every record present exactly once, every link
/// and hash right (the verifier behind `writ audit verify`), the head on the last record, and times never going back.
/// </summary>
public sealed class PostgresLedgerConcurrencyTests : IAsyncLifetime
{
    private const int Servers = 3;
    private const int WritersPerServer = 6;
    private const int BurstsPerWriter = 12;
    private string _admin = "";
    private string _database = "";
    private readonly List<IWritStore> _stores = [];

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask InitializeAsync()
    {
        _admin = TestPostgresGate.ConnectionString();
        _database = "writ_ledger_" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(6));
        await TestPostgres.ExecuteAsync(TestPostgres.WithDatabase(_admin, "postgres"), $"CREATE DATABASE {_database}", Ct);
        var cs = new NpgsqlConnectionStringBuilder(_admin) { Database = _database }.ConnectionString;
        // Opened at once, as three servers starting together would (the migration lock sorts them out).
        _stores.AddRange(await Task.WhenAll(Enumerable.Range(0, Servers).Select(_ => WritStoreFactory.OpenAsync("postgres", cs, TimeProvider.System, Ct))));
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var s in _stores)
            await s.DisposeAsync();
        if (_database.Length > 0)
            await TestPostgres.ExecuteAsync(TestPostgres.WithDatabase(_admin, "postgres"), $"DROP DATABASE IF EXISTS {_database} WITH (FORCE)", CancellationToken.None);
    }

    private static LedgerEvent Event(string kind, string subject, string? decision) =>
        new() { At = default, Kind = kind, Actor = "test", Subject = subject, DecisionId = decision, DataJson = "{}" };

    [Fact]
    public async Task Three_servers_writing_bursts_at_once_make_one_contiguous_verified_chain()
    {
        var start = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var expected = new System.Collections.Concurrent.ConcurrentBag<string>();
        var writers = new List<Task>();
        for (var s = 0; s < Servers; s++)
        {
            for (var w = 0; w < WritersPerServer; w++)
            {
                var store = _stores[s];
                var tag = $"s{s}w{w}";
                writers.Add(Task.Run(async () =>
                {
                    await start.Task;
                    for (var b = 0; b < BurstsPerWriter; b++)
                    {
                        var id = $"{tag}b{b}";
                        if (b % 3 == 2)
                        {
                            // An entry batch: its audit records join the chain in the entries' own transaction.
                            var entries = Enumerable.Range(0, 3).Select(i =>
                                Entries.New($"spiffe://example.org/{id}/{i}", "spiffe://example.org/agent", $"unix:uid:{i}")).ToList();
                            await store.Entries.CreateAsync(entries, Ct, [.. entries.Select((e, i) => Event("entry.created", $"{id}/{i}", null))]);
                            for (var i = 0; i < 3; i++)
                                expected.Add($"entry.created|{id}/{i}");
                        }
                        else
                        {
                            var now = DateTimeOffset.UtcNow;
                            await store.Ledger.AppendAsync(
                                [Event("x509.issued", id, "d-" + id), Event("jwt.issued", id, "d-" + id + "-jwt")],
                                [new IssuedCredential
                                {
                                    Kind = "x509", Id = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16)), SpiffeId = "spiffe://example.org/w",
                                    AgentId = "spiffe://example.org/agent", DecisionId = "d-" + id, IssuedAt = now, ExpiresAt = now.AddHours(1),
                                }], Ct);
                            expected.Add($"x509.issued|{id}");
                            expected.Add($"jwt.issued|{id}");
                        }
                    }
                }, Ct));
            }
        }
        start.SetResult();
        await Task.WhenAll(writers);

        // Read back through a different server than most writers used.
        var all = new List<LedgerEvent>();
        long after = 0;
        while (true)
        {
            var page = await _stores[1].Ledger.ListAsync(after, 500, null, null, Ct);
            if (page.Count == 0)
                break;
            all.AddRange(page);
            after = page[^1].Seq;
        }

        Assert.Equal(expected.Count, all.Count);
        Assert.Equal(Enumerable.Range(1, all.Count).Select(i => (long)i), all.Select(e => e.Seq));
        Assert.Equal(expected.Order(StringComparer.Ordinal), all.Select(e => $"{e.Kind}|{e.Subject}").Order(StringComparer.Ordinal));
        var verifier = new LedgerVerifier();
        foreach (var e in all)
            Assert.True(verifier.Add(e), verifier.Problem?.Message);
        Assert.True(verifier.Finish(await _stores[2].Ledger.HeadAsync(Ct)), verifier.Problem?.Message);
        for (var i = 1; i < all.Count; i++)
            Assert.True(all[i].At >= all[i - 1].At, $"record {all[i].Seq} is stamped before record {all[i - 1].Seq}");
        // Each issued credential was recorded once with its decision.
        var issued = await _stores[0].Ledger.IssuedAsync(new IssuedFilter(IncludeExpired: true), DateTimeOffset.UtcNow, Ct);
        Assert.Equal(expected.Count(x => x.StartsWith("x509.issued|", StringComparison.Ordinal)), issued.Count);
        Assert.Equal(issued.Count, issued.Select(c => c.Id).Distinct(StringComparer.Ordinal).Count());
    }
}
