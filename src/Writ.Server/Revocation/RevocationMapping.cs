using Writ.Server.Storage;
using ProtoRevocation = Writ.Protocol.Agent.Revocation;

namespace Writ.Server.Revocation;

/// <summary>Store record ↔ wire message for revocations (Sync, admin API).</summary>
public static class RevocationMapping
{
    public static ProtoRevocation ToProto(RevocationRecord r)
    {
        ArgumentNullException.ThrowIfNull(r);
        return new ProtoRevocation
        {
            SerialHex = r.SerialHex ?? "",
            Jti = r.Jti ?? "",
            SpiffeId = r.SpiffeId,
            EntryId = r.EntryId ?? "",
            InstanceId = r.InstanceId ?? "",
            RevokedAtUnix = r.RevokedAt.ToUnixTimeSeconds(),
            ExpiresAtUnix = r.ExpiresAt.ToUnixTimeSeconds(),
            Reason = r.Reason,
            Revision = r.Revision,
        };
    }
}
