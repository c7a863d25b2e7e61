using System.Data.Common;
using System.Globalization;

namespace Writ.Server.Storage.Sql;

/// <summary>Connection/transaction plumbing shared by the SQL stores: every operation opens a (pooled) connection.</summary>
internal sealed class Db(SqlDialect dialect)
{
    public SqlDialect Dialect { get; } = dialect;

    public async Task<T> ReadAsync<T>(string operation, Func<DbConnection, DbTransaction?, Task<T>> body, CancellationToken ct, bool snapshot = false)
    {
        StoreMetrics.Count(operation);
        try
        {
            var conn = await Dialect.OpenConnectionAsync(ct).ConfigureAwait(false);
            await using (conn.ConfigureAwait(false))
            {
                if (!snapshot)
                    return await body(conn, null).ConfigureAwait(false);
                var tx = await Dialect.BeginSnapshotReadAsync(conn, ct).ConfigureAwait(false);
                await using (tx.ConfigureAwait(false))
                {
                    var result = await body(conn, tx).ConfigureAwait(false);
                    await tx.CommitAsync(ct).ConfigureAwait(false);
                    return result;
                }
            }
        }
        catch (Exception e) when (e is not StoreException && Dialect.IsDriverException(e))
        {
            ct.ThrowIfCancellationRequested();
            throw Dialect.Translate(e, operation);
        }
    }

    public async Task<T> WriteAsync<T>(string operation, Func<DbConnection, DbTransaction, Task<T>> body, CancellationToken ct, Func<string>? conflictMessage = null)
    {
        using var gate = await Dialect.EnterWriteAsync(ct).ConfigureAwait(false);
        StoreMetrics.Count(operation);
        try
        {
            var conn = await Dialect.OpenConnectionAsync(ct).ConfigureAwait(false);
            await using (conn.ConfigureAwait(false))
            {
                var tx = await Dialect.BeginWriteAsync(conn, ct).ConfigureAwait(false);
                await using (tx.ConfigureAwait(false))
                {
                    var result = await body(conn, tx).ConfigureAwait(false);
                    await tx.CommitAsync(ct).ConfigureAwait(false);
                    return result;
                }
            }
        }
        catch (DbException e) when (Dialect.IsUniqueViolation(e))
        {
            // A concurrent writer (another server) got there between our check and our insert.
            throw new StoreConflictException(conflictMessage?.Invoke() ?? $"{operation} failed: the record already exists; re-read it and retry");
        }
        catch (Exception e) when (e is not StoreException && Dialect.IsDriverException(e))
        {
            ct.ThrowIfCancellationRequested();
            throw Dialect.Translate(e, operation);
        }
    }

    public static DbCommand Command(DbConnection conn, DbTransaction? tx, string sql, params (string Name, object? Value)[] parameters)
    {
        var cmd = conn.CreateCommand();
        cmd.Transaction = tx;
        cmd.CommandText = sql;
        foreach (var (name, value) in parameters)
            AddParameter(cmd, name, value);
        return cmd;
    }

    public static void AddParameter(DbCommand cmd, string name, object? value)
    {
        var p = cmd.CreateParameter();
        p.ParameterName = name;
        p.Value = value ?? DBNull.Value;
        cmd.Parameters.Add(p);
    }

    /// <summary>Appends "@prefix0, @prefix1, ..." parameters for an IN list and returns the SQL fragment.</summary>
    public static string InList(DbCommand cmd, string prefix, IEnumerable<string> values)
    {
        var names = new List<string>();
        foreach (var v in values)
        {
            var name = prefix + names.Count.ToString(CultureInfo.InvariantCulture);
            AddParameter(cmd, name, v);
            names.Add("@" + name);
        }
        return string.Join(", ", names);
    }

    /// <summary>
    /// Parameters per multi-row statement: under SQLite's historic limit of 999 host parameters (newer builds allow
    /// more; PostgreSQL 65,535), so one batch needs rows × columns / 900 round trips instead of one per row.
    /// </summary>
    internal const int MaxParametersPerStatement = 900;

    /// <summary>
    /// INSERT INTO table (columns) VALUES (…), (…), … for all rows, as few statements as the parameter budget allows.
    /// Each row holds one value per column, in column order.
    /// </summary>
    public static async Task InsertRowsAsync(DbConnection conn, DbTransaction tx, string table, IReadOnlyList<string> columns, IEnumerable<object?[]> rows, CancellationToken ct)
    {
        var perStatement = Math.Max(1, MaxParametersPerStatement / columns.Count);
        var head = $"INSERT INTO {table} ({string.Join(", ", columns)}) VALUES ";
        var chunk = new List<object?[]>(perStatement);
        foreach (var row in rows)
        {
            if (row.Length != columns.Count)
                throw new ArgumentException($"a row for {table} has {row.Length} values for {columns.Count} columns");
            chunk.Add(row);
            if (chunk.Count == perStatement)
            {
                await InsertChunkAsync(conn, tx, head, columns.Count, chunk, ct).ConfigureAwait(false);
                chunk.Clear();
            }
        }
        if (chunk.Count > 0)
            await InsertChunkAsync(conn, tx, head, columns.Count, chunk, ct).ConfigureAwait(false);
    }

