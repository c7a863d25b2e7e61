using System.Globalization;
using Grpc.Core;
using Microsoft.AspNetCore.Connections.Features;
using Writ.Server.Hosting;

namespace Writ.Server.Api;

/// <summary>Who called the admin API, as the kernel reports it (SO_PEERCRED on the admin socket): the ledger's actor.</summary>
public static class AdminCaller
{
    /// <summary>"uid:1000" (the admin socket only admits the server's own uid and root); "admin" if the socket is not a Unix socket (tests).</summary>
    public static string Of(ServerCallContext context)
    {
        var socket = context.GetHttpContext().Features.Get<IConnectionSocketFeature>()?.Socket;
        return socket is not null && UnixPeer.TryGetUid(socket, out _, out var uid)
            ? "uid:" + uid.ToString(CultureInfo.InvariantCulture)
            : "admin";
    }
}
