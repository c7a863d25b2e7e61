using System.Buffers.Binary;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Grpc.Core;
using Grpc.Net.Client;
using Writ.Cli.CommandLine;
using Writ.Protocol.Admin;
using Writ.Protocol.Interop;
using Writ.Protocol.Errors;
using Writ.Server.Configuration;
using Writ.Server.Hosting;

namespace Writ.Cli.Admin;

/// <summary>
/// A gRPC channel to the server's admin API over its Unix socket, and the CLI's translation of gRPC errors. The admin
/// API hands out join tokens and the CA bundle, so the CLI talks only to a server it can trust: the socket file and the
/// directory holding it must belong to root or the caller (nobody else could have put a socket there), and the process
/// answering — as the kernel reports it (SO_PEERCRED), checked on every connection — must run as root or the caller.
/// </summary>
public sealed class AdminConnection : IDisposable
{
    public const string SocketEnvVar = "WRIT_ADMIN_SOCKET";

    private readonly GrpcChannel _channel;

    public AdminConnection(string socketPath)
    {
        SocketPath = Path.GetFullPath(socketPath);
        if (!File.Exists(SocketPath))
        {
            throw NotThere(SocketPath);
        }
        var me = UnixPeer.EffectiveUid;
        if (SocketTrust.CheckFile(SocketPath, me) is { } untrusted)
        {
            throw new CommandFailedException(untrusted, code: CliErrors.AdminSocketUntrusted);
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
                    if (SocketTrust.CheckPeer(socket, path, me) is { } refused)
                    {
                        throw new UntrustedServerException(refused);
                    }
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

    /// <summary>`--admin-socket`, else WRIT_ADMIN_SOCKET, else the well-known socket for this user (never the working directory).</summary>
    public static AdminConnection FromArgs(ParsedArgs args) => new(ResolveSocket(args.Get("admin-socket"), Environment.GetEnvironmentVariable(SocketEnvVar)));

    public static string ResolveSocket(string? flag, string? env) =>
        flag is { Length: > 0 } ? flag
        : env is { Length: > 0 } ? env
        : ServerConfigLoader.DefaultAdminSocket(UnixPeer.EffectiveUid, Environment.GetEnvironmentVariable("XDG_RUNTIME_DIR"))
          ?? throw new CommandFailedException($"no admin socket given and no default for a non-root user without XDG_RUNTIME_DIR: pass --admin-socket PATH or set {SocketEnvVar}", code: CliErrors.AdminSocket);

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
            ? new CommandFailedException($"permission denied reaching the admin socket '{socketPath}': run as the server's user (or root), or pass the socket of a server you may use", code: CliErrors.AdminSocket)
            : new CommandFailedException($"no admin socket at '{socketPath}': is 'writ server run' running? Pass --admin-socket or set {SocketEnvVar}", code: CliErrors.AdminSocket);

    /// <summary>
    /// A failed admin call as one command error: the server's own code and message when it sent one (the
    /// <c>writ-error-code</c> trailer or the detail's <c>WRIT-…:</c> prefix), else what the transport's failure means.
    /// </summary>
    public static CommandFailedException Translate(RpcException e, string socketPath) => WritStatus.Read(e) switch
    {
        ({ } code, var message) => new CommandFailedException(message, code: code),
        _ => e.StatusCode switch
        {
            StatusCode.Unimplemented => new CommandFailedException($"'{socketPath}' does not serve the Writ admin API (is it an agent's Workload API socket?): pass the server's admin socket with --admin-socket", code: CliErrors.NotAdminApi),
            StatusCode.Unavailable when FindUntrusted(e.Status.DebugException) is { } untrusted => new CommandFailedException(untrusted.Message, code: CliErrors.AdminSocketUntrusted),
            StatusCode.Unavailable when e.Status.DebugException is HttpRequestException or SocketException || e.Status.Detail.StartsWith("Error connecting", StringComparison.Ordinal)
                => new CommandFailedException($"cannot reach the Writ server on '{socketPath}' (permission denied or not running): run as the server's user, or check 'writ server run'", code: CliErrors.ServerUnreachable),
            StatusCode.Unavailable => new CommandFailedException($"server unavailable: {e.Status.Detail}", code: CliErrors.ServerUnreachable),
            StatusCode.Cancelled => new CommandFailedException("cancelled", code: CliErrors.Cancelled),
            _ => new CommandFailedException(e.Status.Detail.Length > 0 ? e.Status.Detail : $"server answered {e.StatusCode}", code: CliErrors.ServerError),
        },
    };

    private static UntrustedServerException? FindUntrusted(Exception? e)
    {
        for (; e is not null; e = e.InnerException)
        {
            if (e is UntrustedServerException u)
            {
                return u;
            }
        }
        return null;
    }

    public void Dispose() => _channel.Dispose();

    /// <summary>Raised inside the connect callback when the process behind the socket is not one to trust.</summary>
    private sealed class UntrustedServerException(string message) : IOException(message);
}

/// <summary>Who owns an admin socket, its directory and the process answering on it: root or the caller, nobody else.</summary>
internal static class SocketTrust
{
    private const int SIfMt = 0xF000;
    private const int SIfSock = 0xC000;
    private const int SIsVtx = 0x200;   // sticky: only a file's owner may remove or rename it
    private const int GroupOrOtherWrite = 0x12;

    /// <summary>Null when the socket file (links followed), and every directory a link or the file sits in, is safe to use.</summary>
    public static string? CheckFile(string path, int me)
    {
        var target = path;
        try
        {
            if (File.ResolveLinkTarget(path, returnFinalTarget: true) is { } t)
            {
                if (CheckDirectory(path, me) is { } linkDir)
                {
                    return linkDir;
                }
                target = t.FullName;
            }
        }
        catch (IOException e)
        {
            return $"cannot resolve the admin socket '{path}': {e.Message}";
        }
        if (!Stat(target, out var uid, out var mode))
        {
            return $"cannot read the owner of the admin socket '{target}': pass the server's --admin-socket";
        }
        if ((mode & SIfMt) != SIfSock)
        {
            return $"'{target}' is not a Unix socket: pass the server's --admin-socket";
        }
        if (uid != 0 && uid != me)
        {
            return $"refusing the admin socket '{target}': it belongs to uid {uid}, not to root or you (uid {me}); another user's server would answer";
        }
        return CheckDirectory(target, me);
    }

    private static string? CheckDirectory(string path, int me)
    {
        var dir = Path.GetDirectoryName(path) ?? "/";
        if (!Stat(dir, out var uid, out var mode))
        {
            return $"cannot read the owner of '{dir}': pass the server's --admin-socket";
        }
        if (uid != 0 && uid != me)
        {
            return $"refusing the admin socket '{path}': its directory '{dir}' belongs to uid {uid}, not to root or you (uid {me})";
        }
        if ((mode & GroupOrOtherWrite) != 0 && (mode & SIsVtx) == 0)
        {
            return $"refusing the admin socket '{path}': its directory '{dir}' is writable by other users, who could replace the socket";
        }
        return null;
    }

    /// <summary>Null when the process listening on <paramref name="socket"/> runs as root or as the caller (SO_PEERCRED).</summary>
    public static string? CheckPeer(Socket socket, string path, int me)
    {
        if (!UnixPeer.TryGetUid(socket, out var pid, out var uid))
        {
            return $"cannot read the credentials of the server on '{path}' (SO_PEERCRED): refusing to talk to it";
        }
        return uid == 0 || uid == me ? null
            : $"refusing the server on '{path}': it runs as uid {uid} (pid {pid}), not as root or you (uid {me}); it could hand out its own CA and tokens";
    }

    private static bool Stat(string path, out int uid, out int mode)
    {
        // statx has one layout on every architecture (struct stat does not): stx_uid at 20, stx_mode at 28.
        Span<byte> buf = stackalloc byte[256];
        uid = mode = -1;
        if (Libc.Statx(Libc.AtFdCwd, path, Libc.AtSymlinkNoFollow, StatxBasicStats, buf) != 0)
        {
            return false;
        }
        uid = (int)BinaryPrimitives.ReadUInt32LittleEndian(buf[20..]);
        mode = BinaryPrimitives.ReadUInt16LittleEndian(buf[28..]);
        return true;
    }

    private const uint StatxBasicStats = 0x7ff;
}
