using Microsoft.Extensions.Logging;

namespace Writ.Server.Oidc;

/// <summary>OIDC token validation (issue #15): ids 1140–1149 (docs/telemetry.md).</summary>
internal static partial class OidcLog
{
    [LoggerMessage(1140, LogLevel.Information, "OIDC issuer {Issuer}: fetched {Keys} signing keys from {JwksUri} ({Reason})")]
    public static partial void KeysFetched(ILogger log, string issuer, int keys, string jwksUri, string reason);

    [LoggerMessage(1141, LogLevel.Warning, "OIDC issuer {Issuer} unreachable ({Code}: {Reason}); still validating with the keys fetched at {FetchedAt:u}")]
    public static partial void UnreachableUsingCache(ILogger log, string issuer, string code, string reason, DateTimeOffset fetchedAt);

    [LoggerMessage(1142, LogLevel.Error, "OIDC issuer {Issuer} unreachable and no keys cached: its tokens are refused ({Code}: {Reason})")]
    public static partial void UnreachableNoCache(ILogger log, string issuer, string code, string reason);

    [LoggerMessage(1143, LogLevel.Debug, "OIDC token of {Issuer} refused: {Code} (token sha256 {TokenHash})")]
    public static partial void TokenRefused(ILogger log, string issuer, string code, string tokenHash);
}
