using Microsoft.Extensions.Logging;

namespace Writ.Server;

/// <summary>Several servers on one store (issue #16): server id, per-server CA journals, the merged bundle. Ids 1700–1719.</summary>
public static partial class ServerLog
{
    [LoggerMessage(1700, LogLevel.Information, "Server id {ServerId} ({State}); CA journal {Journal}")]
    public static partial void ServerIdentity(ILogger log, string serverId, string state, string journal);

    [LoggerMessage(1701, LogLevel.Information, "CA journal of the single-server store adopted as {Journal}: this server holds its keys")]
    public static partial void CaLegacyJournalAdopted(ILogger log, string journal);

    [LoggerMessage(1702, LogLevel.Information, "The single-server CA journal in the store is not this server's (it holds none of its keys): left as it is, its authorities never sign here; this server uses {Journal}")]
    public static partial void CaLegacyJournalNotOurs(ILogger log, string journal);

    [LoggerMessage(1703, LogLevel.Warning, "CA journal {Journal} of another server cannot be read: its authorities are left out of the trust bundle until that server rewrites it")]
    public static partial void CaJournalUnreadable(ILogger log, string journal);

    [LoggerMessage(1704, LogLevel.Information, "Trust bundle changed by another server: sequence {Sequence}")]
    public static partial void BundleReloaded(ILogger log, long sequence);

    [LoggerMessage(1705, LogLevel.Debug, "Trust bundle publication raced another server (sequence {Sequence}); merging again")]
    public static partial void BundlePublishRetry(ILogger log, long sequence);

    [LoggerMessage(1706, LogLevel.Warning, "Server heartbeat failed: {Reason}")]
    public static partial void ServerHeartbeatFailed(ILogger log, string reason);

    [LoggerMessage(1707, LogLevel.Warning, "Trust bundle reload failed: {Reason}")]
    public static partial void BundleReloadFailed(ILogger log, string reason);
}
