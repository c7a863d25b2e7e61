using Microsoft.Extensions.Logging;

namespace Writ.Server;

/// <summary>Change fan-out to agent sync streams (issue #16): ids 1720–1739.</summary>
public static partial class ServerLog
{
    [LoggerMessage(1720, LogLevel.Warning, "The shared sync feed could not read the store ({Reason}); agents get changes once it can again (retrying every second)")]
    public static partial void SyncFeedFailed(ILogger log, string reason);

    [LoggerMessage(1721, LogLevel.Information, "The shared sync feed reads the store again (revision {Revision})")]
    public static partial void SyncFeedRecovered(ILogger log, long revision);

    [LoggerMessage(1722, LogLevel.Information, "The shared sync feed started over at store revision {Revision} (it was at {Previous}: deletions pruned or the store was restored); streams behind it read the store")]
    public static partial void SyncFeedReset(ILogger log, long previous, long revision);

    [LoggerMessage(1723, LogLevel.Debug, "Another server announced a change of {Kind}: waking the sync streams")]
    public static partial void ChangeAnnounced(ILogger log, string kind);
}
