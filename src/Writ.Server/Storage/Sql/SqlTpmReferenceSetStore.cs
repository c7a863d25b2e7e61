using System.Data.Common;

namespace Writ.Server.Storage.Sql;

/// <summary>TPM reference sets on SQL: one row per set, its PCR values as a JSON array of "bank:index:hex".</summary>
internal sealed class SqlTpmReferenceSetStore(Db db, TimeProvider time) : ITpmReferenceSetStore
{
    private const string Columns = "name, pcrs, created_at_us";

    public Task<TpmReferenceSet> CreateAsync(TpmReferenceSet set, CancellationToken ct, IReadOnlyList<LedgerEvent>? audit = null)
    {
        ArgumentNullException.ThrowIfNull(set);
        if (TpmReferenceRules.Problem(set) is { } problem)
            throw new ArgumentException(problem);
        var exists = $"TPM reference set '{set.Name}' already exists: delete it first ('writ tpm reference delete --name {set.Name}') or choose another name";
        return db.WriteAsync("create TPM reference set", async (conn, tx) =>
        {
            if (await Db.ScalarAsync(conn, tx, "SELECT name FROM tpm_reference_sets WHERE name = @name", ct, ("name", set.Name)).ConfigureAwait(false) is not null)
                throw new StoreConflictException(exists);
            var stored = set with { Pcrs = TpmReferenceRules.Normalize(set.Pcrs), CreatedAt = Time.Normalize(time.GetUtcNow()) };
            await Db.ExecuteAsync(conn, tx, $"INSERT INTO tpm_reference_sets ({Columns}) VALUES (@name, @pcrs, @at)", ct,
                ("name", stored.Name), ("pcrs", Codec.EncodeStrings(stored.Pcrs.Select(p => p.ToString()))), ("at", Time.ToMicros(stored.CreatedAt))).ConfigureAwait(false);
            if (audit is { Count: > 0 })
                await SqlLedgerStore.AppendInTxAsync(conn, tx, audit, time, ct).ConfigureAwait(false);
            return stored;
        }, ct, () => exists);
    }

    public Task<TpmReferenceSet?> GetAsync(string name, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(name);
        return db.ReadAsync("get TPM reference set", async (conn, tx) =>
        {
            var rows = await Db.QueryAsync(conn, tx, $"SELECT {Columns} FROM tpm_reference_sets WHERE name = @name", Read, ct, ("name", name)).ConfigureAwait(false);
            return rows.Count == 0 ? null : rows[0];
        }, ct);
    }

    public Task<IReadOnlyList<TpmReferenceSet>> ListAsync(CancellationToken ct) =>
        db.ReadAsync<IReadOnlyList<TpmReferenceSet>>("list TPM reference sets", async (conn, tx) =>
            await Db.QueryAsync(conn, tx, $"SELECT {Columns} FROM tpm_reference_sets ORDER BY name", Read, ct).ConfigureAwait(false), ct);

    public Task DeleteAsync(string name, CancellationToken ct, IReadOnlyList<LedgerEvent>? audit = null)
    {
        ArgumentNullException.ThrowIfNull(name);
        return db.WriteAsync("delete TPM reference set", async (conn, tx) =>
        {
            if (await Db.ExecuteAsync(conn, tx, "DELETE FROM tpm_reference_sets WHERE name = @name", ct, ("name", name)).ConfigureAwait(false) == 0)
                throw new StoreNotFoundException($"TPM reference set '{name}' does not exist; list them with 'writ tpm reference list'");
            if (audit is { Count: > 0 })
                await SqlLedgerStore.AppendInTxAsync(conn, tx, audit, time, ct).ConfigureAwait(false);
            return 0;
        }, ct);
    }

    private static TpmReferenceSet Read(DbDataReader r)
    {
        var pcrs = Codec.DecodeStrings(r.GetString(1), "TPM reference set").Select(text =>
            TpmReferenceRules.TryParse(text, out var pcr, out _)
                ? pcr
                : throw new StoreUnavailableException("a stored TPM reference value is malformed: the database was modified outside writ; restore it from a backup"));
        return new TpmReferenceSet(r.GetString(0), [.. pcrs], Time.FromMicros(r.GetInt64(2)));
    }
}
