using System.Net.Sockets;
using Grpc.Net.Client;

namespace Writ.Workload.AspNetCore;

/// <summary>
/// A gRPC channel to the local agent's socket (the Workload API's: <c>SPIFFE_ENDPOINT_SOCKET</c>, <c>unix:///path</c> or
/// <c>unix:/path</c>). The relying-party API lives beside the Workload API and wants the same
/// <c>workload.spiffe.io: true</c> header.
/// </summary>
internal static class AgentChannel
{
    public const string EndpointVariable = "SPIFFE_ENDPOINT_SOCKET";

    /// <summary>The Unix socket path of <paramref name="endpoint"/>, or null with a reason.</summary>
    public static string? SocketPath(string? endpoint, out string? error)
    {
        error = null;
        if (string.IsNullOrWhiteSpace(endpoint))
        {
            error = $"no agent endpoint: set {EndpointVariable} (unix:///run/writ/agent.sock) or WritCallAuthorizationOptions.Endpoint";
            return null;
        }
        if (endpoint.StartsWith('/'))
        {
            return endpoint;
        }
        if (Uri.TryCreate(endpoint, UriKind.Absolute, out var uri) && uri.Scheme == "unix" && uri.AbsolutePath.StartsWith('/') && string.IsNullOrEmpty(uri.Host))
        {
            return Uri.UnescapeDataString(uri.AbsolutePath);
        }
        error = $"agent endpoint '{endpoint}' is not a unix socket address: use unix:///path/to/agent.sock";
        return null;
    }

    public static GrpcChannel Create(string socketPath) =>
        GrpcChannel.ForAddress("http://localhost", new GrpcChannelOptions
        {
            HttpHandler = new SocketsHttpHandler
            {
                ConnectCallback = async (_, ct) =>
                {
                    var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                    try
                    {
                        await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), ct);
                        return new NetworkStream(socket, ownsSocket: true);
                    }
                    catch
                    {
                        socket.Dispose();
                        throw;
                    }
                },
                PooledConnectionIdleTimeout = Timeout.InfiniteTimeSpan,
                EnableMultipleHttp2Connections = false,
            },
            MaxReceiveMessageSize = 1024 * 1024,
        });
}
