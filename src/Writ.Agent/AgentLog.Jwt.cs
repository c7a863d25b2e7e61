using Microsoft.Extensions.Logging;

namespace Writ.Agent;

/// <summary>JWT-SVID revocation and replay checks in ValidateJWTSVID (issue #6): ids 2700–2749.</summary>
public static partial class AgentLog
{
    [LoggerMessage(2700, LogLevel.Warning, "ValidateJWTSVID refused revoked JWT-SVID {Jti} of {SpiffeId} for {Peer}")]
    public static partial void JwtRevokedRefused(ILogger log, string jti, string spiffeId, string peer);

    [LoggerMessage(2701, LogLevel.Warning, "ValidateJWTSVID refused a replay: {Token} of {SpiffeId} was validated for {FirstPeer}, now for {SecondPeer}")]
    public static partial void JwtReplayRefused(ILogger log, string token, string spiffeId, string firstPeer, string secondPeer);

    [LoggerMessage(2702, LogLevel.Information, "JWT-SVID replay of {Token} reported to the server (revoked: {Revoked})")]
    public static partial void JwtReplayReported(ILogger log, string token, bool revoked);

    [LoggerMessage(2703, LogLevel.Warning, "Could not report the JWT-SVID replay of {Token} to the server ({Reason}); retry {Attempt} in {Delay}")]
    public static partial void JwtReplayReportRetry(ILogger log, string token, string reason, int attempt, TimeSpan delay);

    [LoggerMessage(2704, LogLevel.Error, "Gave up reporting the JWT-SVID replay of {Token} to the server: {Reason}")]
    public static partial void JwtReplayReportFailed(ILogger log, string token, string reason);
}
