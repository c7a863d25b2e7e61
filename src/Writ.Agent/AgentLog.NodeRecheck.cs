using Microsoft.Extensions.Logging;

namespace Writ.Agent;

/// <summary>Continuous node attestation on the agent (issue #14): ids 2110–2119.</summary>
public static partial class AgentLog
{
    [LoggerMessage(2110, LogLevel.Debug, "Node recheck {RecheckId} ({Type}) answered; the server says the node is {Status}")]
    public static partial void RecheckAnswered(ILogger log, string recheckId, string type, string status);

    [LoggerMessage(2111, LogLevel.Warning, "Node recheck {RecheckId} ({Type}) not answered: {Reason}; the server counts a missing answer as drift after its grace period")]
    public static partial void RecheckFailed(ILogger log, string recheckId, string type, string reason);

    [LoggerMessage(2112, LogLevel.Warning, "The server sent a node recheck ({Type}) but this agent's node attestor does not answer rechecks: ignored")]
    public static partial void RecheckIgnored(ILogger log, string type);
}
