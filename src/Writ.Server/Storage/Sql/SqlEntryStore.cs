using System.Data.Common;
using System.Security.Cryptography;
using System.Text;

namespace Writ.Server.Storage.Sql;

internal sealed class SqlEntryStore(Db db, TimeProvider time, RevisionWatcher watcher) : IEntryStore
{
    private const string Columns =
        "e.id, e.spiffe_id, e.parent_id, e.selectors, e.x509_ttl_seconds, e.jwt_ttl_seconds, e.dns_names, e.hint, e.admin, e.expires_at_us, e.revision, e.created_at_us, e.federates_with, e.outage_pool";

    private const string PageTokenPrefix = "e1.";

    public async Task<IReadOnlyList<RegistrationEntry>> CreateAsync(IReadOnlyList<RegistrationEntry> entries, CancellationToken ct, IReadOnlyList<LedgerEvent>? audit = null)
    {
        ArgumentNullException.ThrowIfNull(entries);
        if (entries.Count == 0)
            return [];
        var now = Time.Normalize(time.GetUtcNow());
        var prepared = new List<(RegistrationEntry Entry, string Key)>(entries.Count);
        var byId = new Dictionary<string, int>(StringComparer.Ordinal);
        var byKey = new Dictionary<string, int>(StringComparer.Ordinal);
        for (var i = 0; i < entries.Count; i++)
        {
            var e = entries[i] ?? throw new ArgumentException($"entry {i} of the batch is null: remove it");
            Validate(e, requireId: false);
            if (e.Id.Length == 0)
                e = e with { Id = Guid.CreateVersion7(now).ToString() };
            var key = Codec.IdentityKey(e.SpiffeId, e.ParentId, e.Selectors);
            if (byId.TryGetValue(e.Id, out var j))
                throw new StoreConflictException($"entries {j} and {i} of the batch have the same id '{e.Id}': give each entry its own id or none");
            if (byKey.TryGetValue(key, out j))
                throw new StoreConflictException($"entries {j} and {i} of the batch are duplicates ({Describe(e)}): remove one of them");
            byId[e.Id] = i;
            byKey[key] = i;
            prepared.Add((e, key));
        }

        var (created, revision) = await db.WriteAsync("create entries", async (conn, tx) =>
        {
            var rev = await db.BumpRevisionAsync(conn, tx, ct).ConfigureAwait(false);
            await RefuseExistingAsync(conn, tx, prepared, ct).ConfigureAwait(false);
            var result = prepared.Select(p => (Entry: Normalize(p.Entry) with { Revision = rev, CreatedAt = now }, p.Key)).ToList();
            // Multi-row inserts: a batch of 1,000 entries is a few statements, not thousands of round trips.
            await Db.InsertRowsAsync(conn, tx, "entries", InsertColumns, result.Select(r => RowValues(r.Entry, r.Key)), ct).ConfigureAwait(false);
            await Db.InsertRowsAsync(conn, tx, "entry_selectors", SelectorColumns, result.SelectMany(r => SelectorRows(r.Entry)), ct).ConfigureAwait(false);
            await AppendAuditAsync(conn, tx, audit, ct).ConfigureAwait(false);
            return (result.Select(r => r.Entry).ToList(), rev);
        }, ct, () => "another writer created a duplicate of one of these entries at the same time: list the entries and retry").ConfigureAwait(false);
        watcher.Observe(revision);
        return created;
    }

    public Task<RegistrationEntry?> GetAsync(string id, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(id);
        return db.ReadAsync("get entry", async (conn, tx) =>
        {
            var rows = await Db.QueryAsync(conn, tx, $"SELECT {Columns} FROM entries e WHERE e.id = @id", Read, ct, ("id", id)).ConfigureAwait(false);
            return rows.Count == 0 ? null : rows[0];
        }, ct);
    }

