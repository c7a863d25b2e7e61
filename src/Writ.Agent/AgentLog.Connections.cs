using Microsoft.Extensions.Logging;

namespace Writ.Agent;

public static partial class AgentLog
{
    [LoggerMessage(2750, LogLevel.Warning, "Workload API connection from uid {Uid} refused ({Code}): {Reason}")]
    public static partial void ConnectionRefused(ILogger logger, int uid, string code, string reason);

    [LoggerMessage(2751, LogLevel.Debug, "Workload API connection closed at accept: {Reason}")]
    public static partial void ConnectionDropped(ILogger logger, string reason);

    [LoggerMessage(2752, LogLevel.Information, "Workload API limits: {MaxConnections} connections, {MaxPerUid} per uid, {RatePerUid} connections and calls per second per uid (0: unlimited); file-descriptor limit {FdLimit}")]
    public static partial void ConnectionLimits(ILogger logger, int maxConnections, int maxPerUid, int ratePerUid, string fdLimit);
}
