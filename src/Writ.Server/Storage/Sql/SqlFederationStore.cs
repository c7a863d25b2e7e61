using System.Data.Common;

namespace Writ.Server.Storage.Sql;

/// <summary>
/// Federation relationships on SQL (issue #16). A foreign bundle is a row of <c>bundles</c> keyed by its trust domain,
/// written in the same transaction as the relationship change. Writes that change what agents receive (a relationship
/// created or deleted, a bundle stored) bump the store revision, so every server's sync streams wake.
/// </summary>
internal sealed class SqlFederationStore(Db db, TimeProvider time, RevisionWatcher watcher) : IFederationStore
{
    private const string Columns = "f.trust_domain, f.bundle_endpoint_url, f.profile, f.endpoint_spiffe_id, f.created_at_us, f.last_refresh_us, f.next_refresh_us, f.last_error";

    public async Task<FederationRelationship> CreateAsync(FederationRelationship relationship, StoredBundle? bundle, CancellationToken ct, IReadOnlyList<LedgerEvent>? audit = null)
    {
        Validate(relationship, bundle);
        var exists = $"a federation relationship with '{relationship.TrustDomain}' already exists: change it with 'writ federation update' or delete it first";
        var (stored, rev) = await db.WriteAsync("create federation relationship", async (conn, tx) =>
        {
            await RefuseOwnTrustDomainAsync(conn, tx, relationship.TrustDomain, ct).ConfigureAwait(false);
            if (await Db.ScalarAsync(conn, tx, "SELECT trust_domain FROM federation_relationships WHERE trust_domain = @td", ct, ("td", relationship.TrustDomain)).ConfigureAwait(false) is not null)
                throw new StoreConflictException(exists);
            var now = Time.Normalize(time.GetUtcNow());
            var r = relationship with { CreatedAt = now, LastRefresh = null, NextRefresh = now, LastError = null };
            await Db.ExecuteAsync(conn, tx, $"""
                INSERT INTO federation_relationships (trust_domain, bundle_endpoint_url, profile, endpoint_spiffe_id, created_at_us, last_refresh_us, next_refresh_us, last_error)
                VALUES (@td, @url, @profile, @sid, @created, NULL, @next, NULL)
                """, ct, ("td", r.TrustDomain), ("url", r.BundleEndpointUrl), ("profile", r.Profile), ("sid", r.EndpointSpiffeId),
                ("created", Time.ToMicros(now)), ("next", Time.ToMicros(now))).ConfigureAwait(false);
            // A bundle left from an earlier relationship with this domain is not trusted again without a new bootstrap.
            await Db.ExecuteAsync(conn, tx, "DELETE FROM bundles WHERE trust_domain = @td", ct, ("td", r.TrustDomain)).ConfigureAwait(false);
            if (bundle is not null)
                await PutBundleAsync(conn, tx, bundle, ct).ConfigureAwait(false);
            var revision = await db.BumpRevisionAsync(conn, tx, ct).ConfigureAwait(false);
            await AppendAuditAsync(conn, tx, audit, ct).ConfigureAwait(false);
            return (r, revision);
        }, ct, () => exists).ConfigureAwait(false);
        watcher.Observe(rev);
        return stored;
    }

    public Task<FederationRelationship?> GetAsync(string trustDomain, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(trustDomain);
        return db.ReadAsync("get federation relationship", async (conn, tx) =>
        {
            var rows = await Db.QueryAsync(conn, tx, $"SELECT {Columns} FROM federation_relationships f WHERE f.trust_domain = @td", Read, ct, ("td", trustDomain)).ConfigureAwait(false);
            return rows.Count == 0 ? null : rows[0];
        }, ct);
    }

    public Task<IReadOnlyList<FederatedBundle>> ListAsync(CancellationToken ct) =>
        db.ReadAsync<IReadOnlyList<FederatedBundle>>("list federation relationships", async (conn, tx) =>
            await Db.QueryAsync(conn, tx, $"""
                SELECT {Columns}, b.bundle_json, b.sequence, b.updated_at_us FROM federation_relationships f
                LEFT JOIN bundles b ON b.trust_domain = f.trust_domain ORDER BY f.trust_domain
                """, r => new FederatedBundle(Read(r), r.IsDBNull(8) ? null : new StoredBundle(r.GetString(0), r.GetString(8), r.GetInt64(9), Time.FromMicros(r.GetInt64(10)))),
                ct).ConfigureAwait(false), ct, snapshot: true);

