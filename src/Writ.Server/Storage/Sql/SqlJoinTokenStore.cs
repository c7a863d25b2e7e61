using System.Data.Common;

namespace Writ.Server.Storage.Sql;

internal sealed class SqlJoinTokenStore(Db db, TimeProvider time) : IJoinTokenStore
{
    private const string Columns = "id, secret_hash, expires_at_us, alias, created_at_us, used_at_us";

    public Task CreateAsync(JoinToken token, CancellationToken ct, IReadOnlyList<LedgerEvent>? audit = null)
    {
        ArgumentNullException.ThrowIfNull(token);
        Codec.RequireKey(token.Id, "join token id");
        if (token.SecretHash is null || token.SecretHash.Length < 16)
            throw new ArgumentException("join token secret hash must be at least 16 bytes: store a SHA-256 of the secret");
        if (token.Alias is not null)
            Codec.RequireKey(token.Alias, "join token alias");
        var exists = $"join token '{token.Id}' (or one with the same secret) already exists: generate a new token";
        return db.WriteAsync("create join token", async (conn, tx) =>
        {
            if (await Db.ScalarAsync(conn, tx, "SELECT id FROM join_tokens WHERE id = @id OR secret_hash = @hash", ct,
                    ("id", token.Id), ("hash", token.SecretHash)).ConfigureAwait(false) is not null)
                throw new StoreConflictException(exists);
            await Db.ExecuteAsync(conn, tx, "INSERT INTO join_tokens (id, secret_hash, expires_at_us, alias, created_at_us, used_at_us) VALUES (@id, @hash, @expires, @alias, @created, NULL)", ct,
                ("id", token.Id), ("hash", token.SecretHash), ("expires", Time.ToMicros(token.ExpiresAt)), ("alias", token.Alias),
                ("created", Time.ToMicros(token.CreatedAt))).ConfigureAwait(false);
            if (audit is { Count: > 0 })
                await SqlLedgerStore.AppendInTxAsync(conn, tx, audit, time, ct).ConfigureAwait(false);
            return 0;
        }, ct, () => exists);
    }

    public Task<JoinTokenConsumeResult> ConsumeAsync(byte[] secretHash, DateTimeOffset now, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(secretHash);
        return db.WriteAsync("consume join token", (conn, tx) => ConsumeInTxAsync(conn, tx, secretHash, now, ct), ct);
    }

    public Task<JoinTokenConsumeResult> CheckAsync(byte[] secretHash, DateTimeOffset now, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(secretHash);
        return db.ReadAsync("check join token", async (conn, tx) =>
        {
            var rows = await Db.QueryAsync(conn, tx, $"SELECT {Columns} FROM join_tokens WHERE secret_hash = @hash", Read, ct, ("hash", secretHash)).ConfigureAwait(false);
            if (rows.Count == 0)
                return new JoinTokenConsumeResult(JoinTokenOutcome.Unknown, null);
            var (token, used) = rows[0];
            var outcome = used ? JoinTokenOutcome.AlreadyUsed : now >= token.ExpiresAt ? JoinTokenOutcome.Expired : JoinTokenOutcome.Usable;
            return new JoinTokenConsumeResult(outcome, token);
        }, ct);
    }

    /// <summary>The single-use burn inside the caller's write transaction (also node attestation's, with the node insert).</summary>
    internal static async Task<JoinTokenConsumeResult> ConsumeInTxAsync(DbConnection conn, DbTransaction tx, byte[] secretHash, DateTimeOffset now, CancellationToken ct)
    {
        var nowUs = Time.ToMicros(now);
        // One statement decides: the row lock (PostgreSQL) / write lock (SQLite) makes exactly one caller win.
        var won = await Db.QueryAsync(conn, tx,
            $"UPDATE join_tokens SET used_at_us = @now WHERE secret_hash = @hash AND used_at_us IS NULL AND expires_at_us > @now RETURNING {Columns}",
            Read, ct, ("now", nowUs), ("hash", secretHash)).ConfigureAwait(false);
        if (won.Count == 1)
            return new JoinTokenConsumeResult(JoinTokenOutcome.Consumed, won[0].Token);
        var rows = await Db.QueryAsync(conn, tx, $"SELECT {Columns} FROM join_tokens WHERE secret_hash = @hash", Read, ct, ("hash", secretHash)).ConfigureAwait(false);
        if (rows.Count == 0)
            return new JoinTokenConsumeResult(JoinTokenOutcome.Unknown, null);
        var (token, used) = rows[0];
        return new JoinTokenConsumeResult(used ? JoinTokenOutcome.AlreadyUsed : JoinTokenOutcome.Expired, token);
    }

    public Task<int> PruneAsync(DateTimeOffset olderThan, CancellationToken ct)
    {
        var t = Time.ToMicros(olderThan);
        return db.WriteAsync("prune join tokens", (conn, tx) =>
            Db.ExecuteAsync(conn, tx, "DELETE FROM join_tokens WHERE expires_at_us < @t OR used_at_us < @t", ct, ("t", t)), ct);
    }

    private static (JoinToken Token, bool Used) Read(DbDataReader r) =>
        (new JoinToken(
            r.GetString(0),
            (byte[])r.GetValue(1),
            Time.FromMicros(r.GetInt64(2)),
            r.IsDBNull(3) ? null : r.GetString(3),
            Time.FromMicros(r.GetInt64(4))),
         !r.IsDBNull(5));
}
