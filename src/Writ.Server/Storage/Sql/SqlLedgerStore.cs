namespace Writ.Server.Storage.Sql;

// PLACEHOLDER (contract only): the implementation lands with its issue branch.
#pragma warning disable CS9113 // parameters are used by the implementation
internal sealed class SqlLedgerStore(Db db, TimeProvider time) : ILedgerStore
#pragma warning restore CS9113
{
    public Task<IReadOnlyList<LedgerEvent>> AppendAsync(IReadOnlyList<LedgerEvent> events, IReadOnlyList<IssuedCredential> issued, CancellationToken ct) => throw new NotImplementedException();
    public Task<IReadOnlyList<LedgerEvent>> ListAsync(long afterSeq, int limit, string? kindPrefix, string? subject, CancellationToken ct) => throw new NotImplementedException();
    public Task<LedgerEvent?> GetAsync(long seq, CancellationToken ct) => throw new NotImplementedException();
    public Task<LedgerEvent?> GetByDecisionAsync(string decisionId, CancellationToken ct) => throw new NotImplementedException();
    public Task<IReadOnlyList<LedgerEvent>> RecentDecisionsAsync(int limit, CancellationToken ct) => throw new NotImplementedException();
    public Task<IReadOnlyList<IssuedCredential>> IssuedAsync(IssuedFilter filter, DateTimeOffset now, CancellationToken ct) => throw new NotImplementedException();
}
