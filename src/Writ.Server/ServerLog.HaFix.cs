using Microsoft.Extensions.Logging;

namespace Writ.Server;

/// <summary>Correctness gaps of several servers on one store (issue #16): every server's CRLs, duplicate server ids. Ids 1760–1769.</summary>
public static partial class ServerLog
{
    [LoggerMessage(1760, LogLevel.Information, "CRLs of the other servers on the store changed: {Count} now handed to agents beside this server's own")]
    public static partial void OtherServersCrlsChanged(ILogger log, int count);

    [LoggerMessage(1762, LogLevel.Critical, "{Code}: another live server process has this server id {ServerId} (its data dir was copied, CA key and all): this server issues nothing and reports not ready until it is restarted alone; give every server its own data dir, stop the copy, then restart this one")]
    public static partial void DuplicateServerId(ILogger log, string code, string serverId);
}
