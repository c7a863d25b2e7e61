using Microsoft.Extensions.Logging;

namespace Writ.Server;

/// <summary>Ledger and policy-lifecycle events (ids 1600–1649).</summary>
public static partial class ServerLog
{
    [LoggerMessage(1600, LogLevel.Information, "Ledger verified: {Checked} records, head {HeadSeq}")]
    public static partial void LedgerVerified(ILogger log, long @checked, long headSeq);

    [LoggerMessage(1601, LogLevel.Error, "Ledger verification failed at record {Seq}: {Problem}")]
    public static partial void LedgerVerifyFailed(ILogger log, long seq, string problem);

    [LoggerMessage(1602, LogLevel.Information, "Ledger exported by {Actor}: {Count} records after {AfterSeq}")]
    public static partial void LedgerExported(ILogger log, string actor, long count, long afterSeq);

    [LoggerMessage(1620, LogLevel.Information, "Ledger checkpoint signed: record {Seq} hash {Hash}, key {KeyId}, signature {Signature}")]
    public static partial void LedgerCheckpointed(ILogger log, long seq, string hash, string keyId, string signature);

    [LoggerMessage(1621, LogLevel.Error, "Ledger checkpoint refused at head {HeadSeq}: {Problem}")]
    public static partial void LedgerCheckpointRefused(ILogger log, long headSeq, string problem);

    [LoggerMessage(1622, LogLevel.Error, "Ledger checkpoint failed: {Reason}; retrying at the next interval")]
    public static partial void LedgerCheckpointFailed(ILogger log, string reason);

    [LoggerMessage(1623, LogLevel.Warning, "Issuance rate limit for {Scope} {Key}: {Action} refused")]
    public static partial void IssuanceRateLimited(ILogger log, string scope, string key, string action);

    [LoggerMessage(1624, LogLevel.Warning, "Denial records for {Key} are rate-limited: {Suppressed} denials not recorded so far (the next record counts them)")]
    public static partial void DenialRecordsSuppressed(ILogger log, string key, long suppressed);

    [LoggerMessage(1625, LogLevel.Information, "Summarizing for the ledger (denials.suppressed): agent {AgentId} had {Count} denials left out in the last window")]
    public static partial void DenialSummaryRecorded(ILogger log, string agentId, long count);

    [LoggerMessage(1610, LogLevel.Information, "Policy version {Version} pushed by {Author} (sha256 {Sha256}, {Policies} policies)")]
    public static partial void PolicyPushed(ILogger log, long version, string author, string sha256, int policies);

    [LoggerMessage(1611, LogLevel.Warning, "Policy push by {Author} refused: {Errors} errors, first: {FirstError}")]
    public static partial void PolicyPushRefused(ILogger log, string author, int errors, string firstError);

    [LoggerMessage(1612, LogLevel.Information, "Policy rolled back by {Author}: version {Version} has the text of version {From}")]
    public static partial void PolicyRolledBack(ILogger log, string author, long version, long from);

    [LoggerMessage(1613, LogLevel.Information, "No policy version in the store: installed the default policy set as version {Version}")]
    public static partial void DefaultPolicyInstalled(ILogger log, long version);

    [LoggerMessage(1614, LogLevel.Information, "Policy push by {Author} is unchanged from the active version {Version}: no new version")]
    public static partial void PolicyUnchanged(ILogger log, string author, long version);
}
