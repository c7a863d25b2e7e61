using Microsoft.Extensions.Logging;

namespace Writ.Agent.Sds;

/// <summary>Envoy SDS on the Workload API socket (issue #17): ids 2830–2849.</summary>
internal static partial class SdsLog
{
    [LoggerMessage(2830, LogLevel.Debug, "SDS: sent version {Version} ({Count} secrets: {Names}) to pid {Pid}")]
    public static partial void Sent(ILogger log, string version, int count, string names, int pid);

    [LoggerMessage(2831, LogLevel.Warning, "SDS: Envoy (pid {Pid}) rejected version {Version} of {Names}: {Error}")]
    public static partial void Rejected(ILogger log, int pid, string version, string names, string error);

    [LoggerMessage(2832, LogLevel.Debug, "SDS: ignored a request from pid {Pid} answering nonce {Nonce}, not the last one sent ({Expected})")]
    public static partial void StaleNonce(ILogger log, int pid, string nonce, string expected);
}
