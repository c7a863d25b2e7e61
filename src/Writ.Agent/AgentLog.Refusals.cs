using Microsoft.Extensions.Logging;

namespace Writ.Agent;

/// <summary>Workload refusal reports: ids 2790–2799.</summary>
public static partial class AgentLog
{
    [LoggerMessage(2790, LogLevel.Debug, "Refusal of workload instance {InstanceId} ({Code}) reported to the server")]
    public static partial void WorkloadRefusalReported(ILogger log, string instanceId, string code);

    [LoggerMessage(2791, LogLevel.Warning, "Could not report the refusal of workload instance {InstanceId} to the server: {Reason}")]
    public static partial void WorkloadRefusalReportFailed(ILogger log, string instanceId, string reason);
}
