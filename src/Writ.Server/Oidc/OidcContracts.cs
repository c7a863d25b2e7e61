using System.Text.Json;

namespace Writ.Server.Oidc;

/// <summary>
/// One trusted OIDC issuer (an entry of <c>oidc_issuers</c>, or a Kubernetes cluster's service-account issuer for
/// <c>k8s_psat</c> offline validation): whose tokens are accepted, for which audiences, with which algorithms, and which
/// claims become selectors.
/// </summary>
public sealed record OidcIssuerConfig
{
    /// <summary>The exact <c>iss</c> value (an https URL; http only for loopback in tests is refused too: https only).</summary>
    public required string Issuer { get; init; }

    /// <summary>At least one: the token's <c>aud</c> must contain one of them.</summary>
    public required IReadOnlyList<string> Audiences { get; init; }

    /// <summary>Claims that become <c>oidc:claim:&lt;name&gt;:&lt;value&gt;</c> selectors (string, number or boolean values; arrays give one selector per element).</summary>
    public IReadOnlyList<string> Claims { get; init; } = [];

    /// <summary>Accepted JWS algorithms; empty: all of <see cref="OidcOptions.SupportedAlgorithms"/> (RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512). Never none or HS*; not EdDSA (Microsoft.IdentityModel cannot verify it). The validator ignores any other name listed here.</summary>
    public IReadOnlyList<string> Algorithms { get; init; } = [];

    /// <summary>The JWKS URL when the issuer's discovery document should not be used to find it (https).</summary>
    public Uri? JwksUri { get; init; }

    /// <summary>PEM file of CA certificates the issuer's TLS certificate must chain to, instead of the system roots.</summary>
    public string? CaFile { get; init; }
}

/// <summary>A token that passed every check, with the claims as the issuer signed them.</summary>
public sealed record ValidatedToken
{
    public required string Issuer { get; init; }
    public required string Subject { get; init; }

    /// <summary>The <c>jti</c>, or null when the token has none (replay protection then uses <see cref="TokenSha256"/>).</summary>
    public string? Jti { get; init; }

    public required IReadOnlyList<string> Audiences { get; init; }
    public DateTimeOffset? IssuedAt { get; init; }
    public DateTimeOffset? NotBefore { get; init; }
    public required DateTimeOffset ExpiresAt { get; init; }

    /// <summary>The whole payload (a JSON object), for issuer-specific claims such as Kubernetes' <c>kubernetes.io</c>.</summary>
    public required JsonElement Claims { get; init; }

    /// <summary>Lower-case hex SHA-256 of the compact token: its replay key, and what the ledger records instead of the token.</summary>
    public required string TokenSha256 { get; init; }

    public required string Algorithm { get; init; }
    public string? KeyId { get; init; }
}

/// <summary>
/// Validates JWTs of external OIDC issuers (CI platforms, Kubernetes service-account issuers): discovery document and JWKS
/// fetched over HTTPS, cached, refreshed on an unknown <c>kid</c>; signature, algorithm allow-list, issuer, audience,
/// <c>exp</c>/<c>nbf</c>/<c>iat</c> with a small clock skew. Refusals are <see cref="Writ.Protocol.Errors.WritException"/>s
/// with a stable <c>WRIT-OIDC-…</c> code (Unauthenticated; Unavailable when the issuer cannot be reached) and a one-line
/// message that never echoes the token.
/// </summary>
public interface IOidcTokenValidator
{
    /// <summary>Validates <paramref name="token"/> as a token of <paramref name="issuer"/> (its <c>iss</c> must equal <see cref="OidcIssuerConfig.Issuer"/>).</summary>
    Task<ValidatedToken> ValidateAsync(string token, OidcIssuerConfig issuer, CancellationToken ct);
}
