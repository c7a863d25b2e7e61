using System.Data.Common;

namespace Writ.Server.Storage.Sql;

/// <summary>The outage pools' pooled SVIDs (issue #16 item 5), one row per serial.</summary>
internal sealed class SqlPooledSvidStore(Db db, TimeProvider time) : IPooledSvidStore
{
    private const string Columns = "serial, entry_id, agent_id, issued_at_us, expires_at_us, used_at_us, used_instance";

    public Task<(int Held, int Pool)?> TryAddAsync(IReadOnlyList<PooledSvid> svids, DateTimeOffset now, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(svids);
        if (svids.Count == 0)
            return Task.FromResult<(int, int)?>(null);
        var (entryId, agentId) = (svids[0].EntryId, svids[0].AgentId);
        if (svids.Any(s => s.EntryId != entryId || s.AgentId != agentId))
            throw new ArgumentException("pooled SVIDs of one call must be of one agent and entry");
        foreach (var s in svids)
            Codec.RequireKey(s.Serial, "pooled SVID serial");
        return db.WriteAsync<(int, int)?>("record pooled SVIDs", async (conn, tx) =>
        {
            // The entry row lock serializes racing pool requests on PostgreSQL; SQLite's write lock already does.
            var lockClause = db.Dialect.Kind == "postgres" ? " FOR UPDATE" : "";
            var pool = await Db.ScalarAsync(conn, tx, "SELECT outage_pool FROM entries WHERE id = @id" + lockClause, ct, ("id", entryId)).ConfigureAwait(false);
            var size = pool is null ? 0 : Convert.ToInt32(pool, System.Globalization.CultureInfo.InvariantCulture);
            var held = Convert.ToInt32(await Db.ScalarAsync(conn, tx,
                // A revoked one is worthless to the agent (it drops it, it is never served): it does not hold a slot.
                "SELECT COUNT(*) FROM pooled_svids p WHERE p.agent_id = @agent AND p.entry_id = @entry AND p.used_at_us IS NULL AND p.expires_at_us > @now"
                + " AND NOT EXISTS (SELECT 1 FROM revocations r WHERE r.kind = 'x509' AND r.id = p.serial)", ct,
                ("agent", agentId), ("entry", entryId), ("now", Time.ToMicros(now))).ConfigureAwait(false), System.Globalization.CultureInfo.InvariantCulture);
            if (held + svids.Count > size)
                return (held, size);
            await Db.InsertRowsAsync(conn, tx, "pooled_svids", ["serial", "entry_id", "agent_id", "issued_at_us", "expires_at_us"],
                svids.Select(s => new object?[] { s.Serial, s.EntryId, s.AgentId, Time.ToMicros(s.IssuedAt), Time.ToMicros(s.ExpiresAt) }), ct).ConfigureAwait(false);
            return null;
        }, ct);
    }

    public Task<PooledSvid?> GetAsync(string serial, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(serial);
        return db.ReadAsync("get pooled SVID", async (conn, tx) =>
        {
            var rows = await Db.QueryAsync(conn, tx, $"SELECT {Columns} FROM pooled_svids WHERE serial = @s", Read, ct, ("s", serial)).ConfigureAwait(false);
            return rows.Count == 0 ? null : rows[0];
        }, ct);
    }

    public Task<PooledUseOutcome> MarkUsedAsync(string serial, string agentId, string instance, DateTimeOffset at, IReadOnlyList<LedgerEvent> audit, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(serial);
        ArgumentNullException.ThrowIfNull(audit);
        return db.WriteAsync("mark pooled SVID used", async (conn, tx) =>
        {
            var rows = await Db.QueryAsync(conn, tx, $"SELECT {Columns} FROM pooled_svids WHERE serial = @s AND agent_id = @agent", Read, ct,
                ("s", serial), ("agent", agentId)).ConfigureAwait(false);
            if (rows.Count == 0)
                return PooledUseOutcome.Unknown;
            // Only the first report marks it: a retried report (the ack was lost) writes nothing.
            var n = await Db.ExecuteAsync(conn, tx, "UPDATE pooled_svids SET used_at_us = @at, used_instance = @inst WHERE serial = @s AND used_at_us IS NULL", ct,
                ("at", Time.ToMicros(at)), ("inst", instance), ("s", serial)).ConfigureAwait(false);
            if (n == 0)
                return PooledUseOutcome.AlreadyMarked;
            if (audit.Count > 0)
                await SqlLedgerStore.AppendInTxAsync(conn, tx, audit, time, ct).ConfigureAwait(false);
            return PooledUseOutcome.Marked;
        }, ct);
    }

    private static PooledSvid Read(DbDataReader r) => new(
        r.GetString(0), r.GetString(1), r.GetString(2), Time.FromMicros(r.GetInt64(3)), Time.FromMicros(r.GetInt64(4)),
        r.IsDBNull(5) ? null : Time.FromMicros(r.GetInt64(5)), r.IsDBNull(6) ? null : r.GetString(6));
}
