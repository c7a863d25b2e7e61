using Microsoft.Extensions.Logging;

namespace Writ.Server;

/// <summary>Request-time decisions reported by agents (access ledger), explained and replayed: ids 1860–1879.</summary>
public static partial class ServerLog
{
    [LoggerMessage(1860, LogLevel.Debug, "Agent {AgentId} reported {Count} access decisions ({Denied} denied); {Recorded} recorded one by one")]
    public static partial void AccessReported(ILogger log, string agentId, int count, int denied, int recorded);

    [LoggerMessage(1861, LogLevel.Warning, "Refused an access report of agent {AgentId}: {Reason}")]
    public static partial void AccessReportRefused(ILogger log, string agentId, string reason);

    [LoggerMessage(1862, LogLevel.Information, "Access decisions of agent {AgentId} recorded as a count: {OverLimit} over the per-minute limit, {Dropped} dropped by the agent")]
    public static partial void AccessSuppressed(ILogger log, string agentId, long overLimit, long dropped);

    [LoggerMessage(1863, LogLevel.Warning, "Access decision {DecisionId} reported by {AgentId} as {Reported} re-evaluates to {Replayed} under policy version {Version}")]
    public static partial void AccessReplayDisagrees(ILogger log, string decisionId, string agentId, string reported, string replayed, long version);
}
