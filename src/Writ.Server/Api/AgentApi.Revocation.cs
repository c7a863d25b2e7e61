using Grpc.Core;
using Writ.Protocol.Agent;
using Writ.Server.Registration;
using Writ.Server.Revocation;
using Writ.Server.Storage;

namespace Writ.Server.Api;

/// <summary>Revocation on the agent API (issue #6): instance-gone reports, and the revocation part of Sync.</summary>
public sealed partial class AgentApi
{
    public override async Task<ReportInstanceGoneResponse> ReportInstanceGone(ReportInstanceGoneRequest request, ServerCallContext context)
    {
        var caller = await AuthenticateAsync(context).ConfigureAwait(false);
        if (request.InstanceId.Length is 0 or > 256 || request.InstanceId.Any(c => char.IsControl(c) || char.IsWhiteSpace(c)))
        {
            throw new ValidationException("instance_id must be 1-256 printable characters without spaces, e.g. \"4242:123456\"");
        }
        if (request.SerialHex.Count + request.Jti.Count > RevocationService.MaxReportItems)
        {
            throw new ValidationException($"report at most {RevocationService.MaxReportItems} serials and jtis per call");
        }
        var reason = request.Reason.Trim();
        if (reason.Length > 256 || reason.Any(char.IsControl))
        {
            throw new ValidationException("the reason must be at most 256 printable characters");
        }
        var result = await server.Revocations.InstanceGoneAsync(caller.Id.ToString(), request.InstanceId, request.SerialHex, request.Jti,
            reason.Length == 0 ? "gone" : reason, context.CancellationToken).ConfigureAwait(false);
        return new ReportInstanceGoneResponse { Revoked = result.Revoked.Count };
    }

    /// <summary>
    /// The revocations a Sync stream sends next: on a full state every unexpired one (a reset agent knows none),
    /// otherwise those made after <paramref name="cursor"/>. Returns them and the new cursor.
    /// </summary>
    private async Task<(IReadOnlyList<RevocationRecord> Revocations, long Cursor)> RevocationsForSyncAsync(bool full, long cursor, long entriesRevision, CancellationToken ct)
    {
        var now = server.Time.GetUtcNow();
        var list = full
            ? await server.Store.Revocations.ListAsync(now, includeExpired: false, ct).ConfigureAwait(false)
            : [.. (await server.Store.Revocations.SinceAsync(cursor, ct).ConfigureAwait(false)).Where(r => r.ExpiresAt > now)];
        var next = Math.Max(cursor, entriesRevision);
        foreach (var r in list)
        {
            next = Math.Max(next, r.Revision);
        }
        return (list, next);
    }

    /// <summary>Completes when the CRL should be re-signed (half its validity), so agents get the fresh one before nextUpdate.</summary>
    /// <summary>How long until the CRL a stream sent must be re-signed (half its validity), at least a second.</summary>
    private TimeSpan CrlRefreshDue(CrlSnapshot crl)
    {
        var due = crl.ThisUpdate + (RevocationService.CrlValidity / 2) - server.Time.GetUtcNow();
        return due > TimeSpan.FromSeconds(1) ? due : TimeSpan.FromSeconds(1);
    }
}
