using System.Data.Common;
using Writ.Protocol.Evidence;

namespace Writ.Server.Storage.Sql;

/// <summary>CI sessions on SQL: one row per login, the token's replay key UNIQUE (a token is accepted once, also across servers).</summary>
internal sealed class SqlCiSessionStore(Db db, TimeProvider time) : ICiSessionStore
{
    private const string Columns = "id, token_key, issuer, subject, spiffe_id, entry_id, selectors, facts, serial, jtis, created_at_us, expires_at_us, ended_at_us, end_reason";

    public Task CreateAsync(CiSession session, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(session);
        Codec.RequireKey(session.Id, "CI session id");
        Codec.RequireKey(session.TokenKey, "CI session token key");
        var used = "this token was already used for a CI login: fetch a new token from the CI platform";
        return db.WriteAsync("create CI session", async (conn, tx) =>
        {
            if (await Db.ScalarAsync(conn, tx, "SELECT id FROM ci_sessions WHERE token_key = @key OR id = @id", ct, ("key", session.TokenKey), ("id", session.Id)).ConfigureAwait(false) is not null)
                throw new StoreConflictException(used);
            await Db.ExecuteAsync(conn, tx, $"INSERT INTO ci_sessions ({Columns}) VALUES (@id, @key, @iss, @sub, @spiffe, @entry, @sels, @facts, @serial, @jtis, @created, @expires, @ended, @reason)", ct,
                ("id", session.Id), ("key", session.TokenKey), ("iss", session.Issuer), ("sub", session.Subject), ("spiffe", session.SpiffeId),
                ("entry", session.EntryId), ("sels", Codec.EncodeSelectors(session.Selectors)),
                ("facts", Codec.EncodeStrings(session.Facts.OrderBy(f => f.Key, StringComparer.Ordinal).SelectMany(f => new[] { f.Key, f.Value }))),
                ("serial", session.Serial?.ToUpperInvariant()), ("jtis", Codec.EncodeStrings(session.Jtis)),
                ("created", Time.ToMicros(session.CreatedAt)), ("expires", Time.ToMicros(session.ExpiresAt)),
                ("ended", session.EndedAt is { } e ? Time.ToMicros(e) : null), ("reason", session.EndReason)).ConfigureAwait(false);
            return 0;
        }, ct, () => used);
    }

    public Task<CiSession?> GetAsync(string id, CancellationToken ct) => OneAsync("id = @v", id, ct);

    public Task<CiSession?> GetByTokenKeyAsync(string tokenKey, CancellationToken ct) => OneAsync("token_key = @v", tokenKey, ct);

    public Task<CiSession?> GetBySerialAsync(string serial, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(serial);
        return OneAsync("serial = @v", serial.ToUpperInvariant(), ct);
    }

    private Task<CiSession?> OneAsync(string where, string value, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(value);
        return db.ReadAsync("get CI session", async (conn, tx) =>
        {
            var rows = await Db.QueryAsync(conn, tx, $"SELECT {Columns} FROM ci_sessions WHERE {where}", Read, ct, ("v", value)).ConfigureAwait(false);
            return rows.Count == 0 ? null : rows[0];
        }, ct);
    }

    public Task<bool> AttachAsync(string id, string? serial, IReadOnlyList<string> jtis, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(id);
        ArgumentNullException.ThrowIfNull(jtis);
        return db.WriteAsync("attach CI credentials", async (conn, tx) =>
        {
            var rows = await Db.QueryAsync(conn, tx, $"SELECT {Columns} FROM ci_sessions WHERE id = @id AND ended_at_us IS NULL", Read, ct, ("id", id)).ConfigureAwait(false);
            if (rows.Count == 0)
                return false;
            var s = rows[0];
            await Db.ExecuteAsync(conn, tx, "UPDATE ci_sessions SET serial = @serial, jtis = @jtis WHERE id = @id", ct,
                ("serial", (serial ?? s.Serial)?.ToUpperInvariant()), ("jtis", Codec.EncodeStrings(s.Jtis.Concat(jtis).Distinct(StringComparer.Ordinal))), ("id", id)).ConfigureAwait(false);
            return true;
        }, ct);
    }

    public Task<bool> EndAsync(string id, DateTimeOffset at, string reason, CancellationToken ct, IReadOnlyList<LedgerEvent>? audit = null)
    {
        ArgumentNullException.ThrowIfNull(id);
        ArgumentNullException.ThrowIfNull(reason);
        return db.WriteAsync("end CI session", async (conn, tx) =>
        {
            if (await Db.ExecuteAsync(conn, tx, "UPDATE ci_sessions SET ended_at_us = @at, end_reason = @reason WHERE id = @id AND ended_at_us IS NULL", ct,
                    ("at", Time.ToMicros(at)), ("reason", reason), ("id", id)).ConfigureAwait(false) == 0)
                return false;
            if (audit is { Count: > 0 })
                await SqlLedgerStore.AppendInTxAsync(conn, tx, audit, time, ct).ConfigureAwait(false);
            return true;
        }, ct);
    }

    public Task<IReadOnlyList<CiSession>> ExpiredOpenAsync(DateTimeOffset now, int limit, CancellationToken ct) =>
        db.ReadAsync<IReadOnlyList<CiSession>>("list expired CI sessions", async (conn, tx) =>
            await Db.QueryAsync(conn, tx, $"SELECT {Columns} FROM ci_sessions WHERE ended_at_us IS NULL AND expires_at_us <= @now ORDER BY expires_at_us, id LIMIT @limit", Read, ct,
                ("now", Time.ToMicros(now)), ("limit", (long)limit)).ConfigureAwait(false), ct);

    public Task<int> PruneAsync(DateTimeOffset olderThan, CancellationToken ct) =>
        db.WriteAsync("prune CI sessions", (conn, tx) =>
            Db.ExecuteAsync(conn, tx, "DELETE FROM ci_sessions WHERE expires_at_us < @t", ct, ("t", Time.ToMicros(olderThan))), ct);

    private static CiSession Read(DbDataReader r)
    {
        var facts = Codec.DecodeStrings(r.GetString(7), "CI session facts");
        if (facts.Length % 2 != 0)
            throw new StoreUnavailableException("stored CI session facts are malformed: the database was modified outside writ; restore it from a backup");
        var map = new SortedDictionary<string, string>(StringComparer.Ordinal);
        for (var i = 0; i < facts.Length; i += 2)
            map[facts[i]] = facts[i + 1];
        return new CiSession
        {
            Id = r.GetString(0),
            TokenKey = r.GetString(1),
            Issuer = r.GetString(2),
            Subject = r.GetString(3),
            SpiffeId = r.GetString(4),
            EntryId = r.GetString(5),
            Selectors = Codec.DecodeSelectors(r.GetString(6)),
            Facts = map,
            Serial = r.IsDBNull(8) ? null : r.GetString(8),
            Jtis = Codec.DecodeStrings(r.GetString(9), "CI session jtis"),
            CreatedAt = Time.FromMicros(r.GetInt64(10)),
            ExpiresAt = Time.FromMicros(r.GetInt64(11)),
            EndedAt = r.IsDBNull(12) ? null : Time.FromMicros(r.GetInt64(12)),
            EndReason = r.IsDBNull(13) ? null : r.GetString(13),
        };
    }
}
