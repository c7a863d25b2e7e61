using System.Security.Cryptography;
using Grpc.Core;
using Writ.Protocol.Admin;
using Writ.Server.Ca;
using Writ.Server.Ca.Journal;

namespace Writ.Server.Api;

/// <summary>The servers sharing the store (issue #16): <c>writ server list</c>.</summary>
public sealed partial class AdminApi
{
    /// <summary>
    /// Every server recorded in the store, with the authorities of its CA journal (as this server last read them: at most a
    /// rotation pass or a bundle change old): SHA-256 of each X.509 authority's certificate and each JWT key's kid.
    /// </summary>
    public override async Task<ListServersResponse> ListServers(ListServersRequest request, ServerCallContext context)
    {
        var rows = await server.Store.Servers.ListAsync(context.CancellationToken).ConfigureAwait(false);
        var journals = server.Ca.Journals.ToDictionary(j => j.Name, j => j.Journal, StringComparer.Ordinal);
        var response = new ListServersResponse();
        foreach (var row in rows)
        {
            var info = new ServerInfo
            {
                ServerId = row.ServerId,
                Address = row.Address,
                StartedAtUnix = row.StartedAt.ToUnixTimeSeconds(),
                LastSeenUnix = row.LastSeen.ToUnixTimeSeconds(),
            };
            if (journals.TryGetValue(CaJournalStore.ServerPrefix + row.ServerId, out var journal))
            {
                info.X509Authorities.AddRange(journal.X509.Select(a => Convert.ToHexStringLower(SHA256.HashData(Convert.FromBase64String(a.ChainDerBase64[0])))));
                info.JwtKeyIds.AddRange(journal.Jwt.Select(a => a.Kid));
            }
            response.Servers.Add(info);
        }
        return response;
    }
}