    public Task<EntryPage> ListAsync(EntryFilter filter, int pageSize, string? pageToken, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(filter);
        ArgumentOutOfRangeException.ThrowIfLessThan(pageSize, 1);
        var filterTag = FilterTag(filter);
        string? after = null;
        if (!string.IsNullOrEmpty(pageToken))
            after = DecodePageToken(pageToken, filterTag);

        return db.ReadAsync("list entries", async (conn, tx) =>
        {
            var cmd = conn.CreateCommand();
            await using (cmd.ConfigureAwait(false))
            {
                var where = new List<string>();
                if (filter.ParentId is not null)
                {
                    where.Add("e.parent_id = @parent");
                    Db.AddParameter(cmd, "parent", filter.ParentId);
                }
                if (filter.SpiffeId is not null)
                {
                    where.Add("e.spiffe_id = @spiffe");
                    Db.AddParameter(cmd, "spiffe", filter.SpiffeId);
                }
                if (filter.Selector is not null)
                {
                    where.Add("EXISTS (SELECT 1 FROM entry_selectors s WHERE s.entry_id = e.id AND s.type = @stype AND s.value = @svalue)");
                    Db.AddParameter(cmd, "stype", filter.Selector.Type);
                    Db.AddParameter(cmd, "svalue", filter.Selector.Value);
                }
                if (after is not null)
                {
                    where.Add("e.id > @after");
                    Db.AddParameter(cmd, "after", after);
                }
                Db.AddParameter(cmd, "limit", (long)pageSize + 1);
                cmd.Transaction = tx;
                cmd.CommandText = $"SELECT {Columns} FROM entries e"
                    + (where.Count > 0 ? " WHERE " + string.Join(" AND ", where) : "")
                    + " ORDER BY e.id LIMIT @limit";
                var rows = await Db.QueryAsync(cmd, Read, ct).ConfigureAwait(false);
                string? next = null;
                if (rows.Count > pageSize)
                {
                    rows.RemoveAt(rows.Count - 1);
                    next = EncodePageToken(rows[^1].Id, filterTag);
                }
                return new EntryPage(rows, next);
            }
        }, ct);
    }

    public async Task<RegistrationEntry> UpdateAsync(RegistrationEntry entry, CancellationToken ct, IReadOnlyList<LedgerEvent>? audit = null)
    {
        ArgumentNullException.ThrowIfNull(entry);
        Validate(entry, requireId: true);
        var key = Codec.IdentityKey(entry.SpiffeId, entry.ParentId, entry.Selectors);
        var updated = await db.WriteAsync("update entry", async (conn, tx) =>
        {
            var rev = await db.BumpRevisionAsync(conn, tx, ct).ConfigureAwait(false);
            var old = await Db.QueryAsync(conn, tx, "SELECT parent_id, revision, created_at_us FROM entries WHERE id = @id",
                r => (Parent: r.GetString(0), Revision: r.GetInt64(1), CreatedAt: r.GetInt64(2)), ct, ("id", entry.Id)).ConfigureAwait(false);
            if (old.Count == 0)
                throw new StoreNotFoundException($"entry '{entry.Id}' does not exist: list the entries to find its id");
            var (oldParent, oldRevision, createdAt) = old[0];
            if (entry.Revision != 0 && entry.Revision != oldRevision)
                throw new StoreConflictException($"entry '{entry.Id}' was changed by someone else (revision {oldRevision}, you had {entry.Revision}): read it again and reapply your change");
            if (await Db.ScalarAsync(conn, tx, "SELECT id FROM entries WHERE identity_key = @k AND id <> @id", ct, ("k", key), ("id", entry.Id)).ConfigureAwait(false) is string other)
                throw new StoreConflictException($"entry {other} already has {Describe(entry)}: change that entry or delete it first");
            var stored = Normalize(entry) with { Revision = rev, CreatedAt = Time.FromMicros(createdAt) };
            await Db.ExecuteAsync(conn, tx, "DELETE FROM entry_selectors WHERE entry_id = @id", ct, ("id", entry.Id)).ConfigureAwait(false);
            await Db.ExecuteAsync(conn, tx, """
                UPDATE entries SET spiffe_id = @spiffe, parent_id = @parent, selectors = @selectors, identity_key = @key,
                    x509_ttl_seconds = @x509, jwt_ttl_seconds = @jwt, dns_names = @dns, hint = @hint, admin = @admin,
                    expires_at_us = @expires, revision = @rev, federates_with = @federates, outage_pool = @pool
                WHERE id = @id
                """, ct, Row(stored, key)).ConfigureAwait(false);
            await InsertSelectorsAsync(conn, tx, stored, ct).ConfigureAwait(false);
            if (oldParent != stored.ParentId)
                await AddTombstoneAsync(conn, tx, rev, stored.Id, oldParent, ct).ConfigureAwait(false);
            await AppendAuditAsync(conn, tx, audit, ct).ConfigureAwait(false);
            return stored;
        }, ct, () => $"another writer created an entry with {Describe(entry)} at the same time: list the entries and retry").ConfigureAwait(false);
        watcher.Observe(updated.Revision);
        return updated;
    }

