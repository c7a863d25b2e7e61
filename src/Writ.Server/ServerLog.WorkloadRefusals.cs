using Microsoft.Extensions.Logging;

namespace Writ.Server;

/// <summary>Workload refusals reported by agents: ids 1850–1859.</summary>
public static partial class ServerLog
{
    [LoggerMessage(1850, LogLevel.Information, "Agent {AgentId} refused workload instance {InstanceId} an identity: {Code}: {Reason}")]
    public static partial void WorkloadRefusedReported(ILogger log, string agentId, string instanceId, string code, string reason);
}
