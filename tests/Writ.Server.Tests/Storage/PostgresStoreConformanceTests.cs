using System.Security.Cryptography;
using Npgsql;
using Writ.Server.Storage;
using Writ.Tests.Shared;

namespace Writ.Server.Tests.Storage;

/// <summary>The PostgreSQL tests' server (<see cref="TestPostgresGate"/>) and scratch-database helpers.</summary>
internal static class TestPostgres
{
    public static string WithDatabase(string cs, string database) =>
        new NpgsqlConnectionStringBuilder(cs) { Database = database, Pooling = false }.ConnectionString;

    public static async Task ExecuteAsync(string cs, string sql, CancellationToken ct)
    {
        await using var conn = new NpgsqlConnection(cs);
        await conn.OpenAsync(ct);
        await using var cmd = new NpgsqlCommand(sql, conn);
        await cmd.ExecuteNonQueryAsync(ct);
    }
}

/// <summary>The conformance suite on PostgreSQL: a fresh database per test, dropped afterwards.</summary>
public sealed class PostgresStoreConformanceTests : StoreConformanceTests
{
    private string _admin = "";
    private string _database = "";
    private string _connection = "";

    protected override string ExpectedKind => "postgres";

    protected override async ValueTask CreateDatabaseAsync()
    {
        _admin = TestPostgresGate.ConnectionString();
        _database = "writ_test_" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8));
        await TestPostgres.ExecuteAsync(TestPostgres.WithDatabase(_admin, "postgres"), $"CREATE DATABASE {_database}", Ct);
        _connection = new NpgsqlConnectionStringBuilder(_admin) { Database = _database }.ConnectionString;
    }

    protected override Task<IWritStore> OpenAsync(TimeProvider time, WritStoreOptions options) =>
        WritStoreFactory.OpenAsync("postgres", _connection, time, options, Ct);

    protected override Task ExecuteRawAsync(string sql) =>
        TestPostgres.ExecuteAsync(TestPostgres.WithDatabase(_admin, _database), sql, Ct);

    protected override async ValueTask DropDatabaseAsync()
    {
        if (_database.Length == 0)
            return;
        await TestPostgres.ExecuteAsync(TestPostgres.WithDatabase(_admin, "postgres"), $"DROP DATABASE IF EXISTS {_database} WITH (FORCE)", CancellationToken.None);
    }

    [Fact]
    public async Task A_database_that_does_not_exist_is_a_one_line_error_naming_it()
    {
        var missing = new NpgsqlConnectionStringBuilder(_admin) { Database = "writ_missing_" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4)) };
        var e = await StoreAssert.ThrowsOneLineAsync<StoreUnavailableException>(() =>
            WritStoreFactory.OpenAsync("postgres", missing.ConnectionString, TimeProvider.System, Ct));
        Assert.Contains(missing.Database!, e.Message, StringComparison.Ordinal);
        Assert.Contains("does not exist", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_notification_not_sent_by_a_server_reaches_no_subscriber()
    {
        // Attack: NOTIFY needs no privilege on any table (any role that may connect to the database can send one), so its
        // payload is not the store's data: a kind no server publishes (here one forging a log line) must not be handed on.
        var other = await OpenExtraAsync();
        var heard = new System.Collections.Concurrent.ConcurrentQueue<string>();
        using var listening = Store.Signals.Subscribe(heard.Enqueue);
        var ready = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using (Store.Signals.Subscribe(k => { if (k == "policy") ready.TrySetResult(); }))
        {
            using var deadline = CancellationTokenSource.CreateLinkedTokenSource(Ct);
            deadline.CancelAfter(TimeSpan.FromSeconds(30));
            while (!ready.Task.IsCompleted)
            {
                await other.Signals.PublishAsync("policy", deadline.Token);
                await Task.WhenAny(ready.Task, Task.Delay(100, deadline.Token));
                deadline.Token.ThrowIfCancellationRequested();
            }
        }
        // LISTEN is active: the forged notification, then a server's; delivery keeps commit order.
        await ExecuteRawAsync("NOTIFY writ_change, E'x\\nforged log line from the database'");
        await ExecuteRawAsync("NOTIFY writ_change, 'no-such-kind'");
        var nodes = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using (Store.Signals.Subscribe(k => { if (k == "nodes") nodes.TrySetResult(); }))
        {
            await other.Signals.PublishAsync("nodes", Ct);
            await nodes.Task.WaitAsync(TimeSpan.FromSeconds(30), Ct);
        }
        Assert.All(heard, k => Assert.Contains(k, new[] { "policy", "nodes", "bundle" }));
    }

    [Fact]
    public async Task A_second_server_is_woken_by_notification_not_by_polling()
    {
        // Polling once an hour: only LISTEN/NOTIFY can wake this waiter within the deadline.
        var other = await OpenExtraAsync(WritStoreOptions.Default with { ChangePollInterval = TimeSpan.FromHours(1) });
        var wait = other.Entries.WaitForChangeAsync(0, Ct);
        await Task.Yield();
        Assert.False(wait.IsCompleted);
        // The listener starts with the first waiter; writes made before it listens are caught by its first read.
        await Store.Entries.CreateAsync([Entries.New("spiffe://example.org/a", "spiffe://example.org/agent", "unix:uid:1")], Ct);
        await wait.WaitAsync(TimeSpan.FromSeconds(10), Ct);

        // That wake-up came from the listener, so LISTEN is active now: the next write must arrive as a notification.
        var second = other.Entries.WaitForChangeAsync(1, Ct);
        await Task.Yield();
        Assert.False(second.IsCompleted);
        await Store.Entries.CreateAsync([Entries.New("spiffe://example.org/b", "spiffe://example.org/agent", "unix:uid:2")], Ct);
        await second.WaitAsync(TimeSpan.FromSeconds(10), Ct);
        Assert.Equal(2, await other.Entries.CurrentRevisionAsync(Ct));
    }

    [Fact]
    public async Task Two_servers_opening_an_empty_database_at_once_migrate_it_once()
    {
        await Store.DisposeAsync();
        await ExecuteRawAsync("DROP TABLE entry_selectors, entry_tombstones, entries, nodes, join_tokens, bundles, ca_journals, store_revision, ledger, ledger_head, issued_credentials, policy_versions, revocations, store_metadata, tpm_reference_sets, ci_sessions, servers, federation_relationships, server_crls, pooled_svids, schema_migrations");
        var opens = Enumerable.Range(0, 4).Select(_ => OpenAsync(TimeProvider.System, WritStoreOptions.Default)).ToArray();
        var stores = await Task.WhenAll(opens);
        try
        {
            Assert.Equal(0, await stores[0].Entries.CurrentRevisionAsync(Ct));
            await stores[1].Entries.CreateAsync([Entries.New("spiffe://example.org/a", "spiffe://example.org/agent", "unix:uid:1")], Ct);
            Assert.Equal(1, await stores[2].Entries.CountAsync(Ct));
        }
        finally
        {
            foreach (var s in stores)
                await s.DisposeAsync();
        }
        await ReopenAsync();   // and a later open finds nothing left to migrate
        Assert.Equal(1, await Store.Entries.CountAsync(Ct));
    }
}

