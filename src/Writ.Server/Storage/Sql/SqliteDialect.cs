using System.Data.Common;
using System.Globalization;
using Microsoft.Data.Sqlite;

namespace Writ.Server.Storage.Sql;

/// <summary>
/// SQLite: WAL, foreign keys on, busy timeout; pooled connections, one writer at a time in this process (others queue
/// on a semaphore, other processes on the busy timeout). Never modifies a file that is not already a Writ database.
/// </summary>
internal sealed class SqliteDialect : SqlDialect
{
    private static readonly byte[] Header = "SQLite format 3\0"u8.ToArray();
    private readonly string _path;
    private readonly string _connectionString;
    private readonly TimeSpan _busyTimeout;
    private readonly SemaphoreSlim _writer = new(1, 1);

    private SqliteDialect(string path, TimeSpan busyTimeout)
    {
        _path = path;
        _busyTimeout = busyTimeout;
        _connectionString = new SqliteConnectionStringBuilder
        {
            DataSource = path,
            Mode = SqliteOpenMode.ReadWrite,
            Cache = SqliteCacheMode.Private,
            Pooling = true,
            ForeignKeys = true,
            // Microsoft.Data.Sqlite retries SQLITE_BUSY itself until this many seconds (0 would mean forever).
            DefaultTimeout = Math.Max(1, (int)Math.Ceiling(busyTimeout.TotalSeconds)),
        }.ToString();
        Description = $"SQLite database '{path}'";
    }

    public static SqliteDialect Create(string path, WritStoreOptions options)
    {
        if (string.IsNullOrWhiteSpace(path))
            throw new StoreUnavailableException("the sqlite store needs a database file path: set the store connection to a file such as /var/lib/writ/writ.db");
        string full;
        try
        {
            full = Path.GetFullPath(path);
        }
        catch (Exception e) when (e is ArgumentException or NotSupportedException or PathTooLongException)
        {
            throw new StoreUnavailableException($"the sqlite store path '{path}' is not a valid file path: set the store connection to a file such as /var/lib/writ/writ.db");
        }
        return new SqliteDialect(full, options.BusyTimeout);
    }

