using System.Data.Common;

namespace Writ.Server.Storage.Sql;

/// <summary>
/// Revocations on SQL. A revocation bumps the shared store revision (the same one entries use), so every agent Sync
/// stream waiting on <see cref="IEntryStore.WaitForChangeAsync"/> wakes at once, in this process and — through the
/// revision watcher — in other servers on the same database. The bump also serialises revokers (it locks the revision
/// row until commit), so "already revoked" is decided under that lock and revisions commit in order.
/// </summary>
/// <remarks>
/// Audit events: when <c>audit</c> holds at least as many events as there are revocations, <c>audit[i]</c> describes
/// <c>revocations[i]</c> and is written only if that credential is newly revoked; events after those (e.g. an
/// <c>instance.gone</c> record) are always written. With fewer events than revocations, all events are written.
/// </remarks>
internal sealed class SqlRevocationStore(Db db, TimeProvider time, RevisionWatcher watcher) : IRevocationStore
{
    private const string Columns = "kind, id, spiffe_id, entry_id, instance_id, revoked_at_us, expires_at_us, reason, revision";

    public async Task<IReadOnlyList<RevocationRecord>> RevokeAsync(IReadOnlyList<RevocationRecord> revocations, IReadOnlyList<LedgerEvent> audit, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(revocations);
        ArgumentNullException.ThrowIfNull(audit);
        var keyed = new List<(string Kind, string Id, RevocationRecord Record)>(revocations.Count);
        foreach (var r in revocations)
        {
            var (kind, id) = KeyOf(r ?? throw new ArgumentException("a revocation in the batch is null: remove it"));
            Codec.RequireKey(r.SpiffeId, "revoked credential's SPIFFE ID");
            ArgumentNullException.ThrowIfNull(r.Reason);
            keyed.Add((kind, id, r));
        }
        if (keyed.Count == 0 && audit.Count == 0)
            return [];
        var paired = audit.Count >= keyed.Count;

        var (stored, revision) = await db.WriteAsync("revoke credentials", async (conn, tx) =>
        {
            var rev = await db.BumpRevisionAsync(conn, tx, ct).ConfigureAwait(false);
            var result = new List<RevocationRecord>();
            var events = new List<LedgerEvent>();
            var seen = new HashSet<(string, string)>();
            for (var i = 0; i < keyed.Count; i++)
            {
                var (kind, id, r) = keyed[i];
                var fresh = seen.Add((kind, id))
                    && await Db.ScalarAsync(conn, tx, "SELECT revision FROM revocations WHERE kind = @kind AND id = @id", ct, ("kind", kind), ("id", id)).ConfigureAwait(false) is null;
                if (!fresh)
                    continue;
                var row = r with
                {
                    SerialHex = kind == "x509" ? id : null,
                    Jti = kind == "jwt" ? id : null,
                    RevokedAt = Time.Normalize(r.RevokedAt == default ? time.GetUtcNow() : r.RevokedAt),
                    ExpiresAt = Time.Normalize(r.ExpiresAt),
                    Revision = rev,
                };
                await Db.ExecuteAsync(conn, tx, $"INSERT INTO revocations ({Columns}) VALUES (@kind, @id, @spiffe, @entry, @instance, @revoked, @expires, @reason, @rev)", ct,
                    ("kind", kind), ("id", id), ("spiffe", row.SpiffeId), ("entry", row.EntryId), ("instance", row.InstanceId),
                    ("revoked", Time.ToMicros(row.RevokedAt)), ("expires", Time.ToMicros(row.ExpiresAt)), ("reason", row.Reason), ("rev", rev)).ConfigureAwait(false);
                result.Add(row);
                if (paired)
                    events.Add(audit[i]);
            }
            events.AddRange(paired ? audit.Skip(keyed.Count) : audit);
            await SqlLedgerStore.AppendInTxAsync(conn, tx, events, time, ct).ConfigureAwait(false);
            return (result, rev);
        }, ct, () => "another server revoked one of these credentials at the same moment; list the revocations ('writ revoke list') and retry").ConfigureAwait(false);
        watcher.Observe(revision);
        return stored;
    }

    public Task<IReadOnlyList<RevocationRecord>> ListAsync(DateTimeOffset now, bool includeExpired, CancellationToken ct) =>
        db.ReadAsync<IReadOnlyList<RevocationRecord>>("list revocations", async (conn, tx) =>
            includeExpired
                ? await Db.QueryAsync(conn, tx, $"SELECT {Columns} FROM revocations ORDER BY revision, kind, id", Read, ct).ConfigureAwait(false)
                : await Db.QueryAsync(conn, tx, $"SELECT {Columns} FROM revocations WHERE expires_at_us > @now ORDER BY revision, kind, id", Read, ct,
                    ("now", Time.ToMicros(now))).ConfigureAwait(false), ct);

    public Task<IReadOnlyList<RevocationRecord>> SinceAsync(long revision, CancellationToken ct) =>
        db.ReadAsync<IReadOnlyList<RevocationRecord>>("read revocations since a revision", async (conn, tx) =>
            await Db.QueryAsync(conn, tx, $"SELECT {Columns} FROM revocations WHERE revision > @rev ORDER BY revision, kind, id", Read, ct,
                ("rev", revision)).ConfigureAwait(false), ct);

    public Task<int> PruneAsync(DateTimeOffset olderThan, CancellationToken ct) =>
        db.WriteAsync("prune revocations", (conn, tx) =>
            Db.ExecuteAsync(conn, tx, "DELETE FROM revocations WHERE expires_at_us < @t", ct, ("t", Time.ToMicros(olderThan))), ct);

    /// <summary>("x509", upper-case serial hex) or ("jwt", jti); exactly one of the two must be set.</summary>
    internal static (string Kind, string Id) KeyOf(RevocationRecord r)
    {
        var serial = string.IsNullOrEmpty(r.SerialHex) ? null : r.SerialHex;
        var jti = string.IsNullOrEmpty(r.Jti) ? null : r.Jti;
        if ((serial is null) == (jti is null))
            throw new ArgumentException("a revocation names exactly one credential: an X.509 serial (hex) or a JWT jti");
        if (serial is not null)
        {
            if (serial.Length > 128 || !serial.All(char.IsAsciiHexDigit))
                throw new ArgumentException("an X.509 serial must be 1-128 hexadecimal digits, as printed by 'openssl x509 -serial'");
            return ("x509", serial.ToUpperInvariant());
        }
        Codec.RequireKey(jti!, "JWT jti");
        return ("jwt", jti!);
    }

    private static RevocationRecord Read(DbDataReader r)
    {
        var kind = r.GetString(0);
        return new RevocationRecord
        {
            SerialHex = kind == "x509" ? r.GetString(1) : null,
            Jti = kind == "jwt" ? r.GetString(1) : null,
            SpiffeId = r.GetString(2),
            EntryId = r.IsDBNull(3) ? null : r.GetString(3),
            InstanceId = r.IsDBNull(4) ? null : r.GetString(4),
            RevokedAt = Time.FromMicros(r.GetInt64(5)),
            ExpiresAt = Time.FromMicros(r.GetInt64(6)),
            Reason = r.GetString(7),
            Revision = r.GetInt64(8),
        };
    }
}
