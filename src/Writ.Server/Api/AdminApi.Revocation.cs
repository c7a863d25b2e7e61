using Grpc.Core;
using Writ.Protocol.Admin;
using Writ.Server.Registration;
using Writ.Server.Revocation;

namespace Writ.Server.Api;

/// <summary>Revocation on the admin API (issue #6): <c>writ revoke</c>, <c>writ revoke list</c>.</summary>
public sealed partial class AdminApi
{
    public const int MaxReasonLength = 512;

    public override async Task<RevokeResponse> Revoke(RevokeRequest request, ServerCallContext context)
    {
        var (kind, text) = request.TargetCase switch
        {
            RevokeRequest.TargetOneofCase.SerialHex => (RevocationTargetKind.Serial, request.SerialHex),
            RevokeRequest.TargetOneofCase.SpiffeId => (RevocationTargetKind.SpiffeId, request.SpiffeId),
            RevokeRequest.TargetOneofCase.EntryId => (RevocationTargetKind.Entry, request.EntryId),
            RevokeRequest.TargetOneofCase.AgentId => (RevocationTargetKind.Agent, request.AgentId),
            RevokeRequest.TargetOneofCase.Jti => (RevocationTargetKind.Jti, request.Jti),
            _ => throw new ValidationException("say what to revoke: --serial S, --spiffe-id ID, --entry ID, --agent ID or --jti J"),
        };
        if (!RevocationTarget.TryCreate(kind, text, out var target, out var error))
        {
            throw new ValidationException(error);
        }
        var reason = CheckReason(request.Reason);
        var revoked = await server.Revocations.RevokeAsync(target, reason, AdminCaller.Of(context), context.CancellationToken).ConfigureAwait(false);
        var response = new RevokeResponse();
        response.Revoked.AddRange(revoked.Select(RevocationMapping.ToProto));
        return response;
    }

    public override async Task<ListRevocationsResponse> ListRevocations(ListRevocationsRequest request, ServerCallContext context)
    {
        var all = await server.Store.Revocations.ListAsync(server.Time.GetUtcNow(), request.IncludeExpired, context.CancellationToken).ConfigureAwait(false);
        var response = new ListRevocationsResponse();
        response.Revocations.AddRange(all.Select(RevocationMapping.ToProto));
        return response;
    }

    private static string CheckReason(string reason)
    {
        reason = reason.Trim();
        if (reason.Length > MaxReasonLength || reason.Any(char.IsControl))
        {
            throw new ValidationException($"the reason must be at most {MaxReasonLength} printable characters on one line");
        }
        return reason.Length == 0 ? "revoked by admin" : reason;
    }

    /// <summary>Auto-revocation after a ban, eviction or entry deletion: the credentials that state change made worthless.</summary>
    private async Task AutoRevokeAgentAsync(Writ.Server.Storage.AttestedNode node, string why, ServerCallContext context) =>
        await server.Revocations.RevokeAgentAsync(node, why, AdminCaller.Of(context), context.CancellationToken).ConfigureAwait(false);

    private async Task AutoRevokeEntryAsync(string entryId, ServerCallContext context) =>
        await server.Revocations.RevokeEntryAsync(entryId, "entry deleted", AdminCaller.Of(context), context.CancellationToken).ConfigureAwait(false);
}
