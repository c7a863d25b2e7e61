namespace Writ.Server.Storage.Sql;

// PLACEHOLDER (contract only): the implementation lands with its issue branch.
#pragma warning disable CS9113 // parameters are used by the implementation
internal sealed class SqlPolicyStore(Db db, TimeProvider time) : IPolicyStore
#pragma warning restore CS9113
{
    public Task<StoredPolicyVersion?> ActiveAsync(CancellationToken ct) => throw new NotImplementedException();
    public Task<StoredPolicyVersion?> GetAsync(long version, CancellationToken ct) => throw new NotImplementedException();
    public Task<IReadOnlyList<StoredPolicyVersion>> ListAsync(CancellationToken ct) => throw new NotImplementedException();
    public Task<StoredPolicyVersion> PushAsync(StoredPolicyVersion version, long? expectedActive, IReadOnlyList<LedgerEvent> audit, CancellationToken ct) => throw new NotImplementedException();
}
