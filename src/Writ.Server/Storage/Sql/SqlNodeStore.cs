using System.Data.Common;
using Writ.Protocol.Evidence;

namespace Writ.Server.Storage.Sql;

internal sealed class SqlNodeStore(Db db, TimeProvider time) : INodeStore
{
    private const string Columns =
        "spiffe_id, attestation_type, serial_number, expires_at_us, banned, selectors, aliases, created_at_us, updated_at_us, status, status_reason, attestor_state";

    private const string Values = "@id, @type, @serial, @expires, @banned, @selectors, @aliases, @created, @updated, @status, @reason, @state";

    /// <summary>The stored names of <see cref="NodeStatus"/> (docs: writ agent show).</summary>
    private const string ActiveName = "active";
    private const string DriftedName = "drifted";

    public Task CreateAsync(AttestedNode node, CancellationToken ct, IReadOnlyList<LedgerEvent>? audit = null)
    {
        Validate(node);
        var now = Time.Normalize(time.GetUtcNow());
        var stored = Normalize(node) with { CreatedAt = now, UpdatedAt = now };
        var exists = $"node {node.SpiffeId} is already attested: update it, or delete (evict) it first";
        return db.WriteAsync("create node", async (conn, tx) =>
        {
            if (await Db.ScalarAsync(conn, tx, "SELECT spiffe_id FROM nodes WHERE spiffe_id = @id", ct, ("id", node.SpiffeId)).ConfigureAwait(false) is not null)
                throw new StoreConflictException(exists);
            await Db.ExecuteAsync(conn, tx, $"INSERT INTO nodes ({Columns}) VALUES ({Values})",
                ct, Row(stored)).ConfigureAwait(false);
            await AppendAuditAsync(conn, tx, audit, ct).ConfigureAwait(false);
            return 0;
        }, ct, () => exists);
    }

    public Task<AttestedNode?> GetAsync(string spiffeId, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(spiffeId);
        return db.ReadAsync("get node", async (conn, tx) =>
        {
            var rows = await Db.QueryAsync(conn, tx, $"SELECT {Columns} FROM nodes WHERE spiffe_id = @id", Read, ct, ("id", spiffeId)).ConfigureAwait(false);
            return rows.Count == 0 ? null : rows[0];
        }, ct);
    }

    public Task<IReadOnlyList<AttestedNode>> ListAsync(CancellationToken ct) =>
        db.ReadAsync<IReadOnlyList<AttestedNode>>("list nodes", async (conn, tx) =>
            await Db.QueryAsync(conn, tx, $"SELECT {Columns} FROM nodes ORDER BY spiffe_id", Read, ct).ConfigureAwait(false), ct);

    public Task<AttestedNode> UpdateAsync(AttestedNode node, CancellationToken ct, IReadOnlyList<LedgerEvent>? audit = null)
    {
        Validate(node);
        var now = Time.Normalize(time.GetUtcNow());
        return db.WriteAsync("update node", async (conn, tx) =>
        {
            if (await Db.ScalarAsync(conn, tx, "SELECT created_at_us FROM nodes WHERE spiffe_id = @id", ct, ("id", node.SpiffeId)).ConfigureAwait(false) is not { } created)
                throw new StoreNotFoundException($"node {node.SpiffeId} does not exist: list the nodes to find its SPIFFE ID");
            var stored = Normalize(node) with { CreatedAt = Time.FromMicros(Convert.ToInt64(created, System.Globalization.CultureInfo.InvariantCulture)), UpdatedAt = now };
            await Db.ExecuteAsync(conn, tx, """
                UPDATE nodes SET attestation_type = @type, serial_number = @serial, expires_at_us = @expires, banned = @banned,
                    selectors = @selectors, aliases = @aliases, updated_at_us = @updated, status = @status, status_reason = @reason,
                    attestor_state = @state
                WHERE spiffe_id = @id
                """, ct, Row(stored)).ConfigureAwait(false);
            await AppendAuditAsync(conn, tx, audit, ct).ConfigureAwait(false);
            return stored;
        }, ct);
    }

    public Task DeleteAsync(string spiffeId, CancellationToken ct, IReadOnlyList<LedgerEvent>? audit = null)
    {
        ArgumentNullException.ThrowIfNull(spiffeId);
        return db.WriteAsync("delete node", async (conn, tx) =>
        {
            if (await Db.ExecuteAsync(conn, tx, "DELETE FROM nodes WHERE spiffe_id = @id", ct, ("id", spiffeId)).ConfigureAwait(false) == 0)
                throw new StoreNotFoundException($"node {spiffeId} does not exist: list the nodes to find its SPIFFE ID");
            await AppendAuditAsync(conn, tx, audit, ct).ConfigureAwait(false);
            return 0;
        }, ct);
    }

