using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Hosting;
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
using Writ.Protocol;
using Writ.Protocol.Hosting;
using Writ.Protocol.Telemetry;
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
    private readonly StartupResources _held;

    private WritServerHost(WebApplication app, ServerContext server, StartupResources held)
    {
        _app = app;
        _server = server;
        _held = held;
    }

    public ServerContext Server => _server;

    /// <summary>host:port the agent API actually listens on (useful with port 0).</summary>
    public string AgentApiAddress { get; private set; } = "";

    /// <summary>This server's id among those sharing the store (<see cref="ServerIdFile"/>).</summary>
    public string ServerId { get; private set; } = "";

    /// <summary>host:port of /metrics, /healthz and /readyz, or null without <c>metrics_bind</c>.</summary>
    public string? MetricsAddress { get; private set; }

    /// <summary>host:port of the SPIFFE bundle endpoint, or null without <c>federation.bundle_endpoint.bind</c>.</summary>
    public string? BundleEndpointAddress => _bundleEndpoint?.Address.ToString();

    private Federation.BundleEndpoint? _bundleEndpoint;

    public static async Task<WritServerHost> StartAsync(ServerOptions options, TimeProvider time, Action<ILoggingBuilder> logging, CancellationToken ct)
    {
        // Order matters: everything that can be refused (another server on this data dir or database, the port, the
        // admin socket, another trust domain's data) is checked before a key, a CA or a database is created.
        var held = new StartupResources();
        try
        {
            held.DataDirLock = LockDataDir(options.DataDir);
            var (serverId, idCreated) = ServerIdFile.Load(options.DataDir);
            held.StoreLock = LockSqliteFile(options);
            held.AdminSocket = ListenAdminSocket(options.AdminSocket);
            (held.AgentApiHandle, var agentApi) = ListenAgentApi(options.Bind);
            held.Telemetry = TelemetryEndpoint.Bind(options.MetricsBind, StartupCodes.MetricsBind);
            // A node attestor's trust anchors are checked before anything is created (ServerContext loads them again).
            foreach (var anchor in options.X509Pop?.LoadCaBundle() ?? [])
            {
                anchor.Dispose();
            }
            using var bootLogs = LoggerFactory.Create(logging);
            var store = await WritStoreFactory.OpenAsync(options.StoreKind, options.StoreConnection, time, ct).ConfigureAwait(false);
            held.Store = store;
            await BindTrustDomainAsync(store, options, ct).ConfigureAwait(false);
            IKeyManager keys = options.KeyManager == "memory"
                ? new MemoryKeyManager()
                : new DiskKeyManager(Path.Combine(options.DataDir, "keys.json"));
            var ca = new WritCa(options.TrustDomain, options.Ca with { ServerId = serverId }, keys, store, time, bootLogs.CreateLogger<WritCa>());
            await ca.InitializeAsync(ct).ConfigureAwait(false);
            if (idCreated)
                ServerIdFile.Persist(options.DataDir, serverId);   // only now: a refused start leaves the data dir as it was
            ServerLog.ServerIdentity(bootLogs.CreateLogger<WritServerHost>(), serverId, idCreated ? "new" : "kept", ca.JournalName);
            // A fresh nonce per process, checked by every heartbeat (issue #16): a second live process with this server id
            // (a copied data dir) overwrites it, and both stop issuing. A restart after kill -9 just replaces the dead one's.
            var bootNonce = Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(16));
            await store.Servers.StartedAsync(new ServerRecord(serverId, agentApi.ToString(), time.GetUtcNow(), time.GetUtcNow()) { BootNonce = bootNonce }, ct).ConfigureAwait(false);
            await AdminApi.InstallDefaultPolicyAsync(store, bootLogs.CreateLogger<AdminApi>(), ct).ConfigureAwait(false);

            var builder = WebApplication.CreateSlimBuilder();
            builder.Logging.ClearProviders();
            logging(builder.Logging);
            builder.Services.AddSingleton(time);
            // SIGTERM: sync streams end at once (ServerContext.Stopping); other calls get the grace, then are cut.
            builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = options.ShutdownGrace);
            builder.Services.AddGrpc(o =>
            {
                o.Interceptors.Add<Telemetry.TraceContextInterceptor>();
                o.EnableDetailedErrors = false;
                o.MaxReceiveMessageSize = 16 << 20;
                o.MaxSendMessageSize = 16 << 20;
            })
                // One error interceptor per API: each maps its service's exceptions to gRPC status with their codes.
                .AddServiceOptions<AgentApi>(o => o.Interceptors.Add<ErrorTranslationInterceptor>())
                .AddServiceOptions<AdminApi>(o => o.Interceptors.Add<ErrorTranslationInterceptor>())
                .AddServiceOptions<Ci.CiApi>(o => o.Interceptors.Add<ErrorTranslationInterceptor>());
            builder.Services.AddSingleton<ServerContext>(sp => new ServerContext(options, store, ca, time, sp.GetRequiredService<ILoggerFactory>())
            {
                Metrics = new Telemetry.WritServerMetrics(sp.GetService<System.Diagnostics.Metrics.IMeterFactory>()),
                BootNonce = bootNonce,
            });
            builder.Services.AddSingleton(sp => sp.GetRequiredService<ServerContext>().Oidc);
            builder.Services.AddSingleton(sp =>
            {
                var server = sp.GetRequiredService<ServerContext>();
                var log = sp.GetRequiredService<ILogger<Ci.CiLogins>>();
                return new Ci.CiLogins(server, sp.GetRequiredService<Oidc.IOidcTokenValidator>(), new Issuance.IssuancePipeline(server, log), log);
            });
            AddBackgroundLoops(builder.Services, options);
            ILogger peerLog = Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance;   // set once the app is built
            var tls = new ServerTlsCertificate(ca, options.ServerId, options.AgentTtl, time);
            builder.WebHost.ConfigureKestrel(k =>
            {
                k.AddServerHeader = false;
                k.ListenHandle(held.AgentApiHandle.Value, lo =>
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
                k.ListenHandle(held.AdminSocket.Handle, lo =>
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
                var agent = path.StartsWith("/writ.agent.", StringComparison.Ordinal) || path.StartsWith("/writ.ci.", StringComparison.Ordinal);
                if ((admin && !onUnix) || (agent && onUnix) || (!admin && !agent))
                {
                    http.Response.StatusCode = StatusCodes.Status404NotFound;
                    return;
                }
                await next(http).ConfigureAwait(false);
            });
            app.MapGrpcService<AgentApi>();
            app.MapGrpcService<AdminApi>();
            app.MapGrpcService<Ci.CiApi>();
            // The issuance policy is loaded before the first call can arrive.
            var context = app.Services.GetRequiredService<ServerContext>();
            await context.Policy.RefreshAsync(ct).ConfigureAwait(false);
            // The deny list is loaded before the first call is served: an agent presenting a revoked SVID right after a
            // restart must be refused, not raced.
            await context.Revocations.EnsureCurrentAsync(-1, ct).ConfigureAwait(false);
            await context.FederatedBundles.ReloadAsync(ct).ConfigureAwait(false);
            context.Checkpoints.Initialize();
            // The bundle endpoint (federation) before the agent API opens: a refused bind or certificate stops the start-up.
            var bundleEndpoint = options.BundleEndpoint is { } endpointOptions
                ? await Federation.BundleEndpoint.StartAsync(endpointOptions, context, tls, app.Services.GetRequiredService<ILoggerFactory>(), ct).ConfigureAwait(false)
                : null;
            held.HandedOver = true;   // from here Kestrel owns (and closes) the listening descriptors
            await app.StartAsync(ct).ConfigureAwait(false);

            var host = new WritServerHost(app, app.Services.GetRequiredService<ServerContext>(), held);
            host.AgentApiAddress = agentApi.ToString();
            host.ServerId = serverId;
            host.MetricsAddress = held.Telemetry.Address?.ToString();
            host._bundleEndpoint = bundleEndpoint;
            await held.Telemetry.StartAsync(Telemetry.ServerReadiness.Sources, c => Telemetry.ServerReadiness.CheckAsync(context, c), ct).ConfigureAwait(false);
            var log = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger<WritServerHost>();
            ca.BundleChanged += b =>
            {
                ServerLog.BundleChanged(log, b.Sequence ?? 0);
                host._server.Announce(Writ.Server.Sync.ChangeKinds.Bundle);
            };
            // Another server announced a bundle change (NOTIFY): reload now instead of at the bundle watch's next tick.
            context.BundleChangedElsewhere += () => _ = ReloadAnnouncedBundleAsync(context, log);
            context.ListenForAnnouncements();
            if (options.SharedSyncFeed)
                context.SyncFeed.EnsureStarted();
            ServerLog.Ready(log, options.TrustDomain.Name, host.AgentApiAddress, options.AdminSocket, store.Kind);
            return host;
        }
        catch
        {
            await held.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>
    /// One server per data dir, held until the process exits (the kernel drops it even on SIGKILL). The data dir must be
    /// ours alone (created 0700); the lock is a file in it (<see cref="ExclusiveLock.DataDirLockFile"/>), not the dir.
    /// </summary>
    private static ExclusiveLock LockDataDir(string dataDir)
    {
        var unsafeReason = PrivateDirectory.Ensure(dataDir);
        if (unsafeReason is not null)
        {
            throw new StartupRefusedException(StartupCodes.DataDirUnsafe, $"refusing the data dir: {unsafeReason}");
        }
        return TryLock(Path.Combine(dataDir, ExclusiveLock.DataDirLockFile), StartupCodes.DataDirUnsafe) ?? throw new StartupRefusedException(StartupCodes.DataDirInUse,
            $"the data dir '{dataDir}' is in use by another running Writ server: stop it first (one server per data dir)");
    }

    /// <summary>
    /// One server per SQLite file, whatever its data dir or admin socket (servers share a store only on PostgreSQL):
    /// a sidecar '&lt;db&gt;.lock' (0600), never the database file itself, which readers may open. Null when the store
    /// is not SQLite.
    /// </summary>
    private static ExclusiveLock? LockSqliteFile(ServerOptions options)
    {
        if (options.StoreKind != "sqlite" || Directory.Exists(options.StoreConnection))
        {
            return null;   // a directory is refused by the store itself, with what to do
        }
        var dir = Path.GetDirectoryName(Path.GetFullPath(options.StoreConnection))!;
        Directory.CreateDirectory(dir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        return TryLock(options.StoreConnection + ".lock", StartupCodes.StoreLockUnsafe) ?? throw new StartupRefusedException(StartupCodes.StoreInUse,
            $"the SQLite database '{options.StoreConnection}' is in use by another running Writ server (with another data dir or admin socket): stop it first; servers share a store only on PostgreSQL");
    }

    /// <summary>A lock file that is a symlink or another user's is refused with <paramref name="unsafeCode"/>.</summary>
    private static ExclusiveLock? TryLock(string lockFile, string unsafeCode)
    {
        try
        {
            return ExclusiveLock.TryAcquire(lockFile);
        }
        catch (IOException e)
        {
            throw new StartupRefusedException(unsafeCode, e.Message);
        }
    }

    /// <summary>Refuses to take over a socket another live server answers on; removes one left by a crash.</summary>
    private static OwnedUnixSocket ListenAdminSocket(string path)
    {
        if (!UnixSocketFile.TryPrepare(path))
        {
            throw new StartupRefusedException(StartupCodes.AdminSocketInUse,
                $"another Writ server is already listening on admin socket '{path}': stop it, or give this one another --admin-socket and --data-dir");
        }
        return UnixSocketFile.Listen(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
    }

    private static (ulong Handle, IPEndPoint Bound) ListenAgentApi(IPEndPoint bind)
    {
        try
        {
            return ListenerHandle.ListenTcp(bind);
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.AddressAlreadyInUse)
        {
            throw new StartupRefusedException(StartupCodes.PortInUse,
                $"cannot listen on {bind}: the address is already in use; stop the process using it or choose another --bind");
        }
        catch (SocketException e)
        {
            throw new StartupRefusedException(StartupCodes.BindFailed, $"cannot listen on {bind}: {e.Message}; choose another --bind");
        }
    }

    /// <summary>
    /// The data belongs to the trust domain recorded at its first start (or, for data from before it was recorded, to
    /// the trust domain of its CA): a server configured for another is refused before it writes anything.
    /// </summary>
    private static async Task BindTrustDomainAsync(IWritStore store, ServerOptions options, CancellationToken ct)
    {
        var configured = options.TrustDomain.Name;
        var recorded = await store.Metadata.GetAsync(TrustDomainKey, ct).ConfigureAwait(false)
            ?? (await WritCa.JournalTrustDomainAsync(store, ct).ConfigureAwait(false))?.Name;
        if (recorded is null)
        {
            recorded = await store.Metadata.SetIfAbsentAsync(TrustDomainKey, configured, ct).ConfigureAwait(false);
        }
        else if (recorded == configured)
        {
            await store.Metadata.SetIfAbsentAsync(TrustDomainKey, configured, ct).ConfigureAwait(false);
        }
        if (recorded != configured)
        {
            throw new StartupRefusedException(StartupCodes.TrustDomainMismatch,
                $"the data in {Describe(options)} belongs to trust domain {recorded}, not {configured}: start with --trust-domain {recorded}, or give {configured} its own --data-dir and store");
        }
    }

    private static string Describe(ServerOptions o) => o.StoreKind == "sqlite" ? $"'{o.StoreConnection}'" : "the PostgreSQL store";

    /// <summary>Store metadata key of the trust domain the data belongs to.</summary>
    public const string TrustDomainKey = "trust_domain";

    /// <summary>
    /// The server's background loops, each a hosted service started with the app (after the deny list, the policy and
    /// the checkpoints are loaded) and stopped with it: the revocation watch, CA rotation and store pruning, policy
    /// reload, ledger checkpoints (one more on the way out), node rechecks (continuous attestation). A failure is logged and the loop restarted with backoff.
    /// </summary>
    private static void AddBackgroundLoops(IServiceCollection services, ServerOptions options)
    {
        services.AddSingleton(Random.Shared);   // the one source of jitter (thread-safe)
        services.AddSingleton<IHostedService>(sp =>
        {
            var server = sp.GetRequiredService<ServerContext>();
            return new Revocation.RevocationWatcher(server.Revocations, server.Store, server.Time, sp.GetRequiredService<Random>(),
                sp.GetRequiredService<ILogger<Revocation.RevocationWatcher>>(), server.OtherServersCrls, () => server.Announce(Sync.ChangeKinds.Crl), server.Changes);
        });
        services.AddSingleton<IHostedService>(sp =>
        {
            var server = sp.GetRequiredService<ServerContext>();
            var log = sp.GetRequiredService<ILogger<WritCa>>();
            return new LoopService("ca rotation", ct => RotateLoopAsync(server, log, ct), LoopFailurePolicy.Restart, server.Time, sp.GetRequiredService<Random>(), log);
        });
        services.AddSingleton<IHostedService>(sp =>
        {
            var server = sp.GetRequiredService<ServerContext>();
            var log = sp.GetRequiredService<ILogger<WritCa>>();
            return new LoopService("bundle watch", ct => BundleWatchLoopAsync(server, log, ct), LoopFailurePolicy.Restart, server.Time, sp.GetRequiredService<Random>(), log);
        });
        services.AddSingleton<IHostedService>(sp =>
        {
            var server = sp.GetRequiredService<ServerContext>();
            return new LoopService("ci session sweep", sp.GetRequiredService<Ci.CiLogins>().RunAsync, LoopFailurePolicy.Restart, server.Time,
                sp.GetRequiredService<Random>(), sp.GetRequiredService<ILogger<Ci.CiLogins>>());
        });
        services.AddSingleton<IHostedService>(sp =>
        {
            var server = sp.GetRequiredService<ServerContext>();
            return new LoopService("policy reload", server.Policy.RunAsync, LoopFailurePolicy.Restart, server.Time, sp.GetRequiredService<Random>(),
                sp.GetRequiredService<ILogger<Policy.IssuancePolicyEngine>>());
        });
        services.AddSingleton<IHostedService>(sp =>
        {
            var server = sp.GetRequiredService<ServerContext>();
            return new LoopService("ledger checkpoints", ct => server.Checkpoints.RunAsync(options.Ledger.CheckpointInterval, ct), LoopFailurePolicy.Restart,
                server.Time, sp.GetRequiredService<Random>(), sp.GetRequiredService<ILogger<Ledger.LedgerCheckpointer>>());
        });
        services.AddSingleton<IHostedService>(sp =>
        {
            var server = sp.GetRequiredService<ServerContext>();
            return new LoopService("federated bundles", ct => server.FederatedBundles.RunAsync(TimeSpan.FromSeconds(30), ct), LoopFailurePolicy.Restart,
                server.Time, sp.GetRequiredService<Random>(), sp.GetRequiredService<ILogger<Federation.FederatedBundleCache>>());
        });
        services.AddSingleton<IHostedService>(sp =>
        {
            var server = sp.GetRequiredService<ServerContext>();
            return new LoopService("federation refresh", server.BundleRefresher.RunAsync, LoopFailurePolicy.Restart,
                server.Time, sp.GetRequiredService<Random>(), sp.GetRequiredService<ILogger<Federation.BundleRefresher>>());
        });
        services.AddSingleton<IHostedService>(sp =>
        {
            var server = sp.GetRequiredService<ServerContext>();
            return new LoopService("node rechecks", server.Posture.RunAsync, LoopFailurePolicy.Restart, server.Time, sp.GetRequiredService<Random>(),
                sp.GetRequiredService<ILogger<NodeAttestation.NodePostureService>>());
        });
    }

    /// <summary>The background loops (hosted services) of this server.</summary>
    public IReadOnlyList<GuardedBackgroundService> Loops => [.. _app.Services.GetServices<IHostedService>().OfType<GuardedBackgroundService>()];

    private static async Task RotateLoopAsync(ServerContext server, ILogger log, CancellationToken stop)
    {
        using var timer = new PeriodicTimer(server.Options.RotationInterval, server.Time);
        while (await timer.WaitForNextTickAsync(stop).ConfigureAwait(false))
        {
            try
            {
                await server.Ca.RotateAsync(stop).ConfigureAwait(false);
                await HeartbeatAsync(server, log, stop).ConfigureAwait(false);
                await server.Store.JoinTokens.PruneAsync(server.Time.GetUtcNow() - TimeSpan.FromDays(1), stop).ConfigureAwait(false);
                // Agents offline longer than this get a full state (reset) instead of a delta when they return.
                await server.Store.Entries.PruneTombstonesAsync(server.Time.GetUtcNow() - TimeSpan.FromDays(7), stop).ConfigureAwait(false);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                ServerLog.RotationFailed(log, e, e.Message);
            }
        }
    }

    /// <summary>The server's heartbeat in the servers table (issue #16); a failure is logged, never fails the pass.</summary>
    private static async Task HeartbeatAsync(ServerContext server, ILogger log, CancellationToken stop)
    {
        if (server.Ca.ServerId is not { } id)
        {
            return;
        }
        try
        {
            if (!await server.Store.Servers.HeartbeatAsync(id, server.BootNonce, server.Time.GetUtcNow(), stop).ConfigureAwait(false)
                && server.Ca.Halt(CaException.DuplicateServerId, $"another live server process has this server id {id} (its data dir was copied, keys and all): this one issues nothing until it is restarted alone; give every server its own data dir (never a copy), stop the copy, then restart this one"))
            {
                ServerLog.DuplicateServerId(log, CaException.DuplicateServerId, id);
            }
        }
        catch (StoreException e)
        {
            ServerLog.ServerHeartbeatFailed(log, e.Message);
        }
    }

    /// <summary>How often the stored bundle's sequence is checked for a change made by another server.</summary>
    public static readonly TimeSpan BundleWatchInterval = TimeSpan.FromSeconds(1);

    /// <summary>
    /// A bundle change made by another server reaches this one: one row read a second, and the new bundle (with that
    /// server's intermediates) when its sequence moved; <see cref="WritCa.BundleChanged"/> then pushes it to the agents.
    /// </summary>
    private static async Task BundleWatchLoopAsync(ServerContext server, ILogger log, CancellationToken stop)
    {
        using var timer = new PeriodicTimer(BundleWatchInterval, server.Time);
        while (await timer.WaitForNextTickAsync(stop).ConfigureAwait(false))
        {
            try
            {
                await server.Ca.ReloadBundleAsync(stop).ConfigureAwait(false);
            }
            catch (Exception e) when (e is StoreException or CaException)
            {
                ServerLog.BundleReloadFailed(log, e.Message);
            }
        }
    }

    private static async Task ReloadAnnouncedBundleAsync(ServerContext server, ILogger log)
    {
        try
        {
            await server.Ca.ReloadBundleAsync(server.Stopping).ConfigureAwait(false);
        }
        catch (Exception e) when (e is StoreException or CaException)
        {
            ServerLog.BundleReloadFailed(log, e.Message);
        }
        catch (OperationCanceledException)
        {
            // Stopping.
        }
    }

    public Task WaitForShutdownAsync(CancellationToken ct) => _app.WaitForShutdownAsync(ct);

    public async ValueTask DisposeAsync()
    {
        var log = _app.Services.GetRequiredService<ILoggerFactory>().CreateLogger<WritServerHost>();
        ServerLog.Stopping(log);
        // Nothing signs or streams from here: sync streams end (agents reconnect elsewhere), the CRL is no longer signed.
        _server.BeginStop();
        if (_bundleEndpoint is not null)
        {
            await _bundleEndpoint.DisposeAsync().ConfigureAwait(false);
        }
        var loops = Loops;
        // The listeners close (calls get the grace), then every background loop is stopped; the store is closed only
        // once each loop is over — the checkpointer's last checkpoint included — even if the grace ran out meanwhile.
        await _app.StopAsync(CancellationToken.None).ConfigureAwait(false);
        await Task.WhenAll(loops.Select(l => l.Completion)).ConfigureAwait(false);
        await FlushSuppressedDenialsAsync(log).ConfigureAwait(false);
        await _app.DisposeAsync().ConfigureAwait(false);
        await _server.Policy.DisposeAsync().ConfigureAwait(false);
        _server.Checkpoints.Dispose();
        // Then the socket file (only if still ours) and, last, the locks: a new server may start only once this one is gone.
        await _held.DisposeAsync().ConfigureAwait(false);
    }

    /// <summary>The denials.suppressed summaries of windows still open, so no count of refusals left out is lost at shutdown.</summary>
    private async Task FlushSuppressedDenialsAsync(ILogger log)
    {
        try
        {
            await new Issuance.IssuancePipeline(_server, log).FlushSuppressedDenialsAsync(all: true, CancellationToken.None).ConfigureAwait(false);
        }
        catch (Storage.StoreUnavailableException)
        {
            // Logged by the pipeline (LedgerWriteFailed); the server stops anyway.
        }
    }

    /// <summary>What a start-up holds, released in reverse on failure or at the end of the run.</summary>
    private sealed class StartupResources : IAsyncDisposable
    {
        public ExclusiveLock? DataDirLock { get; set; }
        public ExclusiveLock? StoreLock { get; set; }
        public OwnedUnixSocket? AdminSocket { get; set; }
        public ulong? AgentApiHandle { get; set; }
        public IWritStore? Store { get; set; }
        public TelemetryEndpoint? Telemetry { get; set; }
        public bool HandedOver { get; set; }

        public async ValueTask DisposeAsync()
        {
            if (Telemetry is not null)
            {
                await Telemetry.DisposeAsync().ConfigureAwait(false);
            }
            if (Store is not null)
            {
                await Store.DisposeAsync().ConfigureAwait(false);
            }
            if (!HandedOver)
            {
                if (AgentApiHandle is { } h)
                {
                    ListenerHandle.Close(h);
                }
                if (AdminSocket is not null)
                {
                    ListenerHandle.Close(AdminSocket.Handle);
                }
            }
            AdminSocket?.RemoveIfOwned();
            StoreLock?.Dispose();
            DataDirLock?.Dispose();
        }
    }
}

/// <summary>Stable codes of refused start-ups (docs/cli.md lists them).</summary>
public static class StartupCodes
{
    public const string DataDirInUse = "WRIT-SERVER-DATA-DIR-IN-USE";
    public const string DataDirUnsafe = "WRIT-SERVER-DATA-DIR-UNSAFE";
    public const string StoreInUse = "WRIT-SERVER-STORE-IN-USE";
    public const string StoreLockUnsafe = "WRIT-SERVER-STORE-LOCK-UNSAFE";
    public const string AdminSocketInUse = "WRIT-SERVER-ADMIN-SOCKET-IN-USE";
    public const string PortInUse = "WRIT-SERVER-PORT-IN-USE";
    public const string BindFailed = "WRIT-SERVER-BIND-FAILED";
    public const string TrustDomainMismatch = "WRIT-SERVER-TRUST-DOMAIN-MISMATCH";
    public const string MetricsBind = "WRIT-SERVER-METRICS-BIND";
}
