using Microsoft.Extensions.Logging;

namespace Writ.Workload.AspNetCore;

/// <summary>Log events of the SDK's ASP.NET Core parts (ids 5050–5099; docs/telemetry.md).</summary>
internal static partial class AspNetCoreLog
{
    [LoggerMessage(EventId = 5050, Level = LogLevel.Information, Message = "X.509-SVID caller {SpiffeId} refused by scheme {Scheme}: {Code} {Reason}")]
    public static partial void X509CallerRefused(ILogger logger, string scheme, string spiffeId, string code, string reason);

    [LoggerMessage(EventId = 5051, Level = LogLevel.Information, Message = "JWT-SVID caller {SpiffeId} refused by scheme {Scheme}: {Code} {Reason}")]
    public static partial void JwtCallerRefused(ILogger logger, string scheme, string spiffeId, string code, string reason);

    [LoggerMessage(EventId = 5052, Level = LogLevel.Information, Message = "Call {Method} {Path} from {Caller} denied by the agent: decision {DecisionId} ({Code}) {Reason}")]
    public static partial void CallDenied(ILogger logger, string method, string path, string caller, string decisionId, string code, string reason);

    [LoggerMessage(EventId = 5053, Level = LogLevel.Warning, Message = "The local agent could not be asked for a call decision ({Endpoint}): {Reason}; the call is refused (fail closed)")]
    public static partial void AgentUnavailable(ILogger logger, string endpoint, string reason);

    [LoggerMessage(EventId = 5054, Level = LogLevel.Debug, Message = "Call {Method} {Path} from {Caller} allowed by the agent: decision {DecisionId}")]
    public static partial void CallAllowed(ILogger logger, string method, string path, string caller, string decisionId);
}
