using System.Net.Sockets;
using Grpc.Core;
using Grpc.Net.Client;
using Writ.Cli.CommandLine;
using Writ.Protocol.Admin;

namespace Writ.Cli.Admin;

/// <summary>A gRPC channel to the server's admin API over its Unix socket, and the CLI's translation of gRPC errors.</summary>
public sealed class AdminConnection : IDisposable
{
    public const string SocketEnvVar = "WRIT_ADMIN_SOCKET";
    public const string DefaultSocket = ".writ/server/admin.sock";

    private readonly GrpcChannel _channel;

    public AdminConnection(string socketPath)
    {
        SocketPath = Path.GetFullPath(socketPath);
        if (!File.Exists(SocketPath))
        {
            throw NotThere(SocketPath);
        }
        var path = SocketPath;
        var handler = new SocketsHttpHandler
        {
            ConnectCallback = async (_, ct) =>
            {
                var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                try
                {
                    await socket.ConnectAsync(new UnixDomainSocketEndPoint(path), ct).ConfigureAwait(false);
                    return new NetworkStream(socket, ownsSocket: true);
                }
                catch
                {
                    socket.Dispose();
                    throw;
                }
            },
        };
        _channel = GrpcChannel.ForAddress("http://localhost", new GrpcChannelOptions
        {
            HttpHandler = handler,
            MaxReceiveMessageSize = 64 << 20,
            MaxSendMessageSize = 64 << 20,
        });
        Client = new AdminService.AdminServiceClient(_channel);
    }

    public string SocketPath { get; }

    public AdminService.AdminServiceClient Client { get; }

    public static AdminConnection FromArgs(ParsedArgs args) =>
        new(args.Get("admin-socket") ?? Environment.GetEnvironmentVariable(SocketEnvVar) ?? DefaultSocket);

    /// <summary>Runs one admin call, turning gRPC failures into one-line command errors.</summary>
    public async Task<T> CallAsync<T>(Func<AdminService.AdminServiceClient, AsyncUnaryCall<T>> call)
    {
        try
        {
            return await call(Client).ConfigureAwait(false);
        }
        catch (RpcException e)
        {
            throw Translate(e, SocketPath);
        }
    }

    /// <summary>
    /// Why the socket file is not there: absent, or hidden by a directory above it this user may not search (File.Exists
    /// says false for both).
    /// </summary>
    private static CommandFailedException NotThere(string socketPath) =>
        !UnixFile.TryStat(socketPath, out _, out _, out var errno) && errno == UnixFile.EAcces
            ? new CommandFailedException($"permission denied reaching the admin socket '{socketPath}': run as the server's user (or root), or pass the socket of a server you may use")
            : new CommandFailedException($"no admin socket at '{socketPath}': is 'writ server run' running? Pass --admin-socket or set {SocketEnvVar}");

    public static CommandFailedException Translate(RpcException e, string socketPath) => e.StatusCode switch
    {
        StatusCode.Unimplemented => new CommandFailedException($"'{socketPath}' does not serve the Writ admin API (is it an agent's Workload API socket?): pass the server's admin socket with --admin-socket"),
        StatusCode.Unavailable when e.Status.DebugException is HttpRequestException or SocketException || e.Status.Detail.StartsWith("Error connecting", StringComparison.Ordinal)
            => new CommandFailedException($"cannot reach the Writ server on '{socketPath}' (permission denied or not running): run as the server's user, or check 'writ server run'"),
        StatusCode.Unavailable => new CommandFailedException($"server unavailable: {e.Status.Detail}"),
        StatusCode.Cancelled => new CommandFailedException("cancelled"),
        _ => new CommandFailedException(e.Status.Detail.Length > 0 ? e.Status.Detail : $"server answered {e.StatusCode}"),
    };

    public void Dispose() => _channel.Dispose();
}
