namespace Writ.Server.Storage.Sql;

// PLACEHOLDER (contract only): the implementation lands with its issue branch.
#pragma warning disable CS9113 // parameters are used by the implementation
internal sealed class SqlRevocationStore(Db db, TimeProvider time, RevisionWatcher watcher) : IRevocationStore
#pragma warning restore CS9113
{
    public Task<IReadOnlyList<RevocationRecord>> RevokeAsync(IReadOnlyList<RevocationRecord> revocations, IReadOnlyList<LedgerEvent> audit, CancellationToken ct) => throw new NotImplementedException();
    public Task<IReadOnlyList<RevocationRecord>> ListAsync(DateTimeOffset now, bool includeExpired, CancellationToken ct) => throw new NotImplementedException();
    public Task<IReadOnlyList<RevocationRecord>> SinceAsync(long revision, CancellationToken ct) => throw new NotImplementedException();
    public Task<int> PruneAsync(DateTimeOffset olderThan, CancellationToken ct) => throw new NotImplementedException();
}
