using System.Diagnostics;
using Microsoft.Data.Sqlite;
using Writ.Server.Storage;
using static Writ.Server.Tests.Storage.Entries;

namespace Writ.Server.Tests.Storage;

/// <summary>The conformance suite on SQLite (a temp file per test), plus what only SQLite has: files and file locks.</summary>
public sealed class SqliteStoreConformanceTests : StoreConformanceTests
{
    private readonly string _dir = Directory.CreateTempSubdirectory("writ-store-").FullName;

    private string DbPath => Path.Combine(_dir, "writ.db");

    protected override string ExpectedKind => "sqlite";

    protected override ValueTask CreateDatabaseAsync() => ValueTask.CompletedTask;

    protected override Task<IWritStore> OpenAsync(TimeProvider time, WritStoreOptions options) =>
        WritStoreFactory.OpenAsync("sqlite", DbPath, time, options, Ct);

    protected override async Task ExecuteRawAsync(string sql)
    {
        await using var conn = new SqliteConnection($"Data Source={DbPath};Pooling=False");
        await conn.OpenAsync(Ct);
        await using var cmd = conn.CreateCommand();
        cmd.CommandText = sql;
        await cmd.ExecuteNonQueryAsync(Ct);
    }

    protected override ValueTask DropDatabaseAsync()
    {
        try
        {
            Directory.Delete(_dir, recursive: true);
        }
        catch (IOException)
        {
            // Best effort: a temp directory left behind is not a test failure.
        }
        return ValueTask.CompletedTask;
    }

