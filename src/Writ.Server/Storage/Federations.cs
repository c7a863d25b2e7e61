namespace Writ.Server.Storage;

/// <summary>
/// A federation relationship with a foreign trust domain (issue #16): where its SPIFFE bundle endpoint is, how it is
/// authenticated (<see cref="Profile"/>), and the refresh schedule. The foreign bundle itself lives in the bundles table
/// under <see cref="TrustDomain"/> (our own trust domain's row there is our bundle; no relationship may name it).
/// </summary>
public sealed record FederationRelationship
{
    public const string HttpsWeb = "https_web";
    public const string HttpsSpiffe = "https_spiffe";

    /// <summary>The foreign trust domain name, e.g. partner.example.</summary>
    public required string TrustDomain { get; init; }
    /// <summary>https URL of its bundle endpoint.</summary>
    public required string BundleEndpointUrl { get; init; }
    /// <summary><see cref="HttpsWeb"/> or <see cref="HttpsSpiffe"/>.</summary>
    public required string Profile { get; init; }
    /// <summary>https_spiffe: the SPIFFE ID the endpoint's certificate must carry; empty for https_web.</summary>
    public string EndpointSpiffeId { get; init; } = "";
    /// <summary>Assigned by the store on create.</summary>
    public DateTimeOffset CreatedAt { get; init; }
    /// <summary>The last successful fetch; null: never.</summary>
    public DateTimeOffset? LastRefresh { get; init; }
    /// <summary>When the next fetch is due (the refreshers' lease: see <see cref="IFederationStore.TryLeaseRefreshAsync"/>).</summary>
    public DateTimeOffset NextRefresh { get; init; }
    /// <summary>The last fetch's failure (one line with its code); null after a success.</summary>
    public string? LastError { get; init; }
}

/// <summary>A foreign trust domain's bundle as the store holds it, with the relationship it belongs to.</summary>
public sealed record FederatedBundle(FederationRelationship Relationship, StoredBundle? Bundle);

public interface IFederationStore
{
    /// <summary>
    /// Stores the relationship (CreatedAt set; NextRefresh now, so it is fetched at once) and, when given, the bootstrap
    /// bundle of that trust domain, with <paramref name="audit"/>, in one transaction. A relationship for the trust
    /// domain exists -> <see cref="StoreConflictException"/>; the trust domain is the store's own (metadata
    /// trust_domain) -> <see cref="ArgumentException"/>. Returns it as stored.
    /// </summary>
    Task<FederationRelationship> CreateAsync(FederationRelationship relationship, StoredBundle? bundle, CancellationToken ct, IReadOnlyList<LedgerEvent>? audit = null);

    Task<FederationRelationship?> GetAsync(string trustDomain, CancellationToken ct);

    /// <summary>All relationships with their stored bundles (if any), ordered by trust domain.</summary>
    Task<IReadOnlyList<FederatedBundle>> ListAsync(CancellationToken ct);

    /// <summary>
    /// Replaces endpoint URL, profile and endpoint SPIFFE ID (CreatedAt and LastRefresh kept, NextRefresh now) and,
    /// when given, the stored bundle, with <paramref name="audit"/>, in one transaction. Absent -> <see cref="StoreNotFoundException"/>.
    /// </summary>
    Task<FederationRelationship> UpdateAsync(FederationRelationship relationship, StoredBundle? bundle, CancellationToken ct, IReadOnlyList<LedgerEvent>? audit = null);

    /// <summary>Deletes the relationship and its stored bundle. Absent -> <see cref="StoreNotFoundException"/>.</summary>
    Task DeleteAsync(string trustDomain, CancellationToken ct, IReadOnlyList<LedgerEvent>? audit = null);

    /// <summary>
    /// The refreshers' lease, conditional in SQL: moves NextRefresh from <paramref name="expected"/> to
    /// <paramref name="until"/> only if it still is <paramref name="expected"/>. Of several servers sharing the store,
    /// exactly one gets true for one due time.
    /// </summary>
    Task<bool> TryLeaseRefreshAsync(string trustDomain, DateTimeOffset expected, DateTimeOffset until, CancellationToken ct);

    /// <summary>
    /// Records a fetch's outcome: on success (<paramref name="error"/> null) LastRefresh = now and, when
    /// <paramref name="bundle"/> is given, the new bundle; on failure only LastError. NextRefresh = <paramref name="next"/>.
    /// With <paramref name="audit"/>, in one transaction. False when the relationship is gone (nothing written).
    /// With <paramref name="fetchedFrom"/> (the relationship as it was when the fetch began) and
    /// <paramref name="storedSequence"/> (the sequence of the bundle stored then, null: none), a new bundle is written only
    /// while the relationship still has that endpoint, profile and endpoint SPIFFE ID and the stored bundle is still that
    /// one: a fetch in flight never overwrites an admin's update of the relationship or its bundle (false, nothing written).
    /// </summary>
    Task<bool> RecordRefreshAsync(string trustDomain, StoredBundle? bundle, string? error, DateTimeOffset next, CancellationToken ct, IReadOnlyList<LedgerEvent>? audit = null,
        FederationRelationship? fetchedFrom = null, long? storedSequence = null);
}
