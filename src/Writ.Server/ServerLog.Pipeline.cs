using Microsoft.Extensions.Logging;

namespace Writ.Server;

/// <summary>The issuance pipeline's events (ids 1650–1699; docs/telemetry.md).</summary>
public static partial class ServerLog
{
    [LoggerMessage(1650, LogLevel.Information, "Issuance policy version {Version} active (was {Previous}): {Count} policies, sha256 {Sha256}")]
    public static partial void PolicyActivated(ILogger log, long version, long previous, int count, string sha256);

    [LoggerMessage(1651, LogLevel.Error, "Stored policy version {Version} does not compile and was not applied; version {Active} stays active. First error: {Error}")]
    public static partial void PolicyVersionRefused(ILogger log, long version, long active, string error);

    [LoggerMessage(1652, LogLevel.Warning, "Reading the active policy version failed (retrying): {Reason}")]
    public static partial void PolicyReloadFailed(ILogger log, string reason);

    [LoggerMessage(1653, LogLevel.Information, "Issuance denied, decision {DecisionId}: {Action} for {SpiffeId} via {AgentId}: {Reason}")]
    public static partial void IssuanceDenied(ILogger log, string decisionId, string action, string spiffeId, string agentId, string reason);

    [LoggerMessage(1654, LogLevel.Error, "Ledger write of {Count} issuance records failed; no credential was handed out: {Reason}")]
    public static partial void LedgerWriteFailed(ILogger log, int count, string reason);

    [LoggerMessage(1655, LogLevel.Information, "What-if replay of {Replayed} recorded decisions against a candidate policy set: {Changed} would change")]
    public static partial void WhatIfReplayed(ILogger log, int replayed, int changed);
}