    public async Task<FederationRelationship> UpdateAsync(FederationRelationship relationship, StoredBundle? bundle, CancellationToken ct, IReadOnlyList<LedgerEvent>? audit = null)
    {
        Validate(relationship, bundle);
        var (stored, rev) = await db.WriteAsync("update federation relationship", async (conn, tx) =>
        {
            var old = await Db.QueryAsync(conn, tx, $"SELECT {Columns} FROM federation_relationships f WHERE f.trust_domain = @td", Read, ct, ("td", relationship.TrustDomain)).ConfigureAwait(false);
            if (old.Count == 0)
                throw new StoreNotFoundException($"there is no federation relationship with '{relationship.TrustDomain}'; list them with 'writ federation list'");
            var now = Time.Normalize(time.GetUtcNow());
            var r = relationship with { CreatedAt = old[0].CreatedAt, LastRefresh = old[0].LastRefresh, LastError = old[0].LastError, NextRefresh = now };
            await Db.ExecuteAsync(conn, tx, """
                UPDATE federation_relationships SET bundle_endpoint_url = @url, profile = @profile, endpoint_spiffe_id = @sid, next_refresh_us = @next
                WHERE trust_domain = @td
                """, ct, ("td", r.TrustDomain), ("url", r.BundleEndpointUrl), ("profile", r.Profile), ("sid", r.EndpointSpiffeId), ("next", Time.ToMicros(now))).ConfigureAwait(false);
            long revision = 0;
            if (bundle is not null)
            {
                await PutBundleAsync(conn, tx, bundle, ct).ConfigureAwait(false);
                revision = await db.BumpRevisionAsync(conn, tx, ct).ConfigureAwait(false);
            }
            await AppendAuditAsync(conn, tx, audit, ct).ConfigureAwait(false);
            return (r, revision);
        }, ct).ConfigureAwait(false);
        watcher.Observe(rev);
        return stored;
    }

    public async Task DeleteAsync(string trustDomain, CancellationToken ct, IReadOnlyList<LedgerEvent>? audit = null)
    {
        ArgumentNullException.ThrowIfNull(trustDomain);
        var rev = await db.WriteAsync("delete federation relationship", async (conn, tx) =>
        {
            if (await Db.ExecuteAsync(conn, tx, "DELETE FROM federation_relationships WHERE trust_domain = @td", ct, ("td", trustDomain)).ConfigureAwait(false) == 0)
                throw new StoreNotFoundException($"there is no federation relationship with '{trustDomain}'; list them with 'writ federation list'");
            await Db.ExecuteAsync(conn, tx, "DELETE FROM bundles WHERE trust_domain = @td", ct, ("td", trustDomain)).ConfigureAwait(false);
            var revision = await db.BumpRevisionAsync(conn, tx, ct).ConfigureAwait(false);
            await AppendAuditAsync(conn, tx, audit, ct).ConfigureAwait(false);
            return revision;
        }, ct).ConfigureAwait(false);
        watcher.Observe(rev);
    }

    public Task<bool> TryLeaseRefreshAsync(string trustDomain, DateTimeOffset expected, DateTimeOffset until, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(trustDomain);
        return db.WriteAsync("lease federation refresh", async (conn, tx) =>
            await Db.ExecuteAsync(conn, tx, "UPDATE federation_relationships SET next_refresh_us = @until WHERE trust_domain = @td AND next_refresh_us = @expected", ct,
                ("td", trustDomain), ("until", Time.ToMicros(until)), ("expected", Time.ToMicros(expected))).ConfigureAwait(false) == 1, ct);
    }

    public async Task<bool> RecordRefreshAsync(string trustDomain, StoredBundle? bundle, string? error, DateTimeOffset next, CancellationToken ct, IReadOnlyList<LedgerEvent>? audit = null,
        FederationRelationship? fetchedFrom = null, long? storedSequence = null)
    {
        ArgumentNullException.ThrowIfNull(trustDomain);
        if (bundle is not null && bundle.TrustDomain != trustDomain)
            throw new ArgumentException("the bundle is for another trust domain than the relationship");
        (bool, long) outcome;
        try
        {
            outcome = await RecordRefreshInTxAsync(trustDomain, bundle, error, next, ct, audit, fetchedFrom, storedSequence).ConfigureAwait(false);
        }
        catch (StaleFetchException)
        {
            return false;
        }
        var (found, rev) = outcome;
        watcher.Observe(rev);
        return found;
    }

