using Writ.Server.Keys;

namespace Writ.Server.Ca;

public sealed record UpstreamCaOptions(string CertificatePath, string KeyPath);

public sealed record CaOptions
{
    public KeyType KeyType { get; init; } = KeyType.EcP256;
    public KeyType JwtKeyType { get; init; } = KeyType.EcP256;
    /// <summary>
    /// Lifetime of each CA authority (SPIRE's ca_ttl). Rotation prepares (and publishes) the next at 1/2 of it, at most 30 days
    /// before expiry, and lets it sign from 1/6 remaining, at most 7 days before expiry.
    /// </summary>
    public TimeSpan CaTtl { get; init; } = TimeSpan.FromHours(24);
    /// <summary>Lifetime of each JWT signing key; rotated like the CA authorities.</summary>
    public TimeSpan JwtKeyTtl { get; init; } = TimeSpan.FromHours(24);
    /// <summary>How long an expired authority stays in the bundle before it is pruned.</summary>
    public TimeSpan PruneMargin { get; init; } = TimeSpan.FromMinutes(10);
    public TimeSpan RefreshHint { get; init; } = TimeSpan.FromMinutes(5);
    public UpstreamCaOptions? Upstream { get; init; }
    /// <summary>
    /// This server's id among those sharing the store (issue #16): its journal is <c>ca/&lt;id&gt;</c>. Null: the single
    /// journal <c>ca</c> (one server; embedded CAs in benchmarks and tests).
    /// </summary>
    public string? ServerId { get; init; }
    /// <summary>The <c>iss</c> of every JWT-SVID (server key <c>jwt_issuer</c>); null: none.</summary>
    public string? JwtIssuer { get; init; }
}
