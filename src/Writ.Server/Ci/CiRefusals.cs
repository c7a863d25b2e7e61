using Microsoft.Extensions.Logging;
using Writ.Protocol.Errors;
using Writ.Server.Hosting;
using Writ.Server.Storage;

namespace Writ.Server.Ci;

/// <summary>
/// Logs and records refused CI logins and calls: the first <see cref="RecordedPerMinute"/> of each minute one by one,
/// the rest counted into the next record (<c>suppressed_before</c>), as for refused node attestations.
/// </summary>
public sealed class CiRefusals(ServerContext server, ILogger<CiRefusals> log)
{
    public const int RecordedPerMinute = 120;

    private readonly Ledger.RefusalWindow _window = new(RecordedPerMinute);

    public async Task LoginRefusedAsync(string token, string peer, WritException e)
    {
        ArgumentNullException.ThrowIfNull(token);
        ArgumentNullException.ThrowIfNull(e);
        var iss = CiTokens.UnverifiedIssuer(token);
        var sha = CiTokens.Sha256Prefix(token);
        ServerLog.CiLoginRefused(log, iss is null ? "(unreadable)" : CiTokens.Printable(iss), sha, peer, e.Code, e.Message);
        if (TryRecord(out var suppressed))
            await AppendAsync(CiLedger.LoginRefused(iss, sha, peer, e, suppressed)).ConfigureAwait(false);
    }

    public async Task CallRefusedAsync(string method, string? spiffeId, string? serial, string peer, WritException e)
    {
        ArgumentNullException.ThrowIfNull(e);
        ServerLog.CiCallRefused(log, method, spiffeId ?? "(none)", peer, e.Code, e.Message);
        if (TryRecord(out var suppressed))
            await AppendAsync(CiLedger.CallRefused(method, spiffeId, serial, peer, e, suppressed)).ConfigureAwait(false);
    }

    private async Task AppendAsync(LedgerEvent record)
    {
        try
        {
            await server.LedgerWriter.AppendAsync([record], []).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            // The caller still gets its refusal; a store that is down is reported by everything else that writes.
            ServerLog.CiStoreFailed(log, "record a refusal", ex.Message);
        }
    }

    private bool TryRecord(out long suppressedBefore) => _window.TryRecord(server.Time.GetUtcNow(), out suppressedBefore);
}