    private Task<(bool, long)> RecordRefreshInTxAsync(string trustDomain, StoredBundle? bundle, string? error, DateTimeOffset next, CancellationToken ct,
        IReadOnlyList<LedgerEvent>? audit, FederationRelationship? fetchedFrom, long? storedSequence) =>
        db.WriteAsync("record federation refresh", async (conn, tx) =>
        {
            var n = error is null
                ? await Db.ExecuteAsync(conn, tx, "UPDATE federation_relationships SET last_refresh_us = @now, last_error = NULL, next_refresh_us = @next WHERE trust_domain = @td", ct,
                    ("td", trustDomain), ("now", Time.ToMicros(time.GetUtcNow())), ("next", Time.ToMicros(next))).ConfigureAwait(false)
                : await Db.ExecuteAsync(conn, tx, "UPDATE federation_relationships SET last_error = @error, next_refresh_us = @next WHERE trust_domain = @td", ct,
                    ("td", trustDomain), ("error", error), ("next", Time.ToMicros(next))).ConfigureAwait(false);
            if (n == 0)
                return (false, 0L);
            long revision = 0;
            if (bundle is not null && error is null && fetchedFrom is not null)
            {
                // The relationship row is locked by the UPDATE above: an admin update committed meanwhile is seen here.
                var now = await Db.QueryAsync(conn, tx, "SELECT bundle_endpoint_url, profile, endpoint_spiffe_id FROM federation_relationships WHERE trust_domain = @td",
                    r => (Url: r.GetString(0), Profile: r.GetString(1), Id: r.GetString(2)), ct, ("td", trustDomain)).ConfigureAwait(false);
                var seq = await Db.QueryAsync(conn, tx, "SELECT sequence FROM bundles WHERE trust_domain = @td", r => r.GetInt64(0), ct, ("td", trustDomain)).ConfigureAwait(false);
                if (now.Count != 1 || now[0].Url != fetchedFrom.BundleEndpointUrl || now[0].Profile != fetchedFrom.Profile || now[0].Id != fetchedFrom.EndpointSpiffeId
                    || (seq.Count == 0 ? storedSequence is not null : seq[0] != storedSequence))
                    throw new StaleFetchException();
            }
            if (bundle is not null && error is null)
            {
                await PutBundleAsync(conn, tx, bundle, ct).ConfigureAwait(false);
                revision = await db.BumpRevisionAsync(conn, tx, ct).ConfigureAwait(false);
            }
            await AppendAuditAsync(conn, tx, audit, ct).ConfigureAwait(false);
            return (true, revision);
        }, ct);

    /// <summary>A fetch whose relationship or stored bundle changed while it was in flight: its transaction is rolled back.</summary>
    private sealed class StaleFetchException : Exception;

    private static void Validate(FederationRelationship r, StoredBundle? bundle)
    {
        ArgumentNullException.ThrowIfNull(r);
        Codec.RequireKey(r.TrustDomain, "federation trust domain");
        Codec.RequireKey(r.BundleEndpointUrl, "bundle endpoint URL");
        if (r.Profile is not (FederationRelationship.HttpsWeb or FederationRelationship.HttpsSpiffe))
            throw new ArgumentException($"federation profile must be {FederationRelationship.HttpsWeb} or {FederationRelationship.HttpsSpiffe}");
        ArgumentNullException.ThrowIfNull(r.EndpointSpiffeId);
        if (bundle is not null && (bundle.TrustDomain != r.TrustDomain || string.IsNullOrEmpty(bundle.SpiffeBundleJson)))
            throw new ArgumentException("the bootstrap bundle must be a SPIFFE bundle document of the relationship's trust domain");
    }

    private static async Task RefuseOwnTrustDomainAsync(DbConnection conn, DbTransaction tx, string trustDomain, CancellationToken ct)
    {
        if (await Db.ScalarAsync(conn, tx, "SELECT value FROM store_metadata WHERE key = 'trust_domain'", ct).ConfigureAwait(false) is string own && own == trustDomain)
            throw new ArgumentException($"'{trustDomain}' is this store's own trust domain: a server does not federate with itself");
    }

    private static Task PutBundleAsync(DbConnection conn, DbTransaction tx, StoredBundle b, CancellationToken ct) =>
        Db.ExecuteAsync(conn, tx, """
            INSERT INTO bundles (trust_domain, bundle_json, sequence, updated_at_us) VALUES (@td, @json, @seq, @at)
            ON CONFLICT (trust_domain) DO UPDATE SET bundle_json = excluded.bundle_json, sequence = excluded.sequence, updated_at_us = excluded.updated_at_us
            """, ct, ("td", b.TrustDomain), ("json", b.SpiffeBundleJson), ("seq", b.Sequence), ("at", Time.ToMicros(b.UpdatedAt)));

    private Task AppendAuditAsync(DbConnection conn, DbTransaction tx, IReadOnlyList<LedgerEvent>? audit, CancellationToken ct) =>
        audit is { Count: > 0 } ? SqlLedgerStore.AppendInTxAsync(conn, tx, audit, time, ct) : Task.CompletedTask;

    private static FederationRelationship Read(DbDataReader r) => new()
    {
        TrustDomain = r.GetString(0),
        BundleEndpointUrl = r.GetString(1),
        Profile = r.GetString(2),
        EndpointSpiffeId = r.GetString(3),
        CreatedAt = Time.FromMicros(r.GetInt64(4)),
        LastRefresh = r.IsDBNull(5) ? null : Time.FromMicros(r.GetInt64(5)),
        NextRefresh = Time.FromMicros(r.GetInt64(6)),
        LastError = r.IsDBNull(7) ? null : r.GetString(7),
    };
}
