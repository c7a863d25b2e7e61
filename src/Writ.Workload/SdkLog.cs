using Microsoft.Extensions.Logging;

namespace Writ.Workload;

/// <summary>The SDK's log events (ids 5000–5049; docs/telemetry.md).</summary>
internal static partial class SdkLog
{
    [LoggerMessage(EventId = 5000, Level = LogLevel.Debug, Message = "Workload API stream {Stream} received an update")]
    public static partial void StreamUpdate(ILogger logger, string stream);

    [LoggerMessage(EventId = 5001, Level = LogLevel.Warning, Message = "Workload API stream {Stream} failed ({Status}: {Detail}); reconnecting in {DelayMs} ms")]
    public static partial void StreamFailed(ILogger logger, string stream, string status, string detail, long delayMs);

    [LoggerMessage(EventId = 5002, Level = LogLevel.Information, Message = "X.509-SVID updated: {SpiffeId}, expires {ExpiresAt:O}")]
    public static partial void X509SvidUpdated(ILogger logger, string spiffeId, DateTimeOffset expiresAt);

    [LoggerMessage(EventId = 5003, Level = LogLevel.Warning, Message = "Peer certificate refused: {Reason}")]
    public static partial void PeerRefused(ILogger logger, string reason);

    [LoggerMessage(EventId = 5004, Level = LogLevel.Warning, Message = "Workload API update ignored ({Stream}): {Reason}")]
    public static partial void UpdateIgnored(ILogger logger, string stream, string reason);

    [LoggerMessage(EventId = 5005, Level = LogLevel.Error, Message = "A Changed handler of {Source} threw")]
    public static partial void ChangedHandlerFailed(ILogger logger, string source, Exception exception);
}
