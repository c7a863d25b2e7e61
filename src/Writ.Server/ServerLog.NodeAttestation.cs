using Microsoft.Extensions.Logging;

namespace Writ.Server;

public static partial class ServerLog
{
    [LoggerMessage(1107, LogLevel.Error, "Node attestor {Type} failed (error {ErrorId})")]
    public static partial void NodeAttestorFailed(ILogger log, Exception e, string type, string errorId);
}
