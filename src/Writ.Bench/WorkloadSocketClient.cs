using System.Net.Sockets;
using Grpc.Core;
using Grpc.Net.Client;

namespace Writ.Bench;

/// <summary>
/// A SPIFFE Workload API client on a Unix socket, the client stack any workload uses (and `writ workload` does): one
/// HTTP/2 connection per client, every call with <c>workload.spiffe.io: true</c>. The benches talk only to sockets of
/// their own (their agent's, their no-op service's), so there is nothing to resolve and no error to translate.
/// </summary>
internal sealed class WorkloadSocketClient : IDisposable
{
    private readonly GrpcChannel _channel;

    public WorkloadSocketClient(string socketPath)
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
        _channel = GrpcChannel.ForAddress("http://localhost", new GrpcChannelOptions { HttpHandler = handler, MaxReceiveMessageSize = 64 << 20 });
        Client = new SpiffeWorkloadAPI.SpiffeWorkloadAPIClient(_channel);
    }

    public SpiffeWorkloadAPI.SpiffeWorkloadAPIClient Client { get; }

    public static Metadata Headers { get; } = new() { { "workload.spiffe.io", "true" } };

    public void Dispose() => _channel.Dispose();
}
