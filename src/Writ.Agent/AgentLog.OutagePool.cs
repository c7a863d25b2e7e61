using Microsoft.Extensions.Logging;

namespace Writ.Agent;

/// <summary>The outage pool (issue #16 item 5; docs/high-availability.md "New workloads during an outage"); ids 2440–2449.</summary>
public static partial class AgentLog
{
    [LoggerMessage(2440, LogLevel.Information, "Outage pool of {SpiffeId} (entry {EntryId}) refilled with {Count} pooled X.509-SVIDs")]
    public static partial void PoolRefilled(ILogger log, string spiffeId, string entryId, int count);

    [LoggerMessage(2441, LogLevel.Warning, "Outage pool of entry {EntryId} not refilled: {Reason}")]
    public static partial void PoolRefillRefused(ILogger log, string entryId, string reason);

    [LoggerMessage(2442, LogLevel.Warning, "No server reachable: pooled X.509-SVID {Serial} of {SpiffeId} (entry {EntryId}) handed to instance {InstanceId} (pid {Pid}, uid {Uid}); reported when a server is back")]
    public static partial void PoolHandedOut(ILogger log, string serial, string spiffeId, string entryId, string instanceId, int pid, int uid);

    [LoggerMessage(2443, LogLevel.Information, "Reported {Count} pooled X.509-SVID handout(s) to the server")]
    public static partial void PoolUsesReported(ILogger log, int count);

    [LoggerMessage(2444, LogLevel.Error, "The server refused the report of pooled SVID handouts ({Reason}); dropped")]
    public static partial void PoolUsesRefused(ILogger log, string reason);

    [LoggerMessage(2445, LogLevel.Information, "Outage pool of entry {EntryId} dropped ({Reason}): {Count} pooled X.509-SVIDs")]
    public static partial void PoolDropped(ILogger log, string entryId, string reason, int count);
}
