using Microsoft.Extensions.Logging;

namespace Writ.Server;

/// <summary>`writ oidc-discovery run` (issue #16 item 8): ids 1970–1989.</summary>
public static partial class ServerLog
{
    [LoggerMessage(1970, LogLevel.Information, "OIDC discovery ready: issuer {Issuer} on {Addresses} ({Transport}); keys from the server on {AdminSocket} every {RefreshInterval}")]
    public static partial void DiscoveryReady(ILogger log, string issuer, string addresses, string transport, string adminSocket, TimeSpan refreshInterval);

    [LoggerMessage(1971, LogLevel.Information, "OIDC discovery keys now {Kids} (bundle sequence {Sequence})")]
    public static partial void DiscoveryKeysChanged(ILogger log, string kids, long sequence);

    [LoggerMessage(1972, LogLevel.Warning, "OIDC discovery cannot read the bundle from the server: {Reason}; still serving the keys read at {LastGood} (none if empty)")]
    public static partial void DiscoveryBundleUnavailable(ILogger log, string reason, string lastGood);

    [LoggerMessage(1973, LogLevel.Information, "OIDC discovery reads the bundle again after {Failures} failed attempt(s) over {Outage}")]
    public static partial void DiscoveryBundleRecovered(ILogger log, int failures, TimeSpan outage);

    [LoggerMessage(1974, LogLevel.Information, "OIDC discovery TLS certificate reloaded from {Path}: {Subject}, valid until {NotAfter:u}")]
    public static partial void DiscoveryTlsReloaded(ILogger log, string path, string subject, DateTimeOffset notAfter);

    [LoggerMessage(1975, LogLevel.Warning, "OIDC discovery TLS certificate {Path} changed but cannot be used ({Reason}): still serving the previous one")]
    public static partial void DiscoveryTlsReloadFailed(ILogger log, string path, string reason);
}
