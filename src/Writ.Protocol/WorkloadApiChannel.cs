using System.Net.Sockets;
using Grpc.Core;
using Grpc.Net.Client;

namespace Writ.Protocol;

/// <summary>
/// The client side of the SPIFFE Workload API over a Unix socket, as any workload uses it: one HTTP/2 connection per
/// channel, every call with the <c>workload.spiffe.io: true</c> security header. Shared by `writ workload` and the benches.
/// </summary>
public static class WorkloadApiChannel
{
    /// <summary>The security header the SPIFFE Workload API requires on every call.</summary>
    public static Metadata Headers { get; } = new() { { "workload.spiffe.io", "true" } };

    /// <summary>A channel whose every connection is a new connection to <paramref name="socketPath"/>.</summary>
    public static GrpcChannel ForSocket(string socketPath)
    {
        var handler = new SocketsHttpHandler
        {
            ConnectCallback = async (_, ct) =>
            {
                var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                try
                {
                    await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), ct).ConfigureAwait(false);
                    return new NetworkStream(socket, ownsSocket: true);
                }
                catch
                {
                    socket.Dispose();
                    throw;
                }
            },
        };
        return GrpcChannel.ForAddress("http://localhost", new GrpcChannelOptions { HttpHandler = handler, MaxReceiveMessageSize = 64 << 20 });
    }
}
