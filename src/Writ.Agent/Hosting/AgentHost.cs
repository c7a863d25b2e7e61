using System.Net.Sockets;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Writ.Agent.Authz;
using Writ.Agent.Cache;
using Writ.Agent.Instances;
using Writ.Agent.NodeAttestation;
using Writ.Agent.PeerTracking;
using Writ.Agent.Sds;
using Writ.Agent.Sync;
using Writ.Agent.WorkloadApi;
using Writ.Agent.WorkloadAttestation;
using Writ.Protocol;
using Writ.Protocol.Hosting;
using Writ.Protocol.Telemetry;
using Writ.Agent.Telemetry;

namespace Writ.Agent.Hosting;

/// <summary>
/// Composes and runs a Writ agent: node identity (attest/resume, renew), the sync stream, the SVID cache and the
/// Workload API on a Unix socket. <see cref="Completion"/> ends with the reason when the agent must stop (banned,
/// evicted) — the CLI turns it into a clear message and a non-zero exit.
/// </summary>
public sealed class AgentHost : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly NodeIdentity _node;
    private readonly CancellationTokenSource _stop = new();
    private readonly TaskCompletionSource<string?> _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly ExclusiveLock _dataDirLock;
    private readonly OwnedUnixSocket _socket;
    private OwnedUnixSocket? _authzSocket;

    private AgentHost(WebApplication app, NodeIdentity node, ExclusiveLock dataDirLock, OwnedUnixSocket socket)
    {
        _app = app;
        _node = node;
        _dataDirLock = dataDirLock;
        _socket = socket;
    }

    /// <summary>Stable code of a start refused because another agent runs on the same data dir.</summary>
    public const string DataDirInUseCode = "WRIT-AGENT-DATA-DIR-IN-USE";

    /// <summary>Stable code of a start refused because the data dir is another user's or writable by others.</summary>
    public const string DataDirUnsafeCode = "WRIT-AGENT-DATA-DIR-UNSAFE";

    /// <summary>Stable code of a start refused because the metrics port is taken or cannot be bound.</summary>
    public const string MetricsBindCode = "WRIT-AGENT-METRICS-BIND";

    private TelemetryEndpoint? _telemetry;

    /// <summary>host:port of /metrics, /healthz and /readyz, or null without <c>metrics_bind</c>.</summary>
    public string? MetricsAddress => _telemetry?.Address?.ToString();

    /// <summary>Stable code of a start refused because another process serves on the Workload API socket.</summary>
    public const string SocketInUseCode = "WRIT-AGENT-SOCKET-IN-USE";

    public string AgentId => _node.AgentId?.ToString() ?? "";

    /// <summary>Pending ReportInstanceGone calls, kept across restarts (in data_dir).</summary>
    public const string InstanceReportsFile = "pending-reports.json";

    /// <summary>Completes with null on a normal stop, or with the reason the agent had to stop.</summary>
    public Task<string?> Completion => _completion.Task;

    public static async Task<AgentHost> StartAsync(AgentOptions options, TimeProvider time, Action<ILoggingBuilder> logging, CancellationToken ct)
    {
        // One agent per data dir (its SVID, key and pending reports), held until the process exits; then the socket,
        // bound before the agent attests so that a taken socket path is known before anything is asked of the server.
        // The data dir must be ours alone (created 0700); the lock is a file in it, never the dir, which others may open.
        var unsafeReason = PrivateDirectory.Ensure(options.DataDir);
        if (unsafeReason is not null)
        {
            throw new StartupRefusedException(DataDirUnsafeCode, $"refusing the agent data dir: {unsafeReason}");
        }
        ExclusiveLock? locked;
        try
        {
            locked = ExclusiveLock.TryAcquire(Path.Combine(options.DataDir, ExclusiveLock.DataDirLockFile));
        }
        catch (IOException e)
        {
            throw new StartupRefusedException(DataDirUnsafeCode, e.Message);
        }
        var dataDirLock = locked ?? throw new StartupRefusedException(DataDirInUseCode,
            $"the agent data dir '{options.DataDir}' is in use by another running Writ agent: stop it first (one agent per data dir)");
        OwnedUnixSocket? socket = null;
        OwnedUnixSocket? authzSocket = null;
        var handedOver = false;
        try
        {
            socket = ListenWorkloadSocket(options.SocketPath);
            authzSocket = Authz.AuthzListener.ListenSocket(options.Authz);
            var host = await StartAsync(options, time, logging, dataDirLock, socket, authzSocket, () => handedOver = true, ct).ConfigureAwait(false);
            return host;
        }
        catch
        {
            if (authzSocket is not null)
            {
                if (!handedOver)
                {
                    ListenerHandle.Close(authzSocket.Handle);
                }
                authzSocket.RemoveIfOwned();
            }
            if (socket is not null)
            {
                if (!handedOver)
                {
                    ListenerHandle.Close(socket.Handle);
                }
                socket.RemoveIfOwned();
            }
            dataDirLock.Dispose();
            throw;
        }
    }

    private static async Task<AgentHost> StartAsync(AgentOptions options, TimeProvider time, Action<ILoggingBuilder> logging, ExclusiveLock dataDirLock,
        OwnedUnixSocket socket, OwnedUnixSocket? authzSocket, Action handingOver, CancellationToken ct)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        logging(builder.Logging);
        var state = new AgentState(NodeIdentity.LoadBootstrapBundle(options));
        // Every connection holds a socket and every watched instance a pidfd: take all the descriptors the hard limit
        // allows, then size the Workload API's limits to them so a flood is refused before the agent runs out.
        var fdLimit = FileDescriptorLimit.RaiseToHard();
        var fdBudget = FileDescriptorLimit.Budget(fdLimit);
        var jitter = Random.Shared;   // the one source of jitter (thread-safe); tests of the parts pin their own
        builder.Services.AddSingleton(options);
        builder.Services.AddSingleton(time);
        builder.Services.AddSingleton(jitter);
        builder.Services.AddSingleton(state);
        builder.Services.AddSingleton(sp => new NodeIdentity(options, state, time, sp.GetRequiredService<ILoggerFactory>().CreateLogger<NodeIdentity>(), jitter)
        {
            Jitter = jitter,
            Attestor = NodeAttestorClients.FromOptions(options),
        });
        builder.Services.AddSingleton(sp =>
        {
            var node = sp.GetRequiredService<NodeIdentity>();
            return new InstanceReporter(() => node.Client, node.Classify, time, sp.GetRequiredService<ILoggerFactory>().CreateLogger<InstanceReporter>(),
                Path.Combine(options.DataDir, InstanceReportsFile), jitter);
        });
        builder.Services.AddSingleton(sp => new InstanceTracker(sp.GetRequiredService<WorkloadAttestationRunner>(), ProcFs.Host,
            sp.GetRequiredService<InstanceReporter>(), options.ReattestInterval, time, sp.GetRequiredService<ILoggerFactory>().CreateLogger<InstanceTracker>(),
            Math.Min(PidfdWatcher.MaxWatched, fdBudget)));
        builder.Services.AddConnectionGate(sp => new ConnectionGate(options, ProcFs.Host, time, sp.GetRequiredService<ILogger<ConnectionGate>>(), FileDescriptorLimit.Current));
        builder.Services.AddSingleton(sp =>
        {
            var node = sp.GetRequiredService<NodeIdentity>();
            return new SvidCache(node, state, sp.GetRequiredService<InstanceTracker>(), time, sp.GetRequiredService<ILoggerFactory>().CreateLogger<SvidCache>(), jitter)
            {
                Pool = new OutagePool(() => node.Client, node.Classify, state, time, sp.GetRequiredService<ILoggerFactory>().CreateLogger<OutagePool>()),
            };
        });
        builder.Services.AddSingleton(sp => new SyncClient(sp.GetRequiredService<NodeIdentity>(), state, options, time,
            sp.GetRequiredService<ILoggerFactory>().CreateLogger<SyncClient>(), jitter));
        builder.Services.AddJwtReplayGuard(sp =>
        {
            var node = sp.GetRequiredService<NodeIdentity>();
            return () => node.Client;
        });
        builder.Services.AddWorkloadRefusalReports(sp =>
        {
            var node = sp.GetRequiredService<NodeIdentity>();
            return () => node.Client;
        });
        AddBackgroundLoops(builder.Services);
        builder.Services.AddCallDecisions(sp =>
        {
            var node = sp.GetRequiredService<NodeIdentity>();
            return () => node.Client;
        }, sp =>
        {
            var node = sp.GetRequiredService<NodeIdentity>();
            return () => node.AgentId?.ToString() ?? "";
        }, sp => sp.GetRequiredService<SvidCache>().Issued);
        builder.Services.AddSingleton(sp =>
        {
            var proc = ProcFs.Host;
            var attestors = WorkloadAttestorSet.Create(options, proc, sp.GetRequiredService<ILoggerFactory>(), time);
            return new WorkloadAttestationRunner(attestors, proc, options.AttestorTimeout, sp.GetRequiredService<ILoggerFactory>().CreateLogger<WorkloadAttestationRunner>());
        });
        builder.Services.AddSingleton<WorkloadApiErrorInterceptor>();
        builder.Services.AddSds();
        builder.Services.AddSingleton(sp => new WritAgentMetrics(sp.GetService<System.Diagnostics.Metrics.IMeterFactory>()));
        builder.Services.AddGrpc(o =>
        {
            o.Interceptors.Add<WorkloadApiTelemetryInterceptor>();
            o.Interceptors.Add<WorkloadApiErrorInterceptor>();
            o.EnableDetailedErrors = false;
        });
        builder.Services.AddGrpcReflection();
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.AddServerHeader = false;
            k.ListenHandle(socket.Handle, lo =>
            {
                lo.Protocols = HttpProtocols.Http2;
                lo.UseConnectionGate();
            });
            Authz.AuthzListener.Listen(k, options.Authz, authzSocket);
        });
        var app = builder.Build();
        state.Log = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger<AgentState>();
        var metrics = app.Services.GetRequiredService<WritAgentMetrics>();
        app.Services.GetRequiredService<WorkloadAttestationRunner>().Metrics = metrics;
        app.UseListenerSeparation();
        app.MapGrpcService<WorkloadApiService>();
        app.MapGrpcService<SdsService>();
        app.MapGrpcService<RelyingParty.RelyingPartyService>();
        if (options.Authz.Bind is not null)
        {
            app.MapGrpcService<Authz.ExtAuthzService>();
        }
        app.MapGrpcReflectionService();

        var node = app.Services.GetRequiredService<NodeIdentity>();
        var host = new AgentHost(app, node, dataDirLock, socket) { _authzSocket = authzSocket };
        var log = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger<AgentHost>();
        app.Services.GetRequiredService<WorkloadApiErrorInterceptor>().OnFatal = host.Fail;
        foreach (var loop in host.Loops)
        {
            loop.Failed = (l, e) => host.LoopFailed(l, e, log);
        }
        var svids = app.Services.GetRequiredService<SvidCache>();
        var serverPool = app.Services.GetRequiredService<NodeIdentity>().Pool;
        serverPool.Metrics = metrics;
        metrics.ObserveServer(() => serverPool.Current);
        metrics.Observe(() => app.Services.GetRequiredService<InstanceTracker>().Count, () => svids.X509Count, () => svids.JwtCount, () => state.Synced);
        metrics.ObserveOutagePool(() => svids.Pool?.Size ?? 0, () => svids.Pool?.HandedOut ?? 0);
        host._telemetry = TelemetryEndpoint.Bind(options.MetricsBind, MetricsBindCode);
        await host._telemetry.StartAsync(AgentReadiness.Sources, _ => Task.FromResult(AgentReadiness.Check(node, state)), ct).ConfigureAwait(false);
        await node.StartAsync(ct).ConfigureAwait(false);   // attest (or resume) before serving anything
        handingOver();   // from here Kestrel owns (and closes) the listening descriptor
        await app.StartAsync(ct).ConfigureAwait(false);   // and the background loops (hosted services) with it

        var gate = app.Services.GetRequiredService<ConnectionGate>();
        AgentLog.ConnectionLimits(log, gate.MaxConnections, gate.MaxConnectionsPerUid, gate.RatePerUid,
            fdLimit?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "unknown");
        using (var startOrStop = CancellationTokenSource.CreateLinkedTokenSource(ct, host._stop.Token))
        {
            await WaitForFirstSyncAsync(state, options.InitialSyncTimeout, startOrStop.Token).ConfigureAwait(false);
        }
        if (host._completion.Task.IsCompleted && host._completion.Task.Result is { } reason)
        {
            // Refused during start-up (e.g. banned): never claim to be ready.
            await host.DisposeAsync().ConfigureAwait(false);
            throw new AgentFatalException(reason) { Stopped = true };
        }
        if (options.Authz.Bind is { } authzBind)
        {
            AgentLog.AuthzListening(log, authzBind.ToString());
        }
        AgentLog.Ready(log, host.AgentId, options.SocketPath, options.ServerAddress);
        return host;
    }

    /// <summary>
    /// "Ready" should mean "serving what the server says": until the first full sync every workload would be told
    /// Unavailable. Waits for it, but only briefly — when the server is away the agent starts anyway and syncs later.
    /// </summary>
    private static async Task WaitForFirstSyncAsync(AgentState state, TimeSpan timeout, CancellationToken ct)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
        deadline.CancelAfter(timeout);
        while (!state.Synced)
        {
            var generation = state.Changed.Generation;
            if (state.Synced)
            {
                return;
            }
            try
            {
                await state.Changed.WaitAsync(generation, deadline.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;   // timed out (serve anyway) or stopping (the caller checks why)
            }
        }
    }

    /// <summary>
    /// The agent's background loops, each a hosted service started and stopped with the host: sync, renewal, SVID
    /// rotation, re-attestation, instance reports, JWT replay reports. An unexpected failure is logged and the loop
    /// restarted with backoff; a fatal one (banned, evicted) stops the agent (<see cref="LoopFailed"/>).
    /// </summary>
    private static void AddBackgroundLoops(IServiceCollection services)
    {
        static ILogger Log(IServiceProvider sp, string category) => sp.GetRequiredService<ILoggerFactory>().CreateLogger(category);
        static bool Fatal(Exception e) => e is AgentFatalException;
        services.AddSingleton<IHostedService>(sp => new LoopService("sync", sp.GetRequiredService<SyncClient>().RunAsync, LoopFailurePolicy.Restart,
            sp.GetRequiredService<TimeProvider>(), sp.GetRequiredService<Random>(), Log(sp, typeof(SyncClient).FullName!), Fatal));
        services.AddSingleton<IHostedService>(sp => new LoopService("renewal", sp.GetRequiredService<NodeIdentity>().RenewLoopAsync, LoopFailurePolicy.Restart,
            sp.GetRequiredService<TimeProvider>(), sp.GetRequiredService<Random>(), Log(sp, typeof(NodeIdentity).FullName!), Fatal));
        services.AddSingleton<SvidRotationService>();
        services.AddSingleton<IHostedService>(sp => sp.GetRequiredService<SvidRotationService>());
        services.AddSingleton<IHostedService>(sp => new LoopService("re-attestation", sp.GetRequiredService<InstanceTracker>().RunAsync, LoopFailurePolicy.Restart,
            sp.GetRequiredService<TimeProvider>(), sp.GetRequiredService<Random>(), Log(sp, typeof(InstanceTracker).FullName!), Fatal));
        services.AddSingleton<IHostedService>(sp => new LoopService("instance reports", sp.GetRequiredService<InstanceReporter>().RunAsync, LoopFailurePolicy.Restart,
            sp.GetRequiredService<TimeProvider>(), sp.GetRequiredService<Random>(), Log(sp, typeof(InstanceReporter).FullName!), Fatal));
    }

    /// <summary>The background loops (hosted services) of this agent.</summary>
    public IReadOnlyList<GuardedBackgroundService> Loops => [.. _app.Services.GetServices<IHostedService>().OfType<GuardedBackgroundService>()];

    /// <summary>A loop stopped for good: a fatal refusal (banned, evicted) or a loop whose policy is to stop stops the agent.</summary>
    private void LoopFailed(GuardedBackgroundService loop, Exception e, ILogger log)
    {
        if (e is AgentFatalException)
        {
            AgentLog.Fatal(log, e.Message);
            Fail(e.Message);
            return;
        }
        Fail($"the {loop.Name} loop failed: {e.Message}");
    }

    private void Fail(string reason)
    {
        _completion.TrySetResult(reason);
        _stop.Cancel();
    }

    /// <summary>Identity comes from the kernel, not from file permissions: every local user may connect (0666).</summary>
    private static OwnedUnixSocket ListenWorkloadSocket(string path)
    {
        if (!UnixSocketFile.TryPrepare(path))
        {
            throw new StartupRefusedException(SocketInUseCode, $"another process is already serving the Workload API on '{path}': stop it or choose another --socket");
        }
        return UnixSocketFile.Listen(path, (UnixFileMode)0b110_110_110);
    }

    public async ValueTask DisposeAsync()
    {
        _completion.TrySetResult(null);
        await _stop.CancelAsync().ConfigureAwait(false);
        var loops = Loops;
        // Stops the Workload API (open streams end with Unavailable) and then every background loop; the instance
        // reports still pending are written to the data dir on the way out. The node identity is disposed only once
        // every loop is over, even if the host's shutdown timeout ran out meanwhile.
        await _app.StopAsync(CancellationToken.None).ConfigureAwait(false);
        await Task.WhenAll(loops.Select(l => l.Completion)).ConfigureAwait(false);
        await _app.DisposeAsync().ConfigureAwait(false);
        if (_telemetry is not null)
        {
            await _telemetry.DisposeAsync().ConfigureAwait(false);
        }
        _node.Dispose();
        // The socket file only if it is still ours, then the lock: a new agent may start only once this one is gone.
        _socket.RemoveIfOwned();
        _authzSocket?.RemoveIfOwned();
        _dataDirLock.Dispose();
        _stop.Dispose();
    }
}
