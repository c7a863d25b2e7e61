using Microsoft.Extensions.Logging;

namespace Writ.Agent;

/// <summary>Request-time decisions (ext_authz, the relying-party API) and call policy: ids 2800–2829, 2850–2859.</summary>
public static partial class AgentLog
{
    [LoggerMessage(2800, LogLevel.Information, "Call policy version {Version} applied (sha256 {Sha256})")]
    public static partial void CallPolicyApplied(ILogger log, long version, string sha256);

    [LoggerMessage(2801, LogLevel.Error, "Call policy version {Version} pushed by the server cannot be used ({Error}); still deciding calls with version {Kept}")]
    public static partial void CallPolicyRejected(ILogger log, long version, string error, long kept);

    [LoggerMessage(2802, LogLevel.Debug, "Call {DecisionId} by {Caller} to {Resource}: {Decision} ({Code}) {Reason}")]
    public static partial void CallDecided(ILogger log, string decisionId, string caller, string resource, string decision, string code, string reason);

    [LoggerMessage(2803, LogLevel.Information, "Envoy ext_authz decision service listening on {Bind}")]
    public static partial void AuthzListening(ILogger log, string bind);

    [LoggerMessage(2804, LogLevel.Warning, "Access report queue full: {Dropped} call decisions dropped so far (the decisions stand; only their ledger record is lost)")]
    public static partial void AccessReportsDropped(ILogger log, long dropped);

    [LoggerMessage(2805, LogLevel.Debug, "{Count} call decisions reported to the server")]
    public static partial void AccessReported(ILogger log, int count);

    [LoggerMessage(2806, LogLevel.Warning, "Could not report {Count} call decisions to the server: {Reason}")]
    public static partial void AccessReportFailed(ILogger log, int count, string reason);

    [LoggerMessage(2807, LogLevel.Debug, "Request reached the {Surface} listener for a service it does not serve: {Path}")]
    public static partial void AuthzWrongListener(ILogger log, string surface, string path);
}