    [Fact]
    public async Task New_database_file_and_its_wal_are_private_to_their_owner()
    {
        Assert.SkipWhen(OperatingSystem.IsWindows(), "Unix file modes only");
        await Store.CaJournal.PutAsync(new CaJournal("ca", [1], DateTimeOffset.UnixEpoch), Ct);
        if (!OperatingSystem.IsWindows())
        {
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(DbPath));
            Assert.True(File.Exists(DbPath + "-wal"), "expected a WAL file next to the database");
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(DbPath + "-wal"));
        }
    }

    [Fact]
    public async Task Database_is_in_wal_mode_with_the_latest_schema_version()
    {
        await using var conn = new SqliteConnection($"Data Source={DbPath};Pooling=False");
        await conn.OpenAsync(Ct);
        await using var cmd = conn.CreateCommand();
        cmd.CommandText = "PRAGMA journal_mode";
        Assert.Equal("wal", await cmd.ExecuteScalarAsync(Ct));
        cmd.CommandText = "SELECT MAX(version) FROM schema_migrations";
        Assert.Equal(12L, await cmd.ExecuteScalarAsync(Ct));
    }

    [Theory]
    [InlineData("random")]
    [InlineData("sqlite-header-then-garbage")]
    [InlineData("text")]
    [InlineData("short")]
    public async Task A_file_that_is_not_a_sqlite_database_is_refused_and_left_unchanged(string kind)
    {
        var path = Path.Combine(_dir, kind + ".db");
        byte[] bytes = kind switch
        {
            "random" => RandomBytes(8192, seed: 1),
            "sqlite-header-then-garbage" => [.. "SQLite format 3\0"u8, .. RandomBytes(8176, seed: 2)],
            "text" => "server:\n  trust_domain: example.org\n"u8.ToArray(),
            _ => "SQLite"u8.ToArray(),
        };
        await File.WriteAllBytesAsync(path, bytes, Ct);

        var e = await StoreAssert.ThrowsOneLineAsync<StoreUnavailableException>(() =>
            WritStoreFactory.OpenAsync("sqlite", path, TimeProvider.System, Ct));

        Assert.Contains("not a Writ/SQLite database", e.Message, StringComparison.Ordinal);
        Assert.Contains(path, e.Message, StringComparison.Ordinal);
        Assert.Equal(bytes, await File.ReadAllBytesAsync(path, Ct));
    }

    [Fact]
    public async Task A_sqlite_database_of_another_application_is_refused_and_left_unchanged()
    {
        var path = Path.Combine(_dir, "other.db");
        await using (var conn = new SqliteConnection($"Data Source={path};Pooling=False"))
        {
            await conn.OpenAsync(Ct);
            await using var cmd = conn.CreateCommand();
            cmd.CommandText = "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO customers (name) VALUES ('x')";
            await cmd.ExecuteNonQueryAsync(Ct);
        }
        var before = await File.ReadAllBytesAsync(path, Ct);

        var e = await StoreAssert.ThrowsOneLineAsync<StoreUnavailableException>(() =>
            WritStoreFactory.OpenAsync("sqlite", path, TimeProvider.System, Ct));
        Assert.Contains("not a Writ database", e.Message, StringComparison.Ordinal);
        Assert.Equal(before, await File.ReadAllBytesAsync(path, Ct));
    }

    [Fact]
    public async Task Writes_fail_with_a_clear_error_while_another_connection_holds_an_exclusive_lock()
    {
        var store = await OpenExtraAsync(WritStoreOptions.Default with { BusyTimeout = TimeSpan.FromMilliseconds(200) });
        await using var locker = new SqliteConnection($"Data Source={DbPath};Pooling=False");
        await locker.OpenAsync(Ct);
        await using (var begin = locker.CreateCommand())
        {
            begin.CommandText = "BEGIN EXCLUSIVE; INSERT INTO ca_journals (name, data, updated_at_us) VALUES ('intruder', x'00', 0)";
            await begin.ExecuteNonQueryAsync(Ct);
        }

        // The write gives up (the lock is never released meanwhile): the deadline only keeps a hang from stalling the run.
        var e = await StoreAssert.ThrowsOneLineAsync<StoreUnavailableException>(() =>
            store.Entries.CreateAsync([New("spiffe://example.org/a", "spiffe://example.org/agent", "unix:uid:1")], Ct).WaitAsync(TimeSpan.FromSeconds(60), Ct));
        Assert.Contains("locked by another process", e.Message, StringComparison.Ordinal);
        Assert.Contains(DbPath, e.Message, StringComparison.Ordinal);

        await using (var rollback = locker.CreateCommand())
        {
            rollback.CommandText = "ROLLBACK";
            await rollback.ExecuteNonQueryAsync(Ct);
        }
        Assert.Equal(0, await store.Entries.CountAsync(Ct));
        Assert.Equal(0, await store.Entries.CurrentRevisionAsync(Ct));
        await store.Entries.CreateAsync([New("spiffe://example.org/a", "spiffe://example.org/agent", "unix:uid:1")], Ct);
        Assert.Equal(1, await store.Entries.CountAsync(Ct));
    }

    [Fact]
    public async Task Writes_fail_with_a_clear_error_while_the_sqlite3_cli_holds_an_exclusive_lock()
    {
        var sqlite3 = FindOnPath("sqlite3");
        Assert.SkipWhen(sqlite3 is null, "the sqlite3 command-line tool is not installed");
        var store = await OpenExtraAsync(WritStoreOptions.Default with { BusyTimeout = TimeSpan.FromMilliseconds(200) });

        using var cli = Process.Start(new ProcessStartInfo(sqlite3!, [DbPath])
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        })!;
        try
        {
            await cli.StandardInput.WriteLineAsync("BEGIN EXCLUSIVE;");
            await cli.StandardInput.WriteLineAsync("INSERT INTO ca_journals (name, data, updated_at_us) VALUES ('cli', x'00', 0);");
            await cli.StandardInput.WriteLineAsync(".print locked");
            await cli.StandardInput.FlushAsync(Ct);
            var line = await cli.StandardOutput.ReadLineAsync(Ct).AsTask().WaitAsync(TimeSpan.FromSeconds(10), Ct);
            Assert.Equal("locked", line);

            var e = await StoreAssert.ThrowsOneLineAsync<StoreUnavailableException>(() => store.Nodes.CreateAsync(new AttestedNode
            {
                SpiffeId = "spiffe://example.org/agent",
                AttestationType = "join_token",
                SerialNumber = "01",
                ExpiresAt = DateTimeOffset.UnixEpoch.AddYears(60),
            }, Ct));
            Assert.Contains("locked by another process", e.Message, StringComparison.Ordinal);
        }
        finally
        {
            cli.StandardInput.Close();   // sqlite3 exits at end of input, rolling the open transaction back
            await cli.WaitForExitAsync(Ct).WaitAsync(TimeSpan.FromSeconds(10), Ct);
        }
        Assert.Empty(await store.Nodes.ListAsync(Ct));
        Assert.Null(await store.CaJournal.GetAsync("cli", Ct));
    }

    [Fact]
    public async Task Missing_directories_are_created()
    {
        var path = Path.Combine(_dir, "a", "b", "writ.db");
        await using var store = await WritStoreFactory.OpenAsync("sqlite", path, TimeProvider.System, Ct);
        Assert.True(File.Exists(path));
    }

    [Fact]
    public async Task A_directory_in_place_of_the_file_is_a_one_line_error()
    {
        var path = Directory.CreateDirectory(Path.Combine(_dir, "dir.db")).FullName;
        var e = await StoreAssert.ThrowsOneLineAsync<StoreUnavailableException>(() => WritStoreFactory.OpenAsync("sqlite", path, TimeProvider.System, Ct));
        Assert.Contains(path, e.Message, StringComparison.Ordinal);
        Assert.Contains("is a directory", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("sqlite", "")]
    [InlineData("sqlite", "   ")]
    [InlineData("mysql", "x")]
    public async Task Bad_kind_or_path_is_a_one_line_error(string kind, string connection)
    {
        await StoreAssert.ThrowsOneLineAsync<StoreUnavailableException>(() => WritStoreFactory.OpenAsync(kind, connection, TimeProvider.System, Ct));
    }

    private static byte[] RandomBytes(int n, int seed)
    {
        var b = new byte[n];
#pragma warning disable CA5394 // deterministic test data, not security
        new Random(seed).NextBytes(b);
#pragma warning restore CA5394
        return b;
    }

    private static string? FindOnPath(string name) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator)
            .Select(d => Path.Combine(d, name)).FirstOrDefault(File.Exists);
}
