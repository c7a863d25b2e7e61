using Writ.Server.Storage;
using Proto = Writ.Protocol.Agent;
using Writ.Protocol.Evidence;

namespace Writ.Server.Registration;

/// <summary>Converts registration entries between the wire (agent/admin protos) and the store.</summary>
public static class EntryMapping
{
    public static Proto.Entry ToProto(RegistrationEntry e)
    {
        var p = new Proto.Entry
        {
            Id = e.Id,
            SpiffeId = e.SpiffeId,
            ParentId = e.ParentId,
            X509TtlSeconds = e.X509TtlSeconds,
            JwtTtlSeconds = e.JwtTtlSeconds,
            Hint = e.Hint,
            Admin = e.Admin,
            ExpiresAtUnix = e.ExpiresAt?.ToUnixTimeSeconds() ?? 0,
            Revision = e.Revision,
            OutagePool = e.OutagePool,
        };
        p.Selectors.AddRange(e.Selectors.Select(s => s.ToProto()));
        p.DnsNames.AddRange(e.DnsNames);
        p.FederatesWith.AddRange(e.FederatesWith);
        return p;
    }

    /// <summary>The store form of a wire entry. Id and revision are kept (the store assigns them when empty).</summary>
    public static RegistrationEntry FromProto(Proto.Entry p) => new()
    {
        Id = p.Id,
        SpiffeId = p.SpiffeId,
        ParentId = p.ParentId,
        Selectors = p.Selectors.Select(EvidenceProto.FromProto).ToList(),
        X509TtlSeconds = p.X509TtlSeconds,
        JwtTtlSeconds = p.JwtTtlSeconds,
        DnsNames = [.. p.DnsNames],
        FederatesWith = [.. p.FederatesWith],
        Hint = p.Hint,
        Admin = p.Admin,
        ExpiresAt = p.ExpiresAtUnix == 0 ? null : DateTimeOffset.FromUnixTimeSeconds(p.ExpiresAtUnix),
        Revision = p.Revision,
        OutagePool = p.OutagePool,
    };
}
