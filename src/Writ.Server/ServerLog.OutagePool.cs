using Microsoft.Extensions.Logging;

namespace Writ.Server;

/// <summary>The outage pool (issue #16 item 5): pooled SVIDs signed, refused, reported used. Ids 1730–1739.</summary>
public static partial class ServerLog
{
    [LoggerMessage(1730, LogLevel.Information, "Signed {Count} pooled X.509-SVIDs of {SpiffeId} (entry {EntryId}) for agent {AgentId}")]
    public static partial void PooledSigned(ILogger log, int count, string spiffeId, string entryId, string agentId);

    [LoggerMessage(1731, LogLevel.Warning, "Pooled X.509-SVIDs refused for agent {AgentId}, entry {EntryId}: {Code} {Reason}")]
    public static partial void PooledRefused(ILogger log, string agentId, string entryId, string code, string reason);

    [LoggerMessage(1732, LogLevel.Information, "Pooled X.509-SVID {Serial} of entry {EntryId} was handed to instance {InstanceId} by agent {AgentId} during an outage")]
    public static partial void PooledUsed(ILogger log, string serial, string entryId, string instanceId, string agentId);

    [LoggerMessage(1733, LogLevel.Warning, "Agent {AgentId} reported pooled SVID serial {Serial}, which is not a pooled SVID of that agent and entry: the report was refused")]
    public static partial void PooledUnknownReported(ILogger log, string agentId, string serial);
}
