namespace Writ.Server.Storage;

/// <summary>Tuning for <see cref="WritStoreFactory"/>; the defaults suit production.</summary>
public sealed record WritStoreOptions
{
    public static WritStoreOptions Default { get; } = new();

    /// <summary>
    /// SQLite: how long a write waits for a lock held by another process before failing with
    /// <see cref="StoreUnavailableException"/> (writers in this process queue without a limit). Default 5 s.
    /// </summary>
    public TimeSpan BusyTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// How often <see cref="IEntryStore.WaitForChangeAsync"/> looks for writes made by other processes (e.g. a second
    /// server on the same PostgreSQL). Writes in this process wake waiters at once. Default 1 s.
    /// </summary>
    public TimeSpan ChangePollInterval { get; init; } = TimeSpan.FromSeconds(1);
}
