using System.Data.Common;
using System.Globalization;
using Writ.Server.Ledger;

namespace Writ.Server.Storage.Sql;

/// <summary>
/// The ledger on SQL. Appends lock the single <c>ledger_head</c> row (a no-op UPDATE … RETURNING: a row lock on
/// PostgreSQL, inside SQLite's one writer), so every writer — also on other servers — chains onto the latest record.
/// </summary>
internal sealed class SqlLedgerStore(Db db, TimeProvider time) : ILedgerStore
{
    private const string Columns = "seq, at_us, kind, actor, subject, decision_id, data, prev_hash, hash";
    private static readonly string[] ColumnList = Columns.Split(", ");
    private static readonly string[] IssuedColumns =
        ["kind", "id", "spiffe_id", "entry_id", "agent_id", "instance_id", "decision_id", "issued_at_us", "expires_at_us"];

    public Task<IReadOnlyList<LedgerEvent>> AppendAsync(IReadOnlyList<LedgerEvent> events, IReadOnlyList<IssuedCredential> issued, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(events);
        ArgumentNullException.ThrowIfNull(issued);
        if (events.Count == 0 && issued.Count == 0)
            return Task.FromResult<IReadOnlyList<LedgerEvent>>([]);
        return db.WriteAsync("append to the ledger", async (conn, tx) =>
        {
            var stored = await AppendInTxAsync(conn, tx, events, time, ct).ConfigureAwait(false);
            await InsertIssuedAsync(conn, tx, issued, ct).ConfigureAwait(false);
            return stored;
        }, ct, () => "an issued credential with this serial or jti is already recorded; retry (a new serial is drawn)");
    }

    /// <summary>
    /// Appends inside a caller's write transaction, so a state change and its ledger record commit (or roll back)
    /// together. Events without a time get the current time. Times never go back along seq: a record is stamped no
    /// earlier than the one before it (the clock may step back, and group commits of several servers interleave), read
    /// under the same head-row lock that assigns seq.
    /// </summary>
    internal static async Task<IReadOnlyList<LedgerEvent>> AppendInTxAsync(DbConnection conn, DbTransaction tx, IReadOnlyList<LedgerEvent> events, TimeProvider time, CancellationToken ct)
    {
        if (events.Count == 0)
            return [];
        var head = await Db.QueryAsync(conn, tx, "UPDATE ledger_head SET seq = seq WHERE id = 1 RETURNING seq, hash",
            r => (Seq: r.GetInt64(0), Hash: (byte[])r.GetValue(1)), ct).ConfigureAwait(false);
        if (head.Count != 1)
            throw new StoreUnavailableException("the ledger_head row is missing: the database was modified outside writ; restore it from a backup");
        var (seq, prev) = head[0];
        var previousAt = seq == 0 ? DateTimeOffset.MinValue
            : (await Db.QueryAsync(conn, tx, "SELECT at_us FROM ledger WHERE seq = @seq", r => Time.FromMicros(r.GetInt64(0)), ct, ("seq", seq))
                .ConfigureAwait(false)).DefaultIfEmpty(DateTimeOffset.MinValue).First();
        var result = new List<LedgerEvent>(events.Count);
        foreach (var e in events)
        {
            Validate(e);
            seq++;
            var at = Time.Normalize(e.At == default ? time.GetUtcNow() : e.At);
            if (at < previousAt)
                at = previousAt;
            previousAt = at;
            var row = e with { Seq = seq, At = at, PrevHash = prev };
            var hash = LedgerHash.Compute(row, prev);
            row = row with { Hash = hash };
            result.Add(row);
            prev = hash;
        }
        // One commit's records in multi-row statements (a batch of 1,000 entries brings 1,000 records).
        await Db.InsertRowsAsync(conn, tx, "ledger", ColumnList, result.Select(r => new object?[]
        {
            r.Seq, Time.ToMicros(r.At), r.Kind, r.Actor, r.Subject, r.DecisionId, r.DataJson, r.PrevHash, r.Hash,
        }), ct).ConfigureAwait(false);
        await Db.ExecuteAsync(conn, tx, "UPDATE ledger_head SET seq = @seq, hash = @hash WHERE id = 1", ct, ("seq", seq), ("hash", prev)).ConfigureAwait(false);
        return result;
    }

