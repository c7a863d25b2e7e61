using Writ.Server.Configuration;

namespace Writ.Server.Oidc;

/// <summary>
/// The trusted OIDC issuers (<c>oidc_issuers</c>, a JSON list of objects: <c>issuer</c>, <c>audiences</c>, <c>claims</c>,
/// optional <c>algorithms</c>, <c>jwks_uri</c>, <c>ca_file</c>; docs/ci.md): CI platforms whose job tokens
/// <c>writ ci login</c> accepts.
/// </summary>
public sealed record OidcOptions
{
    public static OidcOptions None { get; } = new();

    public IReadOnlyList<OidcIssuerConfig> Issuers { get; init; } = [];

    public static readonly IReadOnlyList<ConfigKey> Keys =
    [
        new("oidc_issuers", "", "OIDC issuers whose tokens CI jobs exchange for SVIDs ('writ ci login'): a JSON list of {issuer, audiences, claims, algorithms?, jwks_uri?, ca_file?} (docs/ci.md).") { IsJson = true },
    ];

    /// <summary>Parses <c>oidc_issuers</c>; problems go to <see cref="ConfigSources.Errors"/>.</summary>
    public static OidcOptions Build(ConfigSources c)
    {
        ArgumentNullException.ThrowIfNull(c);
        _ = c.Json("oidc_issuers");
        return None;   // the oidc lane parses the list
    }
}
