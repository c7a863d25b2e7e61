using System.Net.Sockets;
using Grpc.Core;
using Grpc.Core.Interceptors;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Writ.Agent.Cache;
using Writ.Agent.Instances;
using Writ.Agent.NodeAttestation;
using Writ.Agent.PeerTracking;
using Writ.Agent.Sync;
using Writ.Agent.WorkloadApi;
using Writ.Agent.WorkloadAttestation;
using Writ.Protocol;
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
    private readonly List<Task> _loops = [];
    private readonly ExclusiveLock _dataDirLock;
    private readonly OwnedUnixSocket _socket;

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
        var handedOver = false;
        try
        {
            socket = ListenWorkloadSocket(options.SocketPath);
            var host = await StartAsync(options, time, logging, dataDirLock, socket, () => handedOver = true, ct).ConfigureAwait(false);
            return host;
        }
        catch
        {
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
        OwnedUnixSocket socket, Action handingOver, CancellationToken ct)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        logging(builder.Logging);
        var state = new AgentState(NodeIdentity.LoadBootstrapBundle(options));
        // Every connection holds a socket and every watched instance a pidfd: take all the descriptors the hard limit
        // allows, then size the Workload API's limits to them so a flood is refused before the agent runs out.
        var fdLimit = FileDescriptorLimit.RaiseToHard();
        var fdBudget = FileDescriptorLimit.Budget(fdLimit);
        builder.Services.AddSingleton(options);
        builder.Services.AddSingleton(time);
        builder.Services.AddSingleton(state);
        builder.Services.AddSingleton(sp => new NodeIdentity(options, state, time, sp.GetRequiredService<ILoggerFactory>().CreateLogger<NodeIdentity>()));
        builder.Services.AddSingleton(sp =>
        {
            var node = sp.GetRequiredService<NodeIdentity>();
            return new InstanceReporter(() => node.Client, node.Classify, time, sp.GetRequiredService<ILoggerFactory>().CreateLogger<InstanceReporter>(),
                Path.Combine(options.DataDir, InstanceReportsFile));
        });
        builder.Services.AddSingleton(sp => new InstanceTracker(sp.GetRequiredService<WorkloadAttestationRunner>(), ProcFs.Host,
            sp.GetRequiredService<InstanceReporter>(), options.ReattestInterval, time, sp.GetRequiredService<ILoggerFactory>().CreateLogger<InstanceTracker>(),
            Math.Min(PidfdWatcher.MaxWatched, fdBudget)));
        builder.Services.AddConnectionGate(sp => new ConnectionGate(options, ProcFs.Host, time, sp.GetRequiredService<ILogger<ConnectionGate>>(), FileDescriptorLimit.Current));
        builder.Services.AddSingleton(sp => new SvidCache(sp.GetRequiredService<NodeIdentity>(), state, sp.GetRequiredService<InstanceTracker>(), time,
            sp.GetRequiredService<ILoggerFactory>().CreateLogger<SvidCache>()));
        builder.Services.AddSingleton(sp =>
        {
            var proc = ProcFs.Host;
            IWorkloadAttestor[] attestors = [new UnixWorkloadAttestor(proc), new CgroupWorkloadAttestor(proc)];
            return new WorkloadAttestationRunner(attestors, proc, options.AttestorTimeout, sp.GetRequiredService<ILoggerFactory>().CreateLogger<WorkloadAttestationRunner>());
        });
        builder.Services.AddSingleton<FatalInterceptor>();
        builder.Services.AddSingleton(sp => new WritAgentMetrics(sp.GetService<System.Diagnostics.Metrics.IMeterFactory>()));
        builder.Services.AddGrpc(o =>
        {
            o.Interceptors.Add<WorkloadApiTelemetryInterceptor>();
            o.Interceptors.Add<FatalInterceptor>();
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
        });
        var app = builder.Build();
        var metrics = app.Services.GetRequiredService<WritAgentMetrics>();
        app.Services.GetRequiredService<WorkloadAttestationRunner>().Metrics = metrics;
        app.MapGrpcService<WorkloadApiService>();
        app.MapGrpcReflectionService();

        var node = app.Services.GetRequiredService<NodeIdentity>();
        var host = new AgentHost(app, node, dataDirLock, socket);
        app.Services.GetRequiredService<FatalInterceptor>().OnFatal = host.Fail;
        var svids = app.Services.GetRequiredService<SvidCache>();
        metrics.Observe(() => app.Services.GetRequiredService<InstanceTracker>().Count, () => svids.X509Count, () => svids.JwtCount, () => state.Synced);
        host._telemetry = TelemetryEndpoint.Bind(options.MetricsBind, MetricsBindCode);
        await host._telemetry.StartAsync(AgentReadiness.Sources, _ => Task.FromResult(AgentReadiness.Check(node, state)), ct).ConfigureAwait(false);
        await node.StartAsync(ct).ConfigureAwait(false);   // attest (or resume) before serving anything
        handingOver();   // from here Kestrel owns (and closes) the listening descriptor
        await app.StartAsync(ct).ConfigureAwait(false);

        var log = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger<AgentHost>();
        var gate = app.Services.GetRequiredService<ConnectionGate>();
        AgentLog.ConnectionLimits(log, gate.MaxConnections, gate.MaxConnectionsPerUid, gate.RatePerUid,
            fdLimit?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "unknown");
        var sync = new SyncClient(node, state, options, time, app.Services.GetRequiredService<ILoggerFactory>().CreateLogger<SyncClient>());
        var cache = app.Services.GetRequiredService<SvidCache>();
        host._loops.Add(host.Guard(sync.RunAsync, "sync", log));
        host._loops.Add(host.Guard(node.RenewLoopAsync, "renewal", log));
        host._loops.Add(host.Guard(cache.MaintainAsync, "svid cache", log));
        host._loops.Add(host.Guard(app.Services.GetRequiredService<InstanceTracker>().RunAsync, "re-attestation", log));
        host._loops.Add(host.Guard(app.Services.GetRequiredService<InstanceReporter>().RunAsync, "instance reports", log));
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

    private async Task Guard(Func<CancellationToken, Task> loop, string name, ILogger log)
    {
        try
        {
            await loop(_stop.Token).ConfigureAwait(false);
        }
        catch (Exception) when (_stop.IsCancellationRequested)
        {
            // stopping: a cancelled call (OperationCanceledException or RpcException Cancelled) is the normal end
        }
        catch (AgentFatalException e)
        {
            AgentLog.Fatal(log, e.Message);
            Fail(e.Message);
        }
        catch (Exception e)
        {
            AgentLog.Unexpected(log, e, name);
            Fail($"the {name} loop failed: {e.Message}");
        }
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
        await Task.WhenAll(_loops).ConfigureAwait(false);
        await _app.StopAsync(CancellationToken.None).ConfigureAwait(false);
        await _app.DisposeAsync().ConfigureAwait(false);
        if (_telemetry is not null)
        {
            await _telemetry.DisposeAsync().ConfigureAwait(false);
        }
        _node.Dispose();
        // The socket file only if it is still ours, then the lock: a new agent may start only once this one is gone.
        _socket.RemoveIfOwned();
        _dataDirLock.Dispose();
        _stop.Dispose();
    }

    /// <summary>Turns a fatal condition met during a workload call into Unavailable for the caller and a stop of the agent.</summary>
    private sealed class FatalInterceptor(ILogger<FatalInterceptor> log) : Interceptor
    {
        public Action<string>? OnFatal { get; set; }

        public override async Task<TResponse> UnaryServerHandler<TRequest, TResponse>(TRequest request, ServerCallContext context, UnaryServerMethod<TRequest, TResponse> continuation)
        {
            try
            {
                return await continuation(request, context).ConfigureAwait(false);
            }
            catch (Exception e) when (e is not RpcException)
            {
                throw Translate(e, context);
            }
        }

        public override async Task ServerStreamingServerHandler<TRequest, TResponse>(TRequest request, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, ServerStreamingServerMethod<TRequest, TResponse> continuation)
        {
            try
            {
                await continuation(request, responseStream, context).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (context.CancellationToken.IsCancellationRequested)
            {
            }
            catch (Exception e) when (e is not RpcException)
            {
                throw Translate(e, context);
            }
        }

        private RpcException Translate(Exception e, ServerCallContext context)
        {
            if (e is AgentFatalException fatal)
            {
                AgentLog.Fatal(log, fatal.Message);
                OnFatal?.Invoke(fatal.Message);
                return new RpcException(new Status(StatusCode.Unavailable, "the agent is stopping; retry against a working agent"));
            }
            AgentLog.Unexpected(log, e, context.Method);
            return new RpcException(new Status(StatusCode.Internal, "internal agent error: the agent log has the details"));
        }
    }
}
