using Microsoft.Extensions.Logging;

namespace Writ.Agent;

/// <summary>Workload instances, continuous re-attestation, denials and revocations (2600–2699).</summary>
public static partial class AgentLog
{
    [LoggerMessage(2600, LogLevel.Debug, "Workload instance {InstanceId} (pid {Pid}) tracked; exit noticed by {How}")]
    public static partial void InstanceTracked(ILogger log, string instanceId, int pid, string how);

    [LoggerMessage(2601, LogLevel.Information, "Workload instance {InstanceId} (pid {Pid}) forgotten ({Reason}): {Serials} X.509-SVIDs and {Jtis} JWT-SVIDs reported gone")]
    public static partial void InstanceForgotten(ILogger log, string instanceId, int pid, string reason, int serials, int jtis);

    [LoggerMessage(2602, LogLevel.Warning, "Workload instance {InstanceId} (pid {Pid}) evidence drifted ({Reason}): its credentials are no longer served; {Serials} X.509-SVIDs and {Jtis} JWT-SVIDs reported gone")]
    public static partial void InstanceDrifted(ILogger log, string instanceId, int pid, string reason, int serials, int jtis);

    [LoggerMessage(2603, LogLevel.Warning, "Re-attestation of workload instance {InstanceId} failed ({Reason}): nothing is served to it until it attests again")]
    public static partial void ReattestFailed(ILogger log, string instanceId, string reason);

    [LoggerMessage(2604, LogLevel.Debug, "Re-attestation round: {Checked} of {Instances} instances checked in {ElapsedMs:F1} ms")]
    public static partial void ReattestTick(ILogger log, int @checked, int instances, double elapsedMs);

    [LoggerMessage(2605, LogLevel.Information, "Pidfds unavailable ({Reason}): workload exits are noticed by the periodic re-check")]
    public static partial void PidfdUnavailable(ILogger log, string reason);

    [LoggerMessage(2610, LogLevel.Information, "Instance {InstanceId} reported gone to the server ({Reason}): {Revoked} credentials revoked")]
    public static partial void InstanceReported(ILogger log, string instanceId, string reason, int revoked);

    [LoggerMessage(2611, LogLevel.Warning, "Could not report instance {InstanceId} gone ({Reason}); {Pending} reports queued, retrying in {Delay}")]
    public static partial void InstanceReportDeferred(ILogger log, string instanceId, string reason, int pending, TimeSpan delay);

    [LoggerMessage(2612, LogLevel.Warning, "The server does not implement ReportInstanceGone yet: {Pending} reports stay queued and are retried")]
    public static partial void InstanceReportUnimplemented(ILogger log, int pending);

    [LoggerMessage(2613, LogLevel.Error, "Report of instance {InstanceId} gone dropped: {Reason}")]
    public static partial void InstanceReportDropped(ILogger log, string instanceId, string reason);

    [LoggerMessage(2614, LogLevel.Information, "{Count} pending instance reports loaded from {Path}; they are sent again")]
    public static partial void InstanceReportsLoaded(ILogger log, int count, string path);

    [LoggerMessage(2615, LogLevel.Error, "Pending instance reports could not be saved to {Path} ({Reason}); they are kept in memory and retried")]
    public static partial void InstanceReportsNotSaved(ILogger log, string path, string reason);

    [LoggerMessage(2620, LogLevel.Warning, "Issuance of {SpiffeId} (entry {EntryId}) to instance {InstanceId} denied: {Reason} (decision {DecisionId})")]
    public static partial void IssuanceDenied(ILogger log, string spiffeId, string entryId, string instanceId, string reason, string decisionId);

    [LoggerMessage(2630, LogLevel.Information, "Revocations from the server: {New} new ({Known} known)")]
    public static partial void RevocationsReceived(ILogger log, int @new, int known);

    [LoggerMessage(2631, LogLevel.Warning, "Revoked credentials dropped from the cache: {X509} X.509-SVIDs, {Jwt} JWT-SVIDs")]
    public static partial void RevokedDropped(ILogger log, int x509, int jwt);
}
