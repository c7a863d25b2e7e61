using System.Data.Common;

namespace Writ.Server.Storage.Sql;

internal sealed class SqlBundleStore(Db db) : IBundleStore
{
    public Task<StoredBundle?> GetAsync(string trustDomain, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(trustDomain);
        return db.ReadAsync("get bundle", async (conn, tx) =>
        {
            var rows = await Db.QueryAsync(conn, tx, "SELECT trust_domain, bundle_json, sequence, updated_at_us FROM bundles WHERE trust_domain = @td",
                Read, ct, ("td", trustDomain)).ConfigureAwait(false);
            return rows.Count == 0 ? null : rows[0];
        }, ct);
    }

    public Task PutAsync(StoredBundle bundle, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(bundle);
        Codec.RequireKey(bundle.TrustDomain, "bundle trust domain");
        if (string.IsNullOrEmpty(bundle.SpiffeBundleJson))
            throw new ArgumentException("bundle JSON is empty: store the SPIFFE bundle document");
        return db.WriteAsync("put bundle", (conn, tx) => Db.ExecuteAsync(conn, tx, """
            INSERT INTO bundles (trust_domain, bundle_json, sequence, updated_at_us) VALUES (@td, @json, @seq, @at)
            ON CONFLICT (trust_domain) DO UPDATE SET bundle_json = excluded.bundle_json, sequence = excluded.sequence, updated_at_us = excluded.updated_at_us
            """, ct, ("td", bundle.TrustDomain), ("json", bundle.SpiffeBundleJson), ("seq", bundle.Sequence), ("at", Time.ToMicros(bundle.UpdatedAt))), ct);
    }

    public Task<bool> PutIfSequenceAsync(StoredBundle bundle, long expectedSequence, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(bundle);
        Codec.RequireKey(bundle.TrustDomain, "bundle trust domain");
        if (string.IsNullOrEmpty(bundle.SpiffeBundleJson))
            throw new ArgumentException("bundle JSON is empty: store the SPIFFE bundle document");
        var sql = expectedSequence == 0
            ? "INSERT INTO bundles (trust_domain, bundle_json, sequence, updated_at_us) VALUES (@td, @json, @seq, @at) ON CONFLICT (trust_domain) DO NOTHING"
            : "UPDATE bundles SET bundle_json = @json, sequence = @seq, updated_at_us = @at WHERE trust_domain = @td AND sequence = @expected";
        return db.WriteAsync("put bundle if unchanged", async (conn, tx) => 1 == await Db.ExecuteAsync(conn, tx, sql, ct,
            ("td", bundle.TrustDomain), ("json", bundle.SpiffeBundleJson), ("seq", bundle.Sequence), ("at", Time.ToMicros(bundle.UpdatedAt)),
            ("expected", expectedSequence)).ConfigureAwait(false), ct);
    }

    public Task<IReadOnlyList<StoredBundle>> ListAsync(CancellationToken ct) =>
        db.ReadAsync<IReadOnlyList<StoredBundle>>("list bundles", async (conn, tx) =>
            await Db.QueryAsync(conn, tx, "SELECT trust_domain, bundle_json, sequence, updated_at_us FROM bundles ORDER BY trust_domain", Read, ct).ConfigureAwait(false), ct);

    private static StoredBundle Read(DbDataReader r) =>
        new(r.GetString(0), r.GetString(1), r.GetInt64(2), Time.FromMicros(r.GetInt64(3)));
}

internal sealed class SqlCaJournalStore(Db db) : ICaJournalStore
{
    public Task<CaJournal?> GetAsync(string name, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(name);
        return db.ReadAsync("get CA journal", async (conn, tx) =>
        {
            var rows = await Db.QueryAsync(conn, tx, "SELECT name, data, updated_at_us FROM ca_journals WHERE name = @name",
                r => new CaJournal(r.GetString(0), (byte[])r.GetValue(1), Time.FromMicros(r.GetInt64(2))), ct, ("name", name)).ConfigureAwait(false);
            return rows.Count == 0 ? null : rows[0];
        }, ct);
    }

    public Task PutAsync(CaJournal journal, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(journal);
        Codec.RequireKey(journal.Name, "CA journal name");
        ArgumentNullException.ThrowIfNull(journal.Data);
        return db.WriteAsync("put CA journal", (conn, tx) => Db.ExecuteAsync(conn, tx, """
            INSERT INTO ca_journals (name, data, updated_at_us) VALUES (@name, @data, @at)
            ON CONFLICT (name) DO UPDATE SET data = excluded.data, updated_at_us = excluded.updated_at_us
            """, ct, ("name", journal.Name), ("data", journal.Data), ("at", Time.ToMicros(journal.UpdatedAt))), ct);
    }

    public Task<IReadOnlyList<CaJournal>> ListAsync(CancellationToken ct) =>
        db.ReadAsync<IReadOnlyList<CaJournal>>("list CA journals", async (conn, tx) =>
            await Db.QueryAsync(conn, tx, "SELECT name, data, updated_at_us FROM ca_journals ORDER BY name",
                r => new CaJournal(r.GetString(0), (byte[])r.GetValue(1), Time.FromMicros(r.GetInt64(2))), ct).ConfigureAwait(false), ct);

    public Task<bool> RenameAsync(string from, string to, CancellationToken ct)
    {
        Codec.RequireKey(from, "CA journal name");
        Codec.RequireKey(to, "CA journal name");
        return db.WriteAsync("rename CA journal", async (conn, tx) =>
        {
            var taken = await Db.QueryAsync(conn, tx, "SELECT name FROM ca_journals WHERE name = @to", r => r.GetString(0), ct, ("to", to)).ConfigureAwait(false);
            return taken.Count == 0
                && 1 == await Db.ExecuteAsync(conn, tx, "UPDATE ca_journals SET name = @to WHERE name = @from", ct, ("from", from), ("to", to)).ConfigureAwait(false);
        }, ct, () => $"CA journal '{to}' already exists: another server took it");
    }
}

internal sealed class SqlMetadataStore(Db db) : IMetadataStore
{
    public Task<string?> GetAsync(string key, CancellationToken ct)
    {
        Codec.RequireKey(key, "metadata key");
        return db.ReadAsync("get metadata", (conn, tx) => ReadAsync(conn, tx, key, ct), ct);
    }

    public Task<string> SetIfAbsentAsync(string key, string value, CancellationToken ct)
    {
        Codec.RequireKey(key, "metadata key");
        ArgumentNullException.ThrowIfNull(value);
        return db.WriteAsync("set metadata", async (conn, tx) =>
        {
            await Db.ExecuteAsync(conn, tx, "INSERT INTO store_metadata (key, value) VALUES (@key, @value) ON CONFLICT (key) DO NOTHING",
                ct, ("key", key), ("value", value)).ConfigureAwait(false);
            return await ReadAsync(conn, tx, key, ct).ConfigureAwait(false) ?? value;
        }, ct);
    }

    private static async Task<string?> ReadAsync(DbConnection conn, DbTransaction? tx, string key, CancellationToken ct)
    {
        var rows = await Db.QueryAsync(conn, tx, "SELECT value FROM store_metadata WHERE key = @key", r => r.GetString(0), ct, ("key", key)).ConfigureAwait(false);
        return rows.Count == 0 ? null : rows[0];
    }
}