    public async Task DeleteAsync(string id, CancellationToken ct, IReadOnlyList<LedgerEvent>? audit = null)
    {
        ArgumentNullException.ThrowIfNull(id);
        var revision = await db.WriteAsync("delete entry", async (conn, tx) =>
        {
            var rev = await db.BumpRevisionAsync(conn, tx, ct).ConfigureAwait(false);
            if (await Db.ScalarAsync(conn, tx, "SELECT parent_id FROM entries WHERE id = @id", ct, ("id", id)).ConfigureAwait(false) is not string parent)
                throw new StoreNotFoundException($"entry '{id}' does not exist: list the entries to find its id");
            await Db.ExecuteAsync(conn, tx, "DELETE FROM entry_selectors WHERE entry_id = @id", ct, ("id", id)).ConfigureAwait(false);
            await Db.ExecuteAsync(conn, tx, "DELETE FROM entries WHERE id = @id", ct, ("id", id)).ConfigureAwait(false);
            await AddTombstoneAsync(conn, tx, rev, id, parent, ct).ConfigureAwait(false);
            await AppendAuditAsync(conn, tx, audit, ct).ConfigureAwait(false);
            return rev;
        }, ct).ConfigureAwait(false);
        watcher.Observe(revision);
    }

    private Task AppendAuditAsync(DbConnection conn, DbTransaction tx, IReadOnlyList<LedgerEvent>? audit, CancellationToken ct) =>
        audit is { Count: > 0 } ? SqlLedgerStore.AppendInTxAsync(conn, tx, audit, time, ct) : Task.CompletedTask;

    public Task<long> CurrentRevisionAsync(CancellationToken ct) =>
        db.ReadAsync("read revision", (conn, tx) => Db.ReadRevisionAsync(conn, tx, ct), ct);

    public Task<long> CountAsync(CancellationToken ct) =>
        db.ReadAsync("count entries", async (conn, tx) =>
            Convert.ToInt64(await Db.ScalarAsync(conn, tx, "SELECT COUNT(*) FROM entries", ct).ConfigureAwait(false), System.Globalization.CultureInfo.InvariantCulture), ct);

