using Microsoft.Extensions.Logging;

namespace Writ.Agent;

/// <summary>Agent → server failover (docs/high-availability.md "Agents fail over"); ids 2400–2429.</summary>
public static partial class AgentLog
{
    [LoggerMessage(2400, LogLevel.Warning, "Server {From} failed ({Reason}); switching to server {To}")]
    public static partial void ServerSwitched(ILogger log, string from, string reason, string to);

    [LoggerMessage(2401, LogLevel.Warning, "All {Count} server endpoint(s) failed in a row (last: {Reason}); retrying with backoff — cached SVIDs are still served until they expire")]
    public static partial void ServerRoundFailed(ILogger log, int count, string reason);

    [LoggerMessage(2402, LogLevel.Information, "Connected to server {Server}")]
    public static partial void ServerConnected(ILogger log, string server);

    [LoggerMessage(2403, LogLevel.Information, "Server name {Server} resolved to {Count} addresses ({Addresses}); each is a server of its own")]
    public static partial void ServerNameResolved(ILogger log, string server, int count, string addresses);

    [LoggerMessage(2404, LogLevel.Warning, "Server name {Server} could not be resolved ({Reason}); tried as a name until it resolves")]
    public static partial void ServerNameUnresolved(ILogger log, string server, string reason);
}
