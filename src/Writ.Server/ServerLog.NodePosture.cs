using Microsoft.Extensions.Logging;

namespace Writ.Server;

/// <summary>Node posture (continuous node attestation, issue #14): ids 1130–1149.</summary>
public static partial class ServerLog
{
    [LoggerMessage(1130, LogLevel.Warning, "Node {AgentId} ({Type}) drifted: {Code} {Reason}; action {Action}")]
    public static partial void NodeDrifted(ILogger log, string agentId, string type, string code, string reason, string action);

    [LoggerMessage(1131, LogLevel.Error, "Recheck appraisal of {Type} node {AgentId} failed (error {ErrorId}); the node was not marked drifted")]
    public static partial void NodeRecheckFailed(ILogger log, Exception e, string type, string agentId, string errorId);

    [LoggerMessage(1132, LogLevel.Debug, "Node {AgentId} passed recheck {RecheckId}")]
    public static partial void NodeRecheckPassed(ILogger log, string agentId, string recheckId);

    [LoggerMessage(1133, LogLevel.Warning, "Node {AgentId} readmitted by {Actor} (it had drifted: {Reason}); it is rechecked at once")]
    public static partial void NodeReadmitted(ILogger log, string agentId, string actor, string reason);

    [LoggerMessage(1134, LogLevel.Information, "Agent {AgentId} attested again by {Type}; SVID serial {Serial}")]
    public static partial void AgentReattested(ILogger log, string agentId, string type, string serial);
}