/// <summary>PostgreSQL errors that need no server at all.</summary>
public sealed class PostgresConnectionErrorTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task An_unreachable_server_is_a_one_line_error_without_the_password()
    {
        const string password = "hunter2-not-for-logs";
        var cs = $"Host=127.0.0.1;Port=1;Username=writ;Password={password};Database=writ;Timeout=3";
        var e = await StoreAssert.ThrowsOneLineAsync<StoreUnavailableException>(() =>
            WritStoreFactory.OpenAsync("postgres", cs, TimeProvider.System, Ct));
        Assert.Contains("cannot reach PostgreSQL at 127.0.0.1:1", e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(password, e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(password, e.ToString(), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("Host=127.0.0.1;Password=hunter2-not-for-logs;NoSuchKeyword=1")]
    [InlineData("Password=hunter2-not-for-logs;Port=notaport")]
    [InlineData("Password=hunter2-not-for-logs;Database=writ")]
    public async Task A_bad_connection_string_is_a_one_line_error_without_the_password(string cs)
    {
        var e = await StoreAssert.ThrowsOneLineAsync<StoreUnavailableException>(() =>
            WritStoreFactory.OpenAsync("postgres", cs, TimeProvider.System, Ct));
        Assert.DoesNotContain("hunter2", e.Message, StringComparison.Ordinal);
    }
}