    private static async Task InsertChunkAsync(DbConnection conn, DbTransaction tx, string head, int width, List<object?[]> chunk, CancellationToken ct)
    {
        var cmd = conn.CreateCommand();
        await using (cmd.ConfigureAwait(false))
        {
            cmd.Transaction = tx;
            var sql = new System.Text.StringBuilder(head);
            var n = 0;
            for (var r = 0; r < chunk.Count; r++)
            {
                sql.Append(r == 0 ? "(" : ", (");
                for (var c = 0; c < width; c++)
                {
                    var name = "p" + n.ToString(CultureInfo.InvariantCulture);
                    n++;
                    AddParameter(cmd, name, chunk[r][c]);
                    sql.Append(c == 0 ? "@" : ", @").Append(name);
                }
                sql.Append(')');
            }
            cmd.CommandText = sql.ToString();
            await cmd.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
        }
    }

    public static async Task<int> ExecuteAsync(DbConnection conn, DbTransaction? tx, string sql, CancellationToken ct, params (string Name, object? Value)[] parameters)
    {
        var cmd = Command(conn, tx, sql, parameters);
        await using (cmd.ConfigureAwait(false))
            return await cmd.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
    }

    public static async Task<object?> ScalarAsync(DbConnection conn, DbTransaction? tx, string sql, CancellationToken ct, params (string Name, object? Value)[] parameters)
    {
        var cmd = Command(conn, tx, sql, parameters);
        await using (cmd.ConfigureAwait(false))
        {
            var v = await cmd.ExecuteScalarAsync(ct).ConfigureAwait(false);
            return v is DBNull ? null : v;
        }
    }

    public static async Task<List<T>> QueryAsync<T>(DbCommand cmd, Func<DbDataReader, T> map, CancellationToken ct)
    {
        var list = new List<T>();
        var reader = await cmd.ExecuteReaderAsync(ct).ConfigureAwait(false);
        await using (reader.ConfigureAwait(false))
        {
            while (await reader.ReadAsync(ct).ConfigureAwait(false))
                list.Add(map(reader));
        }
        return list;
    }

    public static async Task<List<T>> QueryAsync<T>(DbConnection conn, DbTransaction? tx, string sql, Func<DbDataReader, T> map, CancellationToken ct, params (string Name, object? Value)[] parameters)
    {
        var cmd = Command(conn, tx, sql, parameters);
        await using (cmd.ConfigureAwait(false))
            return await QueryAsync(cmd, map, ct).ConfigureAwait(false);
    }

    /// <summary>
    /// Bumps the global revision (locking its row until commit) and returns the new value; tells other processes
    /// about it at commit where the dialect can (PostgreSQL NOTIFY).
    /// </summary>
    public async Task<long> BumpRevisionAsync(DbConnection conn, DbTransaction tx, CancellationToken ct)
    {
        var v = await ScalarAsync(conn, tx, "UPDATE store_revision SET revision = revision + 1 WHERE id = 1 RETURNING revision", ct).ConfigureAwait(false)
            ?? throw new StoreUnavailableException("the store_revision row is missing: the database was modified outside writ; restore it from a backup");
        var revision = Convert.ToInt64(v, CultureInfo.InvariantCulture);
        await Dialect.NotifyRevisionAsync(conn, tx, revision, ct).ConfigureAwait(false);
        return revision;
    }

    public static async Task<long> ReadRevisionAsync(DbConnection conn, DbTransaction? tx, CancellationToken ct)
    {
        var v = await ScalarAsync(conn, tx, "SELECT revision FROM store_revision WHERE id = 1", ct).ConfigureAwait(false)
            ?? throw new StoreUnavailableException("the store_revision row is missing: the database was modified outside writ; restore it from a backup");
        return Convert.ToInt64(v, CultureInfo.InvariantCulture);
    }
}

/// <summary>Timestamps are stored as integer microseconds since the Unix epoch (UTC) in both dialects.</summary>
internal static class Time
{
    public static long ToMicros(DateTimeOffset t) => (t.UtcTicks - DateTimeOffset.UnixEpoch.UtcTicks) / 10;

    public static DateTimeOffset FromMicros(long us) => new(DateTimeOffset.UnixEpoch.UtcTicks + (us * 10), TimeSpan.Zero);

    /// <summary>The value as it will read back from the store.</summary>
    public static DateTimeOffset Normalize(DateTimeOffset t) => FromMicros(ToMicros(t));
}
