using Writ.Server.Storage.Sql;

namespace Writ.Server.Storage;

public static class WritStoreFactory
{
    /// <summary>The store kinds <see cref="OpenAsync(string, string, TimeProvider, CancellationToken)"/> accepts.</summary>
    public static IReadOnlyList<string> Kinds { get; } = ["sqlite", "postgres"];

    /// <summary>
    /// Opens (creating if needed) and migrates. sqlite: connection = database file path (created with mode 0600).
    /// postgres: an Npgsql connection string. Failures -> <see cref="StoreUnavailableException"/> with a one-line message.
    /// </summary>
    public static Task<IWritStore> OpenAsync(string kind, string connection, TimeProvider time, CancellationToken ct) =>
        OpenAsync(kind, connection, time, WritStoreOptions.Default, ct);

    public static async Task<IWritStore> OpenAsync(string kind, string connection, TimeProvider time, WritStoreOptions options, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(connection);
        ArgumentNullException.ThrowIfNull(time);
        ArgumentNullException.ThrowIfNull(options);
        if (options.BusyTimeout < TimeSpan.Zero || options.ChangePollInterval <= TimeSpan.Zero)
            throw new ArgumentException("store options: BusyTimeout must be >= 0 and ChangePollInterval > 0", nameof(options));
        SqlDialect dialect = kind switch
        {
            "sqlite" => SqliteDialect.Create(connection, options),
            "postgres" => PostgresDialect.Create(connection),
            _ => throw new StoreUnavailableException($"unknown store kind '{kind}': use one of {string.Join(", ", Kinds)}"),
        };
        try
        {
            return await SqlWritStore.OpenAsync(dialect, time, options, ct).ConfigureAwait(false);
        }
        catch
        {
            await dialect.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }
}
