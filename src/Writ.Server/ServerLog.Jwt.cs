using Microsoft.Extensions.Logging;

namespace Writ.Server;

/// <summary>JWT binding and replay (issue #6): ids 1800–1849.</summary>
public static partial class ServerLog
{
    [LoggerMessage(1800, LogLevel.Warning, "JWT-SVID replay reported by {AgentId}: {Token} of {SpiffeId} presented by {FirstPeer} and then by {SecondPeer}")]
    public static partial void JwtReplayReported(ILogger log, string agentId, string token, string spiffeId, string firstPeer, string secondPeer);

    [LoggerMessage(1801, LogLevel.Warning, "Replayed JWT-SVID {Jti} of {SpiffeId} revoked")]
    public static partial void JwtReplayRevoked(ILogger log, string jti, string spiffeId);

    [LoggerMessage(1802, LogLevel.Information, "Replayed JWT-SVID {Token} not revoked: {Reason}")]
    public static partial void JwtReplayNotRevoked(ILogger log, string token, string reason);
}