    public async Task<NodeCreateOutcome> CreateAttestedAsync(AttestedNode node, SingleUseEvidence? burn, DateTimeOffset now, CancellationToken ct)
    {
        Validate(node);
        if (burn is not null && burn.Kind != SingleUseEvidence.JoinToken)
            throw new ArgumentException($"single-use evidence of kind '{burn.Kind}' has no table in this store: only '{SingleUseEvidence.JoinToken}' does");
        var stamp = Time.Normalize(time.GetUtcNow());
        var stored = Normalize(node) with { CreatedAt = stamp, UpdatedAt = stamp };
        try
        {
            return await db.WriteAsync("store attested node", async (conn, tx) =>
            {
                // The node first: a refusal must return before the burn, so it burns nothing.
                if (await Db.ScalarAsync(conn, tx, "SELECT spiffe_id FROM nodes WHERE spiffe_id = @id", ct, ("id", node.SpiffeId)).ConfigureAwait(false) is not null)
                    return NodeCreateOutcome.NodeExists;
                if (burn is not null)
                {
                    var burnt = await SqlJoinTokenStore.ConsumeInTxAsync(conn, tx, burn.Key, now, ct).ConfigureAwait(false);
                    if (burnt.Outcome != JoinTokenOutcome.Consumed)
                    {
                        return burnt.Outcome switch
                        {
                            JoinTokenOutcome.AlreadyUsed => NodeCreateOutcome.EvidenceUsed,
                            JoinTokenOutcome.Expired => NodeCreateOutcome.EvidenceExpired,
                            _ => NodeCreateOutcome.EvidenceUnknown,
                        };
                    }
                }
                await Db.ExecuteAsync(conn, tx, $"INSERT INTO nodes ({Columns}) VALUES ({Values})",
                    ct, Row(stored)).ConfigureAwait(false);
                return NodeCreateOutcome.Created;
            }, ct).ConfigureAwait(false);
        }
        catch (StoreConflictException)
        {
            return NodeCreateOutcome.NodeExists;   // another server stored it between our check and our insert; the burn rolled back
        }
    }

    public Task<bool> TryRenewAsync(string spiffeId, string expectedSerial, string newSerial, DateTimeOffset expiresAt, CancellationToken ct)
    {
        Codec.RequireKey(spiffeId, "node SPIFFE ID");
        Codec.RequireKey(expectedSerial, "node serial number");
        Codec.RequireKey(newSerial, "node serial number");
        var now = Time.Normalize(time.GetUtcNow());
        return db.WriteAsync("renew node", async (conn, tx) =>
            await Db.ExecuteAsync(conn, tx, """
                UPDATE nodes SET serial_number = @serial, expires_at_us = @expires, updated_at_us = @updated
                WHERE spiffe_id = @id AND banned = @banned AND serial_number = @old
                  AND NOT EXISTS (SELECT 1 FROM revocations WHERE kind = 'x509' AND id = UPPER(@old))
                """, ct, ("serial", newSerial), ("expires", Time.ToMicros(Time.Normalize(expiresAt))), ("updated", Time.ToMicros(now)),
                ("id", spiffeId), ("banned", false), ("old", expectedSerial)).ConfigureAwait(false) == 1, ct);
    }

    public Task<bool> TryReattestAsync(AttestedNode node, CancellationToken ct, IReadOnlyList<LedgerEvent>? audit = null)
    {
        Validate(node);
        var stored = Normalize(node) with { UpdatedAt = Time.Normalize(time.GetUtcNow()) };
        return ConditionalWriteAsync("re-attest node", """
            UPDATE nodes SET serial_number = @serial, expires_at_us = @expires, selectors = @selectors, aliases = @aliases,
                attestor_state = @state, updated_at_us = @updated
            WHERE spiffe_id = @id AND attestation_type = @type AND banned = @banned AND status = @active
            """, audit, ct, [.. Row(stored with { Banned = false }), ("active", ActiveName)]);
    }

    public Task<bool> TryMarkDriftedAsync(string spiffeId, string? expectedSerial, string reason, CancellationToken ct, IReadOnlyList<LedgerEvent>? audit = null)
    {
        Codec.RequireKey(spiffeId, "node SPIFFE ID");
        if (string.IsNullOrWhiteSpace(reason) || reason.Length > 1024 || reason.Any(char.IsControl))
            throw new ArgumentException("node drift reason must be 1-1024 characters on one line");
        // The serial condition is left out rather than bound to NULL (PostgreSQL cannot type an untyped NULL parameter).
        var serial = expectedSerial is null ? "" : " AND serial_number = @old";
        return ConditionalWriteAsync("mark node drifted", $"""
            UPDATE nodes SET status = @drifted, status_reason = @reason, updated_at_us = @updated
            WHERE spiffe_id = @id AND status = @active{serial}
            """, audit, ct, ("id", spiffeId), ("drifted", DriftedName), ("active", ActiveName), ("reason", reason), ("old", expectedSerial ?? ""),
            ("updated", Time.ToMicros(Time.Normalize(time.GetUtcNow()))));
    }

