using Microsoft.Extensions.Logging;

namespace Writ.Agent;

/// <summary>Federation, the agent's half (issue #16): foreign trust domains' bundles from Sync, and what workloads see. Ids 2430–2459.</summary>
public static partial class AgentLog
{
    [LoggerMessage(2430, LogLevel.Information, "Federated bundle of {TrustDomain} received: {X509Authorities} X.509 and {JwtAuthorities} JWT authorities (sequence {Sequence})")]
    public static partial void FederatedBundleUpdated(ILogger log, string trustDomain, int x509Authorities, int jwtAuthorities, long sequence);

    [LoggerMessage(2431, LogLevel.Information, "Federated bundle of {TrustDomain} dropped: the server no longer federates with it")]
    public static partial void FederatedBundleRemoved(ILogger log, string trustDomain);

    [LoggerMessage(2432, LogLevel.Warning, "Federated bundle of {TrustDomain} refused: {Reason}")]
    public static partial void FederatedBundleRefused(ILogger log, string trustDomain, string reason);

}
