using Grpc.Core;
using Grpc.Net.Client;
using Writ.Protocol;

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
        _channel = WorkloadApiChannel.ForSocket(socketPath);
        Client = new SpiffeWorkloadAPI.SpiffeWorkloadAPIClient(_channel);
    }

    public SpiffeWorkloadAPI.SpiffeWorkloadAPIClient Client { get; }

    public static Metadata Headers => WorkloadApiChannel.Headers;

    public void Dispose() => _channel.Dispose();
}