    public Task<bool> TryReadmitAsync(string spiffeId, CancellationToken ct, IReadOnlyList<LedgerEvent>? audit = null)
    {
        Codec.RequireKey(spiffeId, "node SPIFFE ID");
        return ConditionalWriteAsync("readmit node", """
            UPDATE nodes SET status = @active, status_reason = NULL, updated_at_us = @updated
            WHERE spiffe_id = @id AND status = @drifted AND banned = @banned
            """, audit, ct, ("id", spiffeId), ("drifted", DriftedName), ("active", ActiveName), ("banned", false),
            ("updated", Time.ToMicros(Time.Normalize(time.GetUtcNow()))));
    }

    public Task<bool> TryUpdatePostureAsync(string spiffeId, string expectedSerial, IReadOnlyList<Selector> selectors, byte[]? attestorState, CancellationToken ct)
    {
        Codec.RequireKey(spiffeId, "node SPIFFE ID");
        Codec.RequireKey(expectedSerial, "node serial number");
        Codec.RequireSelectors(selectors, "node");
        return ConditionalWriteAsync("update node posture", """
            UPDATE nodes SET selectors = @selectors, attestor_state = @state, updated_at_us = @updated
            WHERE spiffe_id = @id AND serial_number = @old AND status = @active AND banned = @banned
            """, null, ct, ("id", spiffeId), ("old", expectedSerial), ("active", ActiveName), ("banned", false),
            ("selectors", Codec.EncodeSelectors(selectors)), ("state", attestorState), ("updated", Time.ToMicros(Time.Normalize(time.GetUtcNow()))));
    }

    /// <summary>One conditional UPDATE; the audit events are appended (same transaction) only when it changed the row.</summary>
    private Task<bool> ConditionalWriteAsync(string what, string sql, IReadOnlyList<LedgerEvent>? audit, CancellationToken ct, params (string, object?)[] args) =>
        db.WriteAsync(what, async (conn, tx) =>
        {
            if (await Db.ExecuteAsync(conn, tx, sql, ct, args).ConfigureAwait(false) != 1)
                return false;
            await AppendAuditAsync(conn, tx, audit, ct).ConfigureAwait(false);
            return true;
        }, ct);

    private Task AppendAuditAsync(DbConnection conn, DbTransaction tx, IReadOnlyList<LedgerEvent>? audit, CancellationToken ct) =>
        audit is { Count: > 0 } ? SqlLedgerStore.AppendInTxAsync(conn, tx, audit, time, ct) : Task.CompletedTask;

    private static void Validate(AttestedNode node)
    {
        ArgumentNullException.ThrowIfNull(node);
        Codec.RequireKey(node.SpiffeId, "node SPIFFE ID");
        Codec.RequireKey(node.AttestationType, "node attestation type");
        Codec.RequireKey(node.SerialNumber, "node serial number");
        Codec.RequireSelectors(node.Selectors, "node");
        if (node.Aliases is null)
            throw new ArgumentException("node aliases are null: pass an empty list instead");
        foreach (var a in node.Aliases)
            Codec.RequireKey(a, "node alias");
    }

    private static AttestedNode Normalize(AttestedNode n) => n with
    {
        ExpiresAt = Time.Normalize(n.ExpiresAt),
        Selectors = n.Selectors.ToArray(),
        Aliases = n.Aliases.ToArray(),
    };

    private static (string, object?)[] Row(AttestedNode n) =>
    [
        ("id", n.SpiffeId), ("type", n.AttestationType), ("serial", n.SerialNumber), ("expires", Time.ToMicros(n.ExpiresAt)),
        ("banned", n.Banned), ("selectors", Codec.EncodeSelectors(n.Selectors)), ("aliases", Codec.EncodeStrings(n.Aliases)),
        ("created", Time.ToMicros(n.CreatedAt)), ("updated", Time.ToMicros(n.UpdatedAt)),
        ("status", n.Status == NodeStatus.Drifted ? DriftedName : ActiveName), ("reason", n.StatusReason), ("state", n.AttestorState),
    ];

    private static AttestedNode Read(DbDataReader r) => new()
    {
        SpiffeId = r.GetString(0),
        AttestationType = r.GetString(1),
        SerialNumber = r.GetString(2),
        ExpiresAt = Time.FromMicros(r.GetInt64(3)),
        Banned = r.GetBoolean(4),
        Selectors = Codec.DecodeSelectors(r.GetString(5)),
        Aliases = Codec.DecodeStrings(r.GetString(6), "node alias list"),
        CreatedAt = Time.FromMicros(r.GetInt64(7)),
        UpdatedAt = Time.FromMicros(r.GetInt64(8)),
        Status = r.GetString(9) == DriftedName ? NodeStatus.Drifted : NodeStatus.Active,
        StatusReason = r.IsDBNull(10) ? null : r.GetString(10),
        AttestorState = r.IsDBNull(11) ? null : (byte[])r.GetValue(11),
    };
}
