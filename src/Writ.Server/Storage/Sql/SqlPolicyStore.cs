using System.Data.Common;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Writ.Server.Storage.Sql;

internal sealed record PolicyFileRow(string Name, string Text);

[JsonSerializable(typeof(PolicyFileRow[]))]
internal sealed partial class PolicyJsonContext : JsonSerializerContext;

/// <summary>Policy versions on SQL: the active version is the highest; a push and its ledger record share one transaction.</summary>
internal sealed class SqlPolicyStore(Db db, TimeProvider time) : IPolicyStore
{
    private const string Columns = "version, files, sha256, author, comment, created_at_us, rolled_back_from";

    public Task<StoredPolicyVersion?> ActiveAsync(CancellationToken ct) =>
        db.ReadAsync("get the active policy", async (conn, tx) =>
        {
            var rows = await Db.QueryAsync(conn, tx, $"SELECT {Columns} FROM policy_versions ORDER BY version DESC LIMIT 1", Read, ct).ConfigureAwait(false);
            return rows.Count == 0 ? null : rows[0];
        }, ct);

    public Task<StoredPolicyVersion?> GetAsync(long version, CancellationToken ct) =>
        db.ReadAsync("get a policy version", async (conn, tx) =>
        {
            var rows = await Db.QueryAsync(conn, tx, $"SELECT {Columns} FROM policy_versions WHERE version = @v", Read, ct, ("v", version)).ConfigureAwait(false);
            return rows.Count == 0 ? null : rows[0];
        }, ct);

    public Task<IReadOnlyList<StoredPolicyVersion>> ListAsync(CancellationToken ct) =>
        db.ReadAsync<IReadOnlyList<StoredPolicyVersion>>("list policy versions", async (conn, tx) =>
            await Db.QueryAsync(conn, tx, $"SELECT {Columns} FROM policy_versions ORDER BY version DESC", Read, ct).ConfigureAwait(false), ct);

    public Task<StoredPolicyVersion> PushAsync(StoredPolicyVersion version, long? expectedActive, IReadOnlyList<LedgerEvent> audit, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(version);
        ArgumentNullException.ThrowIfNull(audit);
        if (version.Files.Count == 0)
            throw new ArgumentException("a policy version needs at least one file");
        Codec.RequireKey(version.Sha256, "policy sha256");
        var files = JsonSerializer.Serialize(version.Files.Select(f => new PolicyFileRow(f.Name, f.Text)).ToArray(), PolicyJsonContext.Default.PolicyFileRowArray);
        return db.WriteAsync("push a policy version", async (conn, tx) =>
        {
            var current = Convert.ToInt64(await Db.ScalarAsync(conn, tx, "SELECT COALESCE(MAX(version), 0) FROM policy_versions", ct).ConfigureAwait(false), CultureInfo.InvariantCulture);
            if (expectedActive is { } expected && expected != current)
                throw new StoreConflictException($"the active policy is version {current}, not {expected}: someone pushed meanwhile; review it ('writ policy show') and push again");
            var stored = version with { Version = current + 1, CreatedAt = Time.Normalize(time.GetUtcNow()) };
            await Db.ExecuteAsync(conn, tx, $"INSERT INTO policy_versions ({Columns}) VALUES (@v, @files, @sha, @author, @comment, @at, @from)", ct,
                ("v", stored.Version), ("files", files), ("sha", stored.Sha256), ("author", stored.Author), ("comment", stored.Comment),
                ("at", Time.ToMicros(stored.CreatedAt)), ("from", stored.RolledBackFrom)).ConfigureAwait(false);
            // The audit events learn the version number only now: "{version}" in their subject, and the data member
            // "version":"{version}", are filled in. Only that exact member: a user's comment or file name that reads
            // "{version}" is a JSON string value (its quotes escaped inside any other text) and stays as written.
            var number = stored.Version.ToString(CultureInfo.InvariantCulture);
            var events = audit.Select(e => e with
            {
                Subject = e.Subject.Replace("{version}", number, StringComparison.Ordinal),
                DataJson = e.DataJson.Replace("\"version\":\"{version}\"", "\"version\":" + number, StringComparison.Ordinal),
            }).ToList();
            await SqlLedgerStore.AppendInTxAsync(conn, tx, events, time, ct).ConfigureAwait(false);
            return stored;
        }, ct, () => "another server pushed a policy version at the same moment; review it ('writ policy list') and push again");
    }

    private static StoredPolicyVersion Read(DbDataReader r)
    {
        var files = JsonSerializer.Deserialize(r.GetString(1), PolicyJsonContext.Default.PolicyFileRowArray)
            ?? throw new StoreUnavailableException("a stored policy version is not readable: the database was modified outside writ; restore it from a backup");
        return new StoredPolicyVersion
        {
            Version = r.GetInt64(0),
            Files = [.. files.Select(f => new PolicyFileRecord(f.Name, f.Text))],
            Sha256 = r.GetString(2),
            Author = r.GetString(3),
            Comment = r.GetString(4),
            CreatedAt = Time.FromMicros(r.GetInt64(5)),
            RolledBackFrom = r.IsDBNull(6) ? null : r.GetInt64(6),
        };
    }
}
