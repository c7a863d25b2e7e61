using Microsoft.Extensions.Logging;

namespace Writ.Server;

/// <summary>Revocation events (issue #6): ids 1750–1799.</summary>
public static partial class ServerLog
{
    [LoggerMessage(1750, LogLevel.Warning, "Revoked {Count} credential(s) ({Target}) by {Actor}: {Reason}")]
    public static partial void Revoked(ILogger log, int count, string target, string actor, string reason);

    [LoggerMessage(1751, LogLevel.Warning, "Agent {AgentId} reported instance {InstanceId} gone ({Reason}) and asked to revoke {Refused} credential(s) the ledger does not show as issued through it: refused")]
    public static partial void InstanceGoneRefused(ILogger log, string agentId, string instanceId, string reason, int refused);

    [LoggerMessage(1752, LogLevel.Information, "Agent {AgentId} reported instance {InstanceId} gone ({Reason}); {Revoked} credential(s) revoked")]
    public static partial void InstanceGone(ILogger log, string agentId, string instanceId, string reason, int revoked);

    [LoggerMessage(1753, LogLevel.Information, "CRL {CrlNumber} signed by authority {KeyId}: {Count} revoked serial(s), next update {NextUpdate:u}")]
    public static partial void CrlBuilt(ILogger log, string crlNumber, string keyId, int count, DateTimeOffset nextUpdate);

    [LoggerMessage(1754, LogLevel.Information, "Pruned {Count} revocation(s) of credentials that have expired")]
    public static partial void RevocationsPruned(ILogger log, int count);

    [LoggerMessage(1755, LogLevel.Error, "Revocation cache refresh failed: {Reason}; retrying")]
    public static partial void RevocationRefreshFailed(ILogger log, string reason);
}
