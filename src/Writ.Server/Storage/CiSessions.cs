using Writ.Protocol.Evidence;

namespace Writ.Server.Storage;

/// <summary>
/// One CI login (<c>writ ci login</c>, docs/ci.md): the job token it consumed (by its replay key, never the token), the
/// identity issued, the credentials issued to it (revoked at logout) and the evidence its later JWT-SVIDs are decided on.
/// </summary>
public sealed record CiSession
{
    /// <summary>Random, URL-safe; the workload instance is <c>ci:&lt;id&gt;</c>.</summary>
    public required string Id { get; init; }

    /// <summary>The token's replay key: <c>jti:&lt;issuer&gt;#&lt;jti&gt;</c>, or <c>sha256:&lt;hex&gt;</c> without a jti. Unique: a token is accepted once.</summary>
    public required string TokenKey { get; init; }

    public required string Issuer { get; init; }
    public required string Subject { get; init; }
    public required string SpiffeId { get; init; }
    public required string EntryId { get; init; }

    /// <summary>The oidc: selectors the login was decided on (later JWT-SVIDs are decided on the same evidence).</summary>
    public IReadOnlyList<Selector> Selectors { get; init; } = [];

    /// <summary>The facts of the evidence (oidc.iss, oidc.sub, oidc.claim.*).</summary>
    public IReadOnlyDictionary<string, string> Facts { get; init; } = new Dictionary<string, string>();

    /// <summary>The session's X.509-SVID serial (upper-case hex); null until it is issued.</summary>
    public string? Serial { get; init; }

    /// <summary>The JWT-SVIDs issued to the session.</summary>
    public IReadOnlyList<string> Jtis { get; init; } = [];

    public required DateTimeOffset CreatedAt { get; init; }

    /// <summary>The job token's exp: nothing issued to the session outlives it.</summary>
    public required DateTimeOffset ExpiresAt { get; init; }

    public DateTimeOffset? EndedAt { get; init; }

    /// <summary>Why it ended: <c>logout</c>, <c>expired</c>, <c>denied</c>.</summary>
    public string? EndReason { get; init; }

    public bool IsLive(DateTimeOffset now) => EndedAt is null && ExpiresAt > now;
}

/// <summary>CI sessions (store migration 7, table <c>ci_sessions</c>).</summary>
public interface ICiSessionStore
{
    /// <summary>Claims the token: <see cref="StoreConflictException"/> when a session with the same token key (or id) exists.</summary>
    Task CreateAsync(CiSession session, CancellationToken ct);

    Task<CiSession?> GetAsync(string id, CancellationToken ct);

    Task<CiSession?> GetByTokenKeyAsync(string tokenKey, CancellationToken ct);

    /// <summary>The session whose X.509-SVID has this serial (hex, any case).</summary>
    Task<CiSession?> GetBySerialAsync(string serial, CancellationToken ct);

    /// <summary>Records credentials issued to a session still open; false (nothing written) when it has ended.</summary>
    Task<bool> AttachAsync(string id, string? serial, IReadOnlyList<string> jtis, CancellationToken ct);

    /// <summary>Ends an open session (with the ledger events in the same transaction); false when it had ended already.</summary>
    Task<bool> EndAsync(string id, DateTimeOffset at, string reason, CancellationToken ct, IReadOnlyList<LedgerEvent>? audit = null);

    /// <summary>Open sessions whose token expired at or before <paramref name="now"/>.</summary>
    Task<IReadOnlyList<CiSession>> ExpiredOpenAsync(DateTimeOffset now, int limit, CancellationToken ct);

    /// <summary>Forgets sessions whose token expired before <paramref name="olderThan"/> (their tokens can no longer validate).</summary>
    Task<int> PruneAsync(DateTimeOffset olderThan, CancellationToken ct);
}