    public override string Kind => "sqlite";
    public override string Description { get; }
    public override IReadOnlyList<string> Migrations => Sql.Migrations.Sqlite;
    public override string CreateMigrationsTableSql =>
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at_us INTEGER NOT NULL) STRICT";

    private string NotWrit => $"{Description} is not a Writ/SQLite database (it is corrupt or holds something else): point the store at the right file, or move this one aside and restore a backup; writ left it unchanged";

    public override async Task PrepareAsync(int latestVersion, CancellationToken ct)
    {
        if (Directory.Exists(_path))
            throw new StoreUnavailableException($"{Description} is a directory: set the store connection to a file inside it, e.g. {Path.Combine(_path, "writ.db")}");
        var dir = Path.GetDirectoryName(_path);
        if (!string.IsNullOrEmpty(dir) && !Directory.Exists(dir))
        {
            if (OperatingSystem.IsWindows())
                Directory.CreateDirectory(dir);
            else
                Directory.CreateDirectory(dir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }

        if (File.Exists(_path))
        {
            // Look before SQLite touches anything: a non-SQLite file must stay byte-for-byte unchanged.
            var head = new byte[100];
            int read;
            using (var f = new FileStream(_path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete))
                read = await f.ReadAtLeastAsync(head, head.Length, throwOnEndOfStream: false, ct).ConfigureAwait(false);
            if (read > 0 && (read < head.Length || !head.AsSpan(0, Header.Length).SequenceEqual(Header)))
                throw new StoreUnavailableException(NotWrit);
        }
        else
        {
            try
            {
                var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
                if (!OperatingSystem.IsWindows())
                    options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
                new FileStream(_path, options).Dispose();
            }
            catch (IOException) when (File.Exists(_path))
            {
                // Another opener created it first.
            }
        }

        var conn = await OpenConnectionAsync(ct).ConfigureAwait(false);
        await using (conn.ConfigureAwait(false))
        {
            List<string> tables;
            try
            {
                tables = await Db.QueryAsync(conn, null, "SELECT name FROM sqlite_master WHERE type = 'table'", r => r.GetString(0), ct).ConfigureAwait(false);
            }
            catch (SqliteException e) when (e.SqliteErrorCode is 11 or 26)
            {
                throw new StoreUnavailableException(NotWrit, e);
            }
            if (tables.Count > 0 && !tables.Contains("schema_migrations"))
                throw new StoreUnavailableException($"{Description} is a SQLite database but not a Writ database (it has tables but no schema_migrations): point the store at a new or Writ database file; writ left it unchanged");
            if (tables.Contains("schema_migrations"))
            {
                var v = Convert.ToInt64(await Db.ScalarAsync(conn, null, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations", ct).ConfigureAwait(false), CultureInfo.InvariantCulture);
                if (v > latestVersion)
                    throw new StoreUnavailableException(NewSchemaMessage(Description, v, latestVersion));
            }
            var mode = await Db.ScalarAsync(conn, null, "PRAGMA journal_mode = WAL", ct).ConfigureAwait(false) as string;
            if (!string.Equals(mode, "wal", StringComparison.OrdinalIgnoreCase))
                throw new StoreUnavailableException($"{Description} could not be switched to WAL mode (got '{mode}'): put it on a local file system that supports shared memory");
        }
    }

    public override async Task<DbConnection> OpenConnectionAsync(CancellationToken ct)
    {
        var conn = new SqliteConnection(_connectionString);
        try
        {
            await conn.OpenAsync(ct).ConfigureAwait(false);
            await Db.ExecuteAsync(conn, null, "PRAGMA busy_timeout = " + ((long)_busyTimeout.TotalMilliseconds).ToString(CultureInfo.InvariantCulture), ct).ConfigureAwait(false);
            return conn;
        }
        catch
        {
            await conn.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    public override Task<DbTransaction> BeginWriteAsync(DbConnection connection, CancellationToken ct) =>
        Task.FromResult<DbTransaction>(((SqliteConnection)connection).BeginTransaction(deferred: false));   // BEGIN IMMEDIATE

    public override Task<DbTransaction> BeginSnapshotReadAsync(DbConnection connection, CancellationToken ct) =>
        Task.FromResult<DbTransaction>(((SqliteConnection)connection).BeginTransaction(deferred: true));

    public override async ValueTask<IDisposable?> EnterWriteAsync(CancellationToken ct)
    {
        await _writer.WaitAsync(ct).ConfigureAwait(false);
        return new Releaser(_writer);
    }

    public override bool IsUniqueViolation(DbException exception) =>
        exception is SqliteException { SqliteErrorCode: 19, SqliteExtendedErrorCode: 2067 or 1555 };

    public override bool IsDriverException(Exception exception) =>
        exception is SqliteException or IOException or UnauthorizedAccessException;

    public override StoreException Translate(Exception exception, string operation) => exception switch
    {
        SqliteException { SqliteErrorCode: 5 or 6 } e => new StoreUnavailableException(
            $"{Description} is locked by another process ({operation} gave up after the {(long)_busyTimeout.TotalMilliseconds} ms busy timeout): stop the other process using the file, or raise the busy timeout; nothing was written", e),
        SqliteException { SqliteErrorCode: 11 or 26 } e => new StoreUnavailableException(NotWrit, e),
        SqliteException { SqliteErrorCode: 8 } e => new StoreUnavailableException(
            $"{Description} is read-only ({operation} failed): give the writ user write access to the file and its directory", e),
        SqliteException { SqliteErrorCode: 13 } e => new StoreUnavailableException(
            $"{Description}: {operation} failed because the disk is full: free space on its file system", e),
        SqliteException { SqliteErrorCode: 14 } e => new StoreUnavailableException(
            $"{Description} cannot be opened: check that its directory exists and the writ user may read and write it", e),
        SqliteException e => new StoreUnavailableException(
            $"{Description}: {operation} failed with SQLite error {e.SqliteErrorCode} ({OneLine(e.Message)}): check the file and its file system", e),
        _ => new StoreUnavailableException(
            $"{Description} cannot be used ({OneLine(exception.Message)}): check the path and the writ user's permissions", exception),
    };

    public override ValueTask DisposeAsync()
    {
        using (var conn = new SqliteConnection(_connectionString))
            SqliteConnection.ClearPool(conn);
        _writer.Dispose();
        return ValueTask.CompletedTask;
    }

    private sealed class Releaser(SemaphoreSlim semaphore) : IDisposable
    {
        private int _released;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _released, 1) == 0)
                semaphore.Release();
        }
    }
}
