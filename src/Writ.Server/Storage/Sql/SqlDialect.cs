using System.Data.Common;

namespace Writ.Server.Storage.Sql;

/// <summary>What differs between SQLite and PostgreSQL; the stores themselves use portable SQL.</summary>
internal abstract class SqlDialect : IAsyncDisposable
{
    public abstract string Kind { get; }

    /// <summary>Human description for messages, e.g. "SQLite database '/var/lib/writ/writ.db'". Never a password.</summary>
    public abstract string Description { get; }

    /// <summary>Numbered migrations: element i is version i + 1. Each is a script of ';'-separated statements.</summary>
    public abstract IReadOnlyList<string> Migrations { get; }

    /// <summary>DDL for the schema_migrations table (IF NOT EXISTS).</summary>
    public abstract string CreateMigrationsTableSql { get; }

    /// <summary>Checks before anything is written (file is SQLite, schema not newer, ...) and one-time setup such as WAL.</summary>
    public virtual Task PrepareAsync(int latestVersion, CancellationToken ct) => Task.CompletedTask;

    public abstract Task<DbConnection> OpenConnectionAsync(CancellationToken ct);

    /// <summary>Starts a transaction that will write (SQLite: BEGIN IMMEDIATE; PostgreSQL: read committed).</summary>
    public abstract Task<DbTransaction> BeginWriteAsync(DbConnection connection, CancellationToken ct);

    /// <summary>Starts a read-only transaction that sees one consistent snapshot.</summary>
    public abstract Task<DbTransaction> BeginSnapshotReadAsync(DbConnection connection, CancellationToken ct);

    /// <summary>Serializes migrations of concurrent openers (PostgreSQL advisory lock); SQLite's write lock suffices.</summary>
    public virtual Task LockForMigrationAsync(DbConnection connection, DbTransaction tx, CancellationToken ct) => Task.CompletedTask;

    /// <summary>In-process gate for writers (SQLite has one writer at a time; queueing here beats spinning on SQLITE_BUSY).</summary>
    public virtual ValueTask<IDisposable?> EnterWriteAsync(CancellationToken ct) => ValueTask.FromResult<IDisposable?>(null);

    /// <summary>Announces a new revision to other processes when the transaction commits (no-op where unsupported).</summary>
    public virtual Task NotifyRevisionAsync(DbConnection connection, DbTransaction tx, long revision, CancellationToken ct) => Task.CompletedTask;

    /// <summary>
    /// Listens for revisions announced by other processes until <paramref name="stop"/>; calls
    /// <paramref name="onRevision"/> for each (and once after every (re)connect with the current revision).
    /// Null where the dialect cannot listen: polling alone then finds other writers.
    /// </summary>
    /// <param name="onSignal">called with the payload of every <see cref="PublishSignalAsync"/> (by any process, this one included).</param>
    public virtual Task? ListenForRevisionsAsync(Action<long> onRevision, Action<string> onSignal, CancellationToken stop) => null;

    /// <summary>Broadcasts <paramref name="payload"/> to every listener on the store at once (no-op where unsupported).</summary>
    public virtual Task PublishSignalAsync(DbConnection connection, string payload, CancellationToken ct) => Task.CompletedTask;

    /// <summary>Whether <see cref="PublishSignalAsync"/> reaches other processes (PostgreSQL); else publishing is skipped.</summary>
    public virtual bool CanSignal => false;

    public abstract bool IsUniqueViolation(DbException exception);

    /// <summary>Turns a driver error into a one-line <see cref="StoreException"/> (no secrets, says what to do).</summary>
    public abstract StoreException Translate(Exception exception, string operation);

    /// <summary>Whether <see cref="Translate"/> knows this exception type (driver and I/O errors).</summary>
    public abstract bool IsDriverException(Exception exception);

    public abstract ValueTask DisposeAsync();

    internal static string OneLine(string text)
    {
        var s = text.ReplaceLineEndings(" ").Trim();
        return s.Length > 300 ? s[..300] + "..." : s;
    }

    internal static string NewSchemaMessage(string description, long found, int supported) =>
        $"{description}: database schema version {found} is newer than this writ supports ({supported}): upgrade writ";
}
