using Microsoft.Extensions.Logging;

namespace Writ.Server;

/// <summary>Federation (issue #16): events 1950–1969.</summary>
public static partial class ServerLog
{
    [LoggerMessage(1950, LogLevel.Information, "Bundle endpoint listening on {Address} (profile {Profile})")]
    public static partial void BundleEndpointListening(ILogger log, string address, string profile);

    [LoggerMessage(1951, LogLevel.Information, "Federation relationship with {TrustDomain} {Change} ({Profile}, {Url})")]
    public static partial void FederationChanged(ILogger log, string trustDomain, string change, string profile, string url);

    [LoggerMessage(1952, LogLevel.Information, "Federated bundle of {TrustDomain} updated: sequence {OldSequence} -> {NewSequence}")]
    public static partial void FederatedBundleUpdated(ILogger log, string trustDomain, long oldSequence, long newSequence);

    [LoggerMessage(1953, LogLevel.Warning, "Fetching the bundle of {TrustDomain} failed ({Code}): {Reason}; the stored bundle is kept")]
    public static partial void FederatedBundleFetchFailed(ILogger log, string trustDomain, string code, string reason);
}