    public async Task<EntryChanges> ChangesSinceAsync(long since, IReadOnlyCollection<string> parentIds, CancellationToken ct)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(since);
        ArgumentNullException.ThrowIfNull(parentIds);
        var parents = parentIds.Distinct(StringComparer.Ordinal).ToList();
        var changes = await db.ReadAsync("read entry changes", async (conn, tx) =>
        {
            var (rev, prunedThrough) = (await Db.QueryAsync(conn, tx, "SELECT revision, tombstones_pruned_through FROM store_revision WHERE id = 1",
                r => (r.GetInt64(0), r.GetInt64(1)), ct).ConfigureAwait(false)).Single();
            // A delta is only complete if no tombstone after `since` was pruned.
            var full = since == 0 || since > rev || since < prunedThrough;
            if (parents.Count == 0)
                return new EntryChanges(rev, [], []) { Full = full };

            var cmd = conn.CreateCommand();
            await using (cmd.ConfigureAwait(false))
            {
                cmd.Transaction = tx;
                var inList = Db.InList(cmd, "p", parents);
                cmd.CommandText = $"SELECT {Columns} FROM entries e WHERE e.parent_id IN ({inList})" + (full ? "" : " AND e.revision > @since") + " ORDER BY e.id";
                if (!full)
                    Db.AddParameter(cmd, "since", since);
                var upserts = await Db.QueryAsync(cmd, Read, ct).ConfigureAwait(false);
                if (full)
                    return new EntryChanges(rev, upserts, []) { Full = true };

                cmd.Parameters.Clear();
                inList = Db.InList(cmd, "p", parents);
                Db.AddParameter(cmd, "since", since);
                cmd.CommandText = $"SELECT DISTINCT entry_id FROM entry_tombstones WHERE parent_id IN ({inList}) AND revision > @since ORDER BY entry_id";
                var live = upserts.Select(e => e.Id).ToHashSet(StringComparer.Ordinal);
                var deleted = (await Db.QueryAsync(cmd, r => r.GetString(0), ct).ConfigureAwait(false)).Where(id => !live.Contains(id)).ToList();
                return new EntryChanges(rev, upserts, deleted);
            }
        }, ct, snapshot: true).ConfigureAwait(false);
        watcher.Observe(changes.Revision);
        return changes;
    }

    public async Task<AllEntryChanges> AllChangesSinceAsync(long since, CancellationToken ct)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(since);
        var changes = await db.ReadAsync("read all entry changes", async (conn, tx) =>
        {
            var (rev, prunedThrough) = (await Db.QueryAsync(conn, tx, "SELECT revision, tombstones_pruned_through FROM store_revision WHERE id = 1",
                r => (r.GetInt64(0), r.GetInt64(1)), ct).ConfigureAwait(false)).Single();
            if (since > rev || since < prunedThrough)
                return new AllEntryChanges(rev, [], []) { Full = true };
            if (since == rev)
                return new AllEntryChanges(rev, [], []);
            var upserts = await Db.QueryAsync(conn, tx, $"SELECT {Columns} FROM entries e WHERE e.revision > @since ORDER BY e.revision, e.id", Read, ct,
                ("since", since)).ConfigureAwait(false);
            var deletions = await Db.QueryAsync(conn, tx, "SELECT entry_id, parent_id, revision FROM entry_tombstones WHERE revision > @since ORDER BY revision, entry_id",
                r => new EntryDeletion(r.GetString(0), r.GetString(1), r.GetInt64(2)), ct, ("since", since)).ConfigureAwait(false);
            return new AllEntryChanges(rev, upserts, deletions);
        }, ct, snapshot: true).ConfigureAwait(false);
        watcher.Observe(changes.Revision);
        return changes;
    }

    public Task WaitForChangeAsync(long revision, CancellationToken ct) => watcher.WaitAsync(revision, ct);

    public Task<int> PruneTombstonesAsync(DateTimeOffset olderThan, CancellationToken ct)
    {
        var t = Time.ToMicros(olderThan);
        return db.WriteAsync("prune entry tombstones", async (conn, tx) =>
        {
            if (await Db.ScalarAsync(conn, tx, "SELECT MAX(revision) FROM entry_tombstones WHERE deleted_at_us < @t", ct, ("t", t)).ConfigureAwait(false) is not { } max)
                return 0;
            var through = Convert.ToInt64(max, System.Globalization.CultureInfo.InvariantCulture);
            // Prune by revision, not by time, so every tombstone after the horizon is still there.
            var n = await Db.ExecuteAsync(conn, tx, "DELETE FROM entry_tombstones WHERE revision <= @through", ct, ("through", through)).ConfigureAwait(false);
            await Db.ExecuteAsync(conn, tx, "UPDATE store_revision SET tombstones_pruned_through = @through WHERE id = 1 AND tombstones_pruned_through < @through", ct,
                ("through", through)).ConfigureAwait(false);
            return n;
        }, ct);
    }

    private static void Validate(RegistrationEntry e, bool requireId)
    {
        if (requireId || e.Id.Length > 0)
            Codec.RequireKey(e.Id, "entry id");
        Codec.RequireKey(e.SpiffeId, "entry SPIFFE ID");
        Codec.RequireKey(e.ParentId, "entry parent ID");
        Codec.RequireSelectors(e.Selectors, "entry");
        if (e.Selectors.Count == 0)
            throw new ArgumentException("entry has no selectors: it would match every workload of its parent; add at least one selector");
        if (e.X509TtlSeconds < 0 || e.JwtTtlSeconds < 0)
            throw new ArgumentException("entry TTLs must be >= 0 (0 = server default)");
        if (e.DnsNames is null)
            throw new ArgumentException("entry DNS names are null: pass an empty list instead");
        foreach (var d in e.DnsNames)
            Codec.RequireKey(d, "entry DNS name");
        if (e.Hint is null)
            throw new ArgumentException("entry hint is null: pass an empty string instead");
        if (e.FederatesWith is null)
            throw new ArgumentException("entry federates-with list is null: pass an empty list instead");
        foreach (var td in e.FederatesWith)
            Codec.RequireKey(td, "entry federates-with trust domain");
        if (e.OutagePool < 0)
            throw new ArgumentException("entry outage pool must be >= 0 (0 = none)");
    }

    private static RegistrationEntry Normalize(RegistrationEntry e) => e with
    {
        Selectors = e.Selectors.ToArray(),
        DnsNames = e.DnsNames.ToArray(),
        FederatesWith = e.FederatesWith.ToArray(),
        ExpiresAt = e.ExpiresAt is { } x ? Time.Normalize(x) : null,
    };

    private static string Describe(RegistrationEntry e) =>
        $"SPIFFE ID {e.SpiffeId}, parent {e.ParentId} and selectors [{string.Join(", ", Codec.SelectorSet(e.Selectors))}]";

    private static (string, object?)[] Row(RegistrationEntry e, string key) =>
    [
        ("id", e.Id), ("spiffe", e.SpiffeId), ("parent", e.ParentId), ("selectors", Codec.EncodeSelectors(e.Selectors)),
        ("key", key), ("x509", e.X509TtlSeconds), ("jwt", e.JwtTtlSeconds), ("dns", Codec.EncodeStrings(e.DnsNames)),
        ("hint", e.Hint), ("admin", e.Admin), ("expires", e.ExpiresAt is { } x ? Time.ToMicros(x) : null),
        ("rev", e.Revision), ("created", Time.ToMicros(e.CreatedAt)), ("federates", Codec.EncodeStrings(e.FederatesWith)), ("pool", e.OutagePool),
    ];

    /// <summary>The entries columns in insert order; <see cref="Row"/> gives their values in the same order.</summary>
    private static readonly string[] InsertColumns =
        ["id", "spiffe_id", "parent_id", "selectors", "identity_key", "x509_ttl_seconds", "jwt_ttl_seconds", "dns_names", "hint", "admin", "expires_at_us", "revision", "created_at_us", "federates_with", "outage_pool"];

    private static readonly string[] SelectorColumns = ["entry_id", "type", "value"];

    private static object?[] RowValues(RegistrationEntry e, string key) => [.. Row(e, key).Select(p => p.Item2)];

    private static IEnumerable<object?[]> SelectorRows(RegistrationEntry e) =>
        e.Selectors.Distinct().Select(s => new object?[] { e.Id, s.Type, s.Value });

    /// <summary>
    /// Refuses the batch if an entry with one of its ids or identities exists, with the message for the first such entry
    /// in batch order; one query per few hundred entries instead of two per entry.
    /// </summary>
    private static async Task RefuseExistingAsync(DbConnection conn, DbTransaction tx, IReadOnlyList<(RegistrationEntry Entry, string Key)> batch, CancellationToken ct)
    {
        var ids = new HashSet<string>(StringComparer.Ordinal);
        var keys = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var chunk in batch.Chunk(Db.MaxParametersPerStatement / 2))
        {
            var cmd = conn.CreateCommand();
            await using (cmd.ConfigureAwait(false))
            {
                cmd.Transaction = tx;
                var idList = Db.InList(cmd, "i", chunk.Select(c => c.Entry.Id));
                var keyList = Db.InList(cmd, "k", chunk.Select(c => c.Key));
                cmd.CommandText = $"SELECT id, identity_key FROM entries WHERE id IN ({idList}) OR identity_key IN ({keyList})";
                foreach (var (id, key) in await Db.QueryAsync(cmd, r => (r.GetString(0), r.GetString(1)), ct).ConfigureAwait(false))
                {
                    ids.Add(id);
                    keys.TryAdd(key, id);
                }
            }
        }
        if (ids.Count == 0)
            return;
        foreach (var (entry, key) in batch)
        {
            if (ids.Contains(entry.Id))
                throw new StoreConflictException($"an entry with id '{entry.Id}' already exists: leave the id empty to get a new one, or update that entry");
            if (keys.TryGetValue(key, out var existing))
                throw new StoreConflictException($"entry {existing} already has {Describe(entry)}: update that entry instead of creating a duplicate");
        }
    }

    private static Task InsertSelectorsAsync(DbConnection conn, DbTransaction tx, RegistrationEntry e, CancellationToken ct) =>
        Db.InsertRowsAsync(conn, tx, "entry_selectors", SelectorColumns, SelectorRows(e), ct);

    private Task AddTombstoneAsync(DbConnection conn, DbTransaction tx, long rev, string id, string parent, CancellationToken ct) =>
        Db.ExecuteAsync(conn, tx, "INSERT INTO entry_tombstones (revision, entry_id, parent_id, deleted_at_us) VALUES (@rev, @id, @parent, @at)", ct,
            ("rev", rev), ("id", id), ("parent", parent), ("at", Time.ToMicros(time.GetUtcNow())));

    private static RegistrationEntry Read(DbDataReader r) => new()
    {
        Id = r.GetString(0),
        SpiffeId = r.GetString(1),
        ParentId = r.GetString(2),
        Selectors = Codec.DecodeSelectors(r.GetString(3)),
        X509TtlSeconds = r.GetInt32(4),
        JwtTtlSeconds = r.GetInt32(5),
        DnsNames = Codec.DecodeStrings(r.GetString(6), "DNS name list"),
        Hint = r.GetString(7),
        Admin = r.GetBoolean(8),
        ExpiresAt = r.IsDBNull(9) ? null : Time.FromMicros(r.GetInt64(9)),
        Revision = r.GetInt64(10),
        CreatedAt = Time.FromMicros(r.GetInt64(11)),
        FederatesWith = Codec.DecodeStrings(r.GetString(12), "federates-with list"),
        OutagePool = r.GetInt32(13),
    };

    // Page token: "e1." + base64url(last id) + "." + 8 hex chars binding it to the filter it was made for.
    private static string FilterTag(EntryFilter f)
    {
        var text = $"{f.ParentId?.Length}:{f.ParentId}|{f.SpiffeId?.Length}:{f.SpiffeId}|{f.Selector}";
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text)).AsSpan(0, 4));
    }

    private static string EncodePageToken(string lastId, string filterTag) =>
        PageTokenPrefix + Base64Url.Encode(Encoding.UTF8.GetBytes(lastId)) + "." + filterTag;

    private static string DecodePageToken(string token, string filterTag)
    {
        const string bad = "page token is not valid for this listing: pass the next-page token of the previous page unchanged with the same filter, or no token to start over";
        if (!token.StartsWith(PageTokenPrefix, StringComparison.Ordinal))
            throw new StoreException(bad);
        var rest = token[PageTokenPrefix.Length..];
        var dot = rest.LastIndexOf('.');
        if (dot <= 0 || rest[(dot + 1)..] != filterTag)
            throw new StoreException(bad);
        try
        {
            var id = Encoding.UTF8.GetString(Base64Url.Decode(rest[..dot]));
            return id.Length == 0 ? throw new StoreException(bad) : id;
        }
        catch (FormatException)
        {
            throw new StoreException(bad);
        }
    }
}

internal static class Base64Url
{
    public static string Encode(byte[] data) => System.Buffers.Text.Base64Url.EncodeToString(data);

    public static byte[] Decode(string text) => System.Buffers.Text.Base64Url.DecodeFromChars(text);
}
