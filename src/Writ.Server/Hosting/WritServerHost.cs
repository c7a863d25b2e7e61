using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Writ.Server.Api;
using Writ.Server.Ca;
using Writ.Server.Configuration;
using Writ.Server.Keys;
using Writ.Server.Storage;

namespace Writ.Server.Hosting;

/// <summary>
/// Composes and runs a Writ server: store, key manager, CA, the agent API (TLS on TCP) and the admin API (owner-only
/// Unix socket), plus the CA rotation loop. The CLI's <c>writ server run</c> and the tests both start it through here.
/// </summary>
public sealed class WritServerHost : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly ServerContext _server;
    private readonly CancellationTokenSource _stop = new();
    private Task? _rotation;
    private Task? _checkpoints;

    private WritServerHost(WebApplication app, ServerContext server)
    {
        _app = app;
        _server = server;
    }

    public ServerContext Server => _server;

    /// <summary>host:port the agent API actually listens on (useful with port 0).</summary>
    public string AgentApiAddress { get; private set; } = "";

    public static async Task<WritServerHost> StartAsync(ServerOptions options, TimeProvider time, Action<ILoggingBuilder> logging, CancellationToken ct)
    {
        Directory.CreateDirectory(options.DataDir);
        File.SetUnixFileMode(options.DataDir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        using var bootLogs = LoggerFactory.Create(logging);
        var store = await WritStoreFactory.OpenAsync(options.StoreKind, options.StoreConnection, time, ct).ConfigureAwait(false);
        try
        {
            IKeyManager keys = options.KeyManager == "memory"
                ? new MemoryKeyManager()
                : new DiskKeyManager(Path.Combine(options.DataDir, "keys.json"));
            var ca = new WritCa(options.TrustDomain, options.Ca, keys, store, time, bootLogs.CreateLogger<WritCa>());
            await ca.InitializeAsync(ct).ConfigureAwait(false);
            await AdminApi.InstallDefaultPolicyAsync(store, bootLogs.CreateLogger<AdminApi>(), ct).ConfigureAwait(false);
            PrepareAdminSocket(options.AdminSocket);

            var builder = WebApplication.CreateSlimBuilder();
            builder.Logging.ClearProviders();
            logging(builder.Logging);
            builder.Services.AddSingleton(time);
            builder.Services.AddGrpc(o =>
            {
                o.Interceptors.Add<ErrorTranslationInterceptor>();
                o.EnableDetailedErrors = false;
                o.MaxReceiveMessageSize = 16 << 20;
                o.MaxSendMessageSize = 16 << 20;
            });
            builder.Services.AddSingleton<ServerContext>(sp => new ServerContext(options, store, ca, time, sp.GetRequiredService<ILoggerFactory>()));
            ILogger peerLog = Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance;   // set once the app is built
            var tls = new ServerTlsCertificate(ca, options.ServerId, options.AgentTtl, time);
            builder.WebHost.ConfigureKestrel(k =>
            {
                k.AddServerHeader = false;
                k.Listen(options.Bind, lo =>
                {
                    lo.Protocols = HttpProtocols.Http2;
                    lo.UseHttps(new TlsHandshakeCallbackOptions
                    {
                        OnConnection = _ => ValueTask.FromResult(new SslServerAuthenticationOptions
                        {
                            ServerCertificateContext = tls.Current,
                            ClientCertificateRequired = true,
                            // Presence is optional (attestation has none); every call validates the SVID against the bundle.
                            RemoteCertificateValidationCallback = (_, _, _, _) => true,
                            EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
                            ApplicationProtocols = [SslApplicationProtocol.Http2],
                        }),
                    });
                });
                k.ListenUnixSocket(options.AdminSocket, lo =>
                {
                    lo.Protocols = HttpProtocols.Http2;
                    lo.Use(next => async conn =>
                    {
                        var socket = conn.Features.Get<IConnectionSocketFeature>()?.Socket;
                        var me = UnixPeer.EffectiveUid;
                        var uid = -1;
                        if (socket is null || !UnixPeer.TryGetUid(socket, out _, out uid) || (uid != me && uid != 0))
                        {
                            ServerLog.AdminPeerRefused(peerLog, uid, me);
                            conn.Abort();
                            return;
                        }
                        await next(conn).ConfigureAwait(false);
                    });
                });
            });
            var app = builder.Build();
            peerLog = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Writ.Server.AdminSocket");
            // Each API only on its own listener: the admin API never on TCP, the agent API never on the admin socket.
            app.Use(async (http, next) =>
            {
                var onUnix = http.Connection.LocalIpAddress is null;
                var path = http.Request.Path.Value ?? "";
                var admin = path.StartsWith("/writ.admin.", StringComparison.Ordinal);
                var agent = path.StartsWith("/writ.agent.", StringComparison.Ordinal);
                if ((admin && !onUnix) || (agent && onUnix) || (!admin && !agent))
                {
                    http.Response.StatusCode = StatusCodes.Status404NotFound;
                    return;
                }
                await next(http).ConfigureAwait(false);
            });
            app.MapGrpcService<AgentApi>();
            app.MapGrpcService<AdminApi>();
            // The issuance policy is loaded before the first call can arrive.
            var context = app.Services.GetRequiredService<ServerContext>();
            await context.Policy.StartAsync(ct).ConfigureAwait(false);
            // The deny list is loaded before the first call is served: an agent presenting a revoked SVID right after a
            // restart must be refused, not raced.
            await context.Revocations.EnsureCurrentAsync(-1, ct).ConfigureAwait(false);
            context.Checkpoints.Initialize();
            await app.StartAsync(ct).ConfigureAwait(false);
            File.SetUnixFileMode(options.AdminSocket, UnixFileMode.UserRead | UnixFileMode.UserWrite);

            var host = new WritServerHost(app, app.Services.GetRequiredService<ServerContext>());
            var addresses = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses ?? [];
            host.AgentApiAddress = addresses.Select(a => new Uri(a)).Where(u => u.Scheme == "https")
                .Select(u => $"{u.Host}:{u.Port}").FirstOrDefault() ?? options.Bind.ToString();
            var log = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger<WritServerHost>();
            ca.BundleChanged += b =>
            {
                ServerLog.BundleChanged(log, b.Sequence ?? 0);
                host._server.Changes.Raise();
            };
            host._rotation = host.RotateLoopAsync(log);
            host._checkpoints = context.Checkpoints.RunAsync(options.Ledger.CheckpointInterval, host._stop.Token);
            ServerLog.Ready(log, options.TrustDomain.Name, host.AgentApiAddress, options.AdminSocket, store.Kind);
            return host;
        }
        catch
        {
            await store.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Removes a stale socket file, but refuses to take over one another live server is answering on.</summary>
    private static void PrepareAdminSocket(string path)
    {
        if (!Writ.Protocol.UnixSocketFile.TryPrepare(path))
        {
            throw new InvalidOperationException($"another Writ server is already listening on admin socket '{path}': stop it, or give this one another --admin-socket and --data-dir");
        }
    }

    private async Task RotateLoopAsync(ILogger log)
    {
        using var timer = new PeriodicTimer(_server.Options.RotationInterval, _server.Time);
        try
        {
            while (await timer.WaitForNextTickAsync(_stop.Token).ConfigureAwait(false))
            {
                try
                {
                    await _server.Ca.RotateAsync(_stop.Token).ConfigureAwait(false);
                    await _server.Store.JoinTokens.PruneAsync(_server.Time.GetUtcNow() - TimeSpan.FromDays(1), _stop.Token).ConfigureAwait(false);
                    // Agents offline longer than this get a full state (reset) instead of a delta when they return.
                    await _server.Store.Entries.PruneTombstonesAsync(_server.Time.GetUtcNow() - TimeSpan.FromDays(7), _stop.Token).ConfigureAwait(false);
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    ServerLog.RotationFailed(log, e, e.Message);
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    public Task WaitForShutdownAsync(CancellationToken ct) => _app.WaitForShutdownAsync(ct);

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        if (_rotation is not null)
        {
            await _rotation.ConfigureAwait(false);
        }
        if (_checkpoints is not null)
        {
            await _checkpoints.ConfigureAwait(false);   // the last checkpoint, of the head as it is now
        }
        ServerLog.Stopping(_app.Services.GetRequiredService<ILoggerFactory>().CreateLogger<WritServerHost>());
        await _app.StopAsync(CancellationToken.None).ConfigureAwait(false);
        await _app.DisposeAsync().ConfigureAwait(false);
        await _server.Policy.DisposeAsync().ConfigureAwait(false);
        await _server.Store.DisposeAsync().ConfigureAwait(false);
        _server.Checkpoints.Dispose();
        try
        {
            File.Delete(_server.Options.AdminSocket);
        }
        catch (IOException)
        {
        }
        _stop.Dispose();
    }
}
