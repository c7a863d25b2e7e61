using Microsoft.Extensions.Logging;

namespace Writ.Server.NodeAttestation.K8sPsat;

/// <summary>k8s_psat node attestation: log ids 1150–1159 (docs/telemetry.md).</summary>
internal static partial class K8sPsatLog
{
    [LoggerMessage(EventId = 1150, Level = LogLevel.Warning, Message = "k8s_psat: the Kubernetes API of cluster {Cluster} could not {Call}: {Reason}")]
    public static partial void ApiFailed(ILogger log, string cluster, string call, string reason);

    [LoggerMessage(EventId = 1151, Level = LogLevel.Information, Message = "k8s_psat: agent pod {Namespace}/{Pod} (service account {ServiceAccount}) on node {Node} ({NodeUid}) of cluster {Cluster} proved its token (sha256 {TokenSha256Prefix})")]
    public static partial void TokenAccepted(ILogger log, string cluster, string @namespace, string pod, string serviceAccount, string node, string nodeUid, string tokenSha256Prefix);
}
