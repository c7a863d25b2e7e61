using Microsoft.Extensions.Logging;

namespace Writ.Agent;

/// <summary>Every agent log event with its stable id (2000–2999). Ids are never reused.</summary>
public static partial class AgentLog
{
    [LoggerMessage(2000, LogLevel.Information, "Writ agent ready: {AgentId}, Workload API on {Socket}, server {Server}")]
    public static partial void Ready(ILogger log, string agentId, string socket, string server);

    [LoggerMessage(2001, LogLevel.Information, "Agent attested with a join token as {AgentId}")]
    public static partial void Attested(ILogger log, string agentId);

    [LoggerMessage(2002, LogLevel.Information, "Agent resumed with its stored SVID as {AgentId} (expires {ExpiresAt:u})")]
    public static partial void Resumed(ILogger log, string agentId, DateTimeOffset expiresAt);

    [LoggerMessage(2003, LogLevel.Information, "Agent SVID renewed (serial {Serial}, expires {ExpiresAt:u})")]
    public static partial void Renewed(ILogger log, string serial, DateTimeOffset expiresAt);

    [LoggerMessage(2004, LogLevel.Critical, "Agent stopped: {Reason}")]
    public static partial void Fatal(ILogger log, string reason);

    [LoggerMessage(2100, LogLevel.Information, "Sync connected (from revision {Revision})")]
    public static partial void SyncConnected(ILogger log, long revision);

    [LoggerMessage(2101, LogLevel.Warning, "Sync with the server lost ({Reason}); retrying in {Delay} — cached SVIDs are still served until they expire")]
    public static partial void SyncLost(ILogger log, string reason, TimeSpan delay);

    [LoggerMessage(2102, LogLevel.Information, "Sync applied revision {Revision}: {Entries} entries")]
    public static partial void SyncApplied(ILogger log, long revision, int entries);

    [LoggerMessage(2200, LogLevel.Information, "X.509-SVID for {SpiffeId} (entry {EntryId}) issued; expires {ExpiresAt:u}, rotates at {RotateAt:u}")]
    public static partial void X509Cached(ILogger log, string spiffeId, string entryId, DateTimeOffset expiresAt, DateTimeOffset rotateAt);

    [LoggerMessage(2201, LogLevel.Warning, "Could not renew X.509-SVIDs ({Reason}); serving the cached ones until they expire")]
    public static partial void RotationFailed(ILogger log, string reason);

    [LoggerMessage(2202, LogLevel.Warning, "X.509-SVID for {SpiffeId} expired without renewal and is no longer served")]
    public static partial void X509Expired(ILogger log, string spiffeId);

    [LoggerMessage(2300, LogLevel.Information, "Workload pid {Pid} uid {Uid} attested: {Selectors}")]
    public static partial void WorkloadAttested(ILogger log, int pid, int uid, string selectors);

    [LoggerMessage(2301, LogLevel.Warning, "Workload API {Method} refused: {Reason}")]
    public static partial void WorkloadRefused(ILogger log, string method, string reason);

    [LoggerMessage(2302, LogLevel.Warning, "Workload attestor failed: {Reason}")]
    public static partial void AttestorFailed(ILogger log, string reason);

    [LoggerMessage(2900, LogLevel.Error, "Unexpected agent error in {Where}")]
    public static partial void Unexpected(ILogger log, Exception e, string where);
}