    internal static async Task InsertIssuedAsync(DbConnection conn, DbTransaction tx, IReadOnlyList<IssuedCredential> issued, CancellationToken ct)
    {
        foreach (var c in issued)
        {
            Codec.RequireKey(c.Id, "issued credential id");
            if (c.Kind is not ("x509" or "jwt"))
                throw new ArgumentException($"issued credential kind must be x509 or jwt, got '{c.Kind}'");
        }
        await Db.InsertRowsAsync(conn, tx, "issued_credentials", IssuedColumns, issued.Select(c => new object?[]
        {
            c.Kind, c.Id, c.SpiffeId, c.EntryId, c.AgentId, c.InstanceId, c.DecisionId, Time.ToMicros(c.IssuedAt), Time.ToMicros(c.ExpiresAt),
        }), ct).ConfigureAwait(false);
    }

    private static void Validate(LedgerEvent e)
    {
        Codec.RequireKey(e.Kind, "ledger event kind");
        ArgumentNullException.ThrowIfNull(e.Actor);
        ArgumentNullException.ThrowIfNull(e.Subject);
        ArgumentNullException.ThrowIfNull(e.DataJson);
    }

    public Task<IReadOnlyList<LedgerEvent>> ListAsync(long afterSeq, int limit, string? kindPrefix, string? subject, CancellationToken ct) =>
        ListPageAsync(afterSeq, limit, long.MaxValue, kindPrefix, subject, ct);

    public Task<IReadOnlyList<LedgerEvent>> ListPageAsync(long afterSeq, int limit, long maxDataBytes, string? kindPrefix, string? subject, CancellationToken ct)
    {
        if (limit <= 0)
            throw new ArgumentOutOfRangeException(nameof(limit), "limit must be positive");
        if (maxDataBytes <= 0)
            throw new ArgumentOutOfRangeException(nameof(maxDataBytes), "maxDataBytes must be positive");
        return db.ReadAsync<IReadOnlyList<LedgerEvent>>("list the ledger", async (conn, tx) =>
        {
            var where = "seq > @after";
            var args = new List<(string, object?)> { ("after", afterSeq), ("limit", limit) };
            if (!string.IsNullOrEmpty(kindPrefix))
            {
                // A prefix range instead of LIKE: no escaping rules, and it uses the (kind, seq) index.
                where += " AND kind >= @kmin AND kind < @kmax";
                args.Add(("kmin", kindPrefix));
                args.Add(("kmax", kindPrefix + "\uffff"));
            }
            if (!string.IsNullOrEmpty(subject))
            {
                where += " AND subject = @subject";
                args.Add(("subject", subject));
            }
            string sql;
            if (maxDataBytes == long.MaxValue)
            {
                sql = $"SELECT {Columns} FROM ledger WHERE {where} ORDER BY seq LIMIT @limit";
            }
            else
            {
                // The page's seqs and data sizes first (a running sum over at most limit rows), then only the rows that
                // fit are read in full: the first always, each next one while the data before it is under the budget.
                args.Add(("budget", maxDataBytes));
                sql = $"""
                    SELECT {Columns} FROM ledger WHERE seq IN (
                        SELECT seq FROM (
                            SELECT seq, SUM(n) OVER (ORDER BY seq) - n AS before FROM (
                                SELECT seq, length(data) AS n FROM ledger WHERE {where} ORDER BY seq LIMIT @limit) AS page) AS sized
                        WHERE before < @budget)
                    ORDER BY seq
                    """;
            }
            return await Db.QueryAsync(conn, tx, sql, Read, ct, [.. args]).ConfigureAwait(false);
        }, ct);
    }

    public Task<LedgerEvent?> GetAsync(long seq, CancellationToken ct) =>
        db.ReadAsync("get a ledger record", async (conn, tx) =>
        {
            var rows = await Db.QueryAsync(conn, tx, $"SELECT {Columns} FROM ledger WHERE seq = @seq", Read, ct, ("seq", seq)).ConfigureAwait(false);
            return rows.Count == 0 ? null : rows[0];
        }, ct);

