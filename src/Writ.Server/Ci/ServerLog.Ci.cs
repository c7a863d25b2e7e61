using Microsoft.Extensions.Logging;

namespace Writ.Server;

/// <summary>CI logins (issue #15): ids 1160–1179.</summary>
public static partial class ServerLog
{
    [LoggerMessage(1160, LogLevel.Information, "CI login {SessionId}: {SpiffeId} for a job of {Issuer} (subject {Subject}); X.509-SVID until {ExpiresAt:u}")]
    public static partial void CiLogin(ILogger log, string sessionId, string spiffeId, string issuer, string subject, DateTimeOffset expiresAt);

    [LoggerMessage(1161, LogLevel.Warning, "CI login refused from {Peer} (token issuer {Issuer}, sha256 {TokenSha256}): {Code} {Reason}")]
    public static partial void CiLoginRefused(ILogger log, string issuer, string tokenSha256, string peer, string code, string reason);

    [LoggerMessage(1162, LogLevel.Information, "CI logout {SessionId} of {SpiffeId}: {Revoked} credential(s) revoked")]
    public static partial void CiLogout(ILogger log, string sessionId, string spiffeId, int revoked);

    [LoggerMessage(1163, LogLevel.Warning, "CI call {Method} refused for {SpiffeId} from {Peer}: {Code} {Reason}")]
    public static partial void CiCallRefused(ILogger log, string method, string spiffeId, string peer, string code, string reason);

    [LoggerMessage(1164, LogLevel.Information, "CI sessions swept: {Ended} ended with their expired job token, {Pruned} forgotten")]
    public static partial void CiSessionsSwept(ILogger log, int ended, int pruned);

    [LoggerMessage(1165, LogLevel.Error, "CI sessions: could not {Operation}: {Reason}")]
    public static partial void CiStoreFailed(ILogger log, string operation, string reason);
}
