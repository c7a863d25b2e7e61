using System.Data;
using System.Data.Common;
using System.Globalization;
using System.Net.Sockets;
using Npgsql;

namespace Writ.Server.Storage.Sql;

/// <summary>PostgreSQL through an Npgsql data source (pooled). Messages name host, port, database and user, never the password.</summary>
internal sealed class PostgresDialect : SqlDialect
{
    private const string RevisionChannel = "writ_entry_revision";
    private const string SignalChannel = "writ_change";
    private const long MigrationLockKey = 0x5772_6974_5374_6f72;   // "WritStor"
    private readonly NpgsqlDataSource _source;
    private readonly string _host;
    private readonly string _database;
    private readonly string _user;

    private PostgresDialect(NpgsqlConnectionStringBuilder builder)
    {
        _host = $"{builder.Host}:{builder.Port}";
        _database = builder.Database ?? builder.Username ?? "(default)";
        _user = builder.Username ?? "(default)";
        Description = $"PostgreSQL database '{_database}' on {_host}";
        _source = NpgsqlDataSource.Create(builder);
    }

    public static PostgresDialect Create(string connectionString)
    {
        NpgsqlConnectionStringBuilder builder;
        try
        {
            builder = new NpgsqlConnectionStringBuilder(connectionString);
        }
        catch (Exception e) when (e is ArgumentException or FormatException or KeyNotFoundException or InvalidCastException)
        {
            // The parser's message may quote the string (and so a password): do not pass it on.
            throw new StoreUnavailableException("the PostgreSQL connection string is not valid: use Npgsql key=value syntax, e.g. Host=db.example;Port=5432;Username=writ;Password=...;Database=writ");
        }
        if (string.IsNullOrEmpty(builder.Host))
            throw new StoreUnavailableException("the PostgreSQL connection string has no Host: add Host=<server name or address>");
        builder.ApplicationName ??= "writ";
        return new PostgresDialect(builder);
    }

    public override string Kind => "postgres";
    public override string Description { get; }
    public override IReadOnlyList<string> Migrations => Sql.Migrations.Postgres;
    public override string CreateMigrationsTableSql =>
        "CREATE TABLE IF NOT EXISTS schema_migrations (version bigint PRIMARY KEY, applied_at_us bigint NOT NULL)";

    public override async Task<DbConnection> OpenConnectionAsync(CancellationToken ct) =>
        await _source.OpenConnectionAsync(ct).ConfigureAwait(false);

    public override async Task<DbTransaction> BeginWriteAsync(DbConnection connection, CancellationToken ct) =>
        await ((NpgsqlConnection)connection).BeginTransactionAsync(IsolationLevel.ReadCommitted, ct).ConfigureAwait(false);

    public override async Task<DbTransaction> BeginSnapshotReadAsync(DbConnection connection, CancellationToken ct) =>
        await ((NpgsqlConnection)connection).BeginTransactionAsync(IsolationLevel.RepeatableRead, ct).ConfigureAwait(false);

    public override Task LockForMigrationAsync(DbConnection connection, DbTransaction tx, CancellationToken ct) =>
        Db.ScalarAsync(connection, tx, "SELECT pg_advisory_xact_lock(@key)", ct, ("key", MigrationLockKey));

    public override Task NotifyRevisionAsync(DbConnection connection, DbTransaction tx, long revision, CancellationToken ct) =>
        Db.ScalarAsync(connection, tx, "SELECT pg_notify(@channel, @revision)", ct,
            ("channel", RevisionChannel), ("revision", revision.ToString(CultureInfo.InvariantCulture)));

    public override bool CanSignal => true;

    public override Task PublishSignalAsync(DbConnection connection, string payload, CancellationToken ct) =>
        Db.ScalarAsync(connection, null, "SELECT pg_notify(@channel, @payload)", ct, ("channel", SignalChannel), ("payload", payload));

    public override Task? ListenForRevisionsAsync(Action<long> onRevision, Action<string> onSignal, CancellationToken stop) => Task.Run(async () =>
    {
        while (!stop.IsCancellationRequested)
        {
            try
            {
                var conn = await _source.OpenConnectionAsync(stop).ConfigureAwait(false);
                await using (conn.ConfigureAwait(false))
                {
                    conn.Notification += (_, e) =>
                    {
                        if (e.Channel == SignalChannel)
                            onSignal(e.Payload);
                        else if (long.TryParse(e.Payload, NumberStyles.None, CultureInfo.InvariantCulture, out var revision))
                            onRevision(revision);
                    };
                    await Db.ExecuteAsync(conn, null, "LISTEN " + RevisionChannel, stop).ConfigureAwait(false);
                    await Db.ExecuteAsync(conn, null, "LISTEN " + SignalChannel, stop).ConfigureAwait(false);
                    // Anything committed before LISTEN took effect is caught by reading the revision once.
                    onRevision(await Db.ReadRevisionAsync(conn, null, stop).ConfigureAwait(false));
                    while (!stop.IsCancellationRequested)
                        await conn.WaitAsync(stop).ConfigureAwait(false);
                }
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e) when (IsDriverException(e) || e is StoreException)
            {
                // Lost the connection: polling covers the gap; reconnect after a pause.
                try
                {
                    await Task.Delay(TimeSpan.FromSeconds(1), stop).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        }
    }, CancellationToken.None);

    public override bool IsUniqueViolation(DbException exception) =>
        exception is PostgresException { SqlState: PostgresErrorCodes.UniqueViolation };

    public override bool IsDriverException(Exception exception) =>
        exception is NpgsqlException or SocketException or TimeoutException or IOException;

    public override StoreException Translate(Exception exception, string operation)
    {
        if (exception is PostgresException p)
        {
            var message = p.SqlState switch
            {
                PostgresErrorCodes.InvalidPassword or PostgresErrorCodes.InvalidAuthorizationSpecification =>
                    $"PostgreSQL on {_host} refused user '{_user}' (authentication failed): check the username and password of the store connection string",
                PostgresErrorCodes.InvalidCatalogName =>
                    $"PostgreSQL database '{_database}' does not exist on {_host}: create it (createdb {_database}) or fix Database= in the store connection string",
                PostgresErrorCodes.InsufficientPrivilege =>
                    $"{Description}: {operation} was denied ({OneLine(p.MessageText)}): make the writ user the owner of the database or grant it the rights",
                PostgresErrorCodes.TooManyConnections or PostgresErrorCodes.CannotConnectNow or PostgresErrorCodes.AdminShutdown
                    or PostgresErrorCodes.CrashShutdown =>
                    $"{Description} is not accepting work right now ({OneLine(p.MessageText)}): retry later or check the server",
                PostgresErrorCodes.SerializationFailure or PostgresErrorCodes.DeadlockDetected =>
                    $"{Description}: {operation} collided with a concurrent write: retry it",
                _ => $"{Description}: {operation} failed with PostgreSQL error {p.SqlState} ({OneLine(p.MessageText)}): check the server log",
            };
            return new StoreUnavailableException(message, p);
        }
        var inner = exception;
        while (inner.InnerException is not null)
            inner = inner.InnerException;
        return new StoreUnavailableException(
            $"cannot reach PostgreSQL at {_host} for database '{_database}' ({OneLine(inner.Message)}): check that the server is running and the Host/Port of the store connection string",
            exception);
    }

    public override ValueTask DisposeAsync() => _source.DisposeAsync();
}