    public Task<LedgerEvent?> GetByDecisionAsync(string decisionId, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(decisionId);
        return db.ReadAsync("get a decision", async (conn, tx) =>
        {
            var rows = await Db.QueryAsync(conn, tx, $"SELECT {Columns} FROM ledger WHERE decision_id = @id", Read, ct, ("id", decisionId)).ConfigureAwait(false);
            return rows.Count == 0 ? null : rows[0];
        }, ct);
    }

    public Task<IReadOnlyList<LedgerEvent>> RecentDecisionsAsync(int limit, CancellationToken ct)
    {
        if (limit <= 0)
            throw new ArgumentOutOfRangeException(nameof(limit), "limit must be positive");
        return db.ReadAsync<IReadOnlyList<LedgerEvent>>("list recent decisions", async (conn, tx) =>
            await Db.QueryAsync(conn, tx, $"SELECT {Columns} FROM ledger WHERE decision_id IS NOT NULL ORDER BY seq DESC LIMIT @limit", Read, ct, ("limit", limit)).ConfigureAwait(false), ct);
    }

    public Task<LedgerHead> HeadAsync(CancellationToken ct) =>
        db.ReadAsync("read the ledger head", async (conn, tx) =>
        {
            var rows = await Db.QueryAsync(conn, tx, "SELECT seq, hash FROM ledger_head WHERE id = 1", r => new LedgerHead(r.GetInt64(0), (byte[])r.GetValue(1)), ct).ConfigureAwait(false);
            return rows.Count == 1 ? rows[0]
                : throw new StoreUnavailableException("the ledger_head row is missing: the database was modified outside writ; restore it from a backup");
        }, ct);

    public Task<IReadOnlyList<IssuedCredential>> IssuedAsync(IssuedFilter filter, DateTimeOffset now, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(filter);
        return db.ReadAsync<IReadOnlyList<IssuedCredential>>("list issued credentials", async (conn, tx) =>
        {
            var sql = "SELECT kind, id, spiffe_id, entry_id, agent_id, instance_id, decision_id, issued_at_us, expires_at_us FROM issued_credentials WHERE 1 = 1";
            var args = new List<(string, object?)>();
            void Add(string column, string name, string? value)
            {
                if (value is null)
                    return;
                sql += $" AND {column} = @{name}";
                args.Add((name, value));
            }
            Add("id", "id", filter.Id);
            Add("spiffe_id", "spiffe", filter.SpiffeId);
            Add("entry_id", "entry", filter.EntryId);
            Add("agent_id", "agent", filter.AgentId);
            Add("instance_id", "instance", filter.InstanceId);
            if (!filter.IncludeExpired)
            {
                sql += " AND expires_at_us > @now";
                args.Add(("now", Time.ToMicros(now)));
            }
            sql += " ORDER BY issued_at_us, kind, id";
            return await Db.QueryAsync(conn, tx, sql, r => new IssuedCredential
            {
                Kind = r.GetString(0),
                Id = r.GetString(1),
                SpiffeId = r.GetString(2),
                EntryId = r.IsDBNull(3) ? null : r.GetString(3),
                AgentId = r.GetString(4),
                InstanceId = r.IsDBNull(5) ? null : r.GetString(5),
                DecisionId = r.GetString(6),
                IssuedAt = Time.FromMicros(r.GetInt64(7)),
                ExpiresAt = Time.FromMicros(r.GetInt64(8)),
            }, ct, [.. args]).ConfigureAwait(false);
        }, ct);
    }

    private static LedgerEvent Read(DbDataReader r) => new()
    {
        Seq = r.GetInt64(0),
        At = Time.FromMicros(r.GetInt64(1)),
        Kind = r.GetString(2),
        Actor = r.GetString(3),
        Subject = r.GetString(4),
        DecisionId = r.IsDBNull(5) ? null : r.GetString(5),
        DataJson = r.GetString(6),
        PrevHash = (byte[])r.GetValue(7),
        Hash = (byte[])r.GetValue(8),
    };

    internal static string Hex(byte[] b) => Convert.ToHexString(b).ToLower(CultureInfo.InvariantCulture);
}
