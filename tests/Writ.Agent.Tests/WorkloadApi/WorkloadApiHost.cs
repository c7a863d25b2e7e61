using System.Net.Sockets;
using System.Runtime.InteropServices;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Writ.Agent.PeerTracking;
using Writ.Agent.Tests.Instances;
using Writ.Agent.Tests.TestSupport;
using Writ.Agent.WorkloadApi;
using Writ.Protocol.Agent;
using Writ.Spiffe;

namespace Writ.Agent.Tests.WorkloadApi;

/// <summary>
/// The Workload API service on a real Unix socket behind the agent's connection gate, with a rig's tracker, cache and
/// fake server; this test process (or a child) is the workload.
/// </summary>
internal sealed class WorkloadApiHost : IAsyncDisposable
{
    public static readonly Metadata Headers = new() { { WorkloadApiService.SecurityHeader, "true" } };

    private readonly TempDir _dir = new();
    private readonly List<GrpcChannel> _channels = [];
    private WebApplication? _app;

    private WorkloadApiHost(TimeSpan? interval, TimeProvider time) => (Rig, _time) = (new InstanceRig(interval, time), time);

    private readonly TimeProvider _time;

    public InstanceRig Rig { get; }

    public string SocketPath => _dir.Combine("w.sock");

    public ConnectionGate Gate { get; private set; } = null!;

    /// <summary>A client on its own connection from this process.</summary>
    public SpiffeWorkloadAPI.SpiffeWorkloadAPIClient Client { get; private set; } = null!;

    /// <param name="interval">The rig's re-attestation interval.</param>
    /// <param name="limits">Changes to the default options (connection limits).</param>
    /// <param name="gateClock">The gate's clock (its rate limit); default the system's.</param>
    /// <param name="time">The clock the tracker and the service share (the cheap path's window); default the system's.</param>
    public static async Task<WorkloadApiHost> StartAsync(TimeSpan? interval = null, Func<AgentOptions, AgentOptions>? limits = null, TimeProvider? gateClock = null, TimeProvider? time = null)
    {
        var host = new WorkloadApiHost(interval, time ?? TimeProvider.System);
        var options = new AgentOptions
        {
            ServerAddress = "127.0.0.1:1", TrustDomain = TrustDomain.Parse("example.org"), DataDir = host._dir.Path, SocketPath = host.SocketPath,
        };
        options = limits?.Invoke(options) ?? options;
        host.Gate = new ConnectionGate(options, ProcFs.Host, gateClock ?? TimeProvider.System, NullLogger<ConnectionGate>.Instance, FileDescriptorLimit.Current);
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.Services.AddSingleton(options);
        builder.Services.AddSingleton(host._time);
        builder.Services.AddSingleton(host.Rig.State);
        builder.Services.AddSingleton(host.Rig.Runner);
        builder.Services.AddSingleton(host.Rig.Tracker);
        builder.Services.AddSingleton(host.Rig.Cache);
        builder.Services.AddConnectionGate(_ => host.Gate);
        builder.Services.AddSingleton(Random.Shared);
        builder.Services.AddJwtReplayGuard(_ => () => host.Rig.Server);
        builder.Services.AddWorkloadRefusalReports(_ => () => host.Rig.Server);
        // Behind the agent's error interceptor, as the agent serves it: refusals carry their stable codes.
        builder.Services.AddGrpc(o => o.Interceptors.Add<WorkloadApiErrorInterceptor>());
        builder.WebHost.ConfigureKestrel(k => k.ListenUnixSocket(host.SocketPath, lo =>
        {
            lo.Protocols = HttpProtocols.Http2;
            lo.UseConnectionGate();
        }));
        host._app = builder.Build();
        host._app.MapGrpcService<WorkloadApiService>();
        await host._app.StartAsync(TestContext.Current.CancellationToken);
        host.Client = host.Connect(host.ConnectOwn);
        return host;
    }

    public async Task<Stream> ConnectOwn(CancellationToken ct)
    {
        var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await s.ConnectAsync(new UnixDomainSocketEndPoint(SocketPath), ct);
        return new NetworkStream(s, ownsSocket: true);
    }

    /// <summary>A client whose one HTTP/2 connection comes from <paramref name="connect"/>.</summary>
    public SpiffeWorkloadAPI.SpiffeWorkloadAPIClient Connect(Func<CancellationToken, Task<Stream>> connect)
    {
        var channel = GrpcChannel.ForAddress("http://localhost", new GrpcChannelOptions
        {
            HttpHandler = new SocketsHttpHandler { ConnectCallback = (_, ct) => new ValueTask<Stream>(connect(ct)) },
        });
        _channels.Add(channel);
        return new SpiffeWorkloadAPI.SpiffeWorkloadAPIClient(channel);
    }

    [DllImport("libc", SetLastError = true)]
    private static extern long syscall(long number, long a, long b, long c);

    /// <summary>A duplicate of another process's fd (pidfd_open + pidfd_getfd, Linux 5.6+; our own child, so ptrace allows it).</summary>
    public static Stream TakeFd(int pid, int fd)
    {
        var pidfd = syscall(434, pid, 0, 0);
        Assert.True(pidfd >= 0, $"pidfd_open failed: errno {Marshal.GetLastPInvokeError()}");
        try
        {
            var dup = syscall(438, pidfd, fd, 0);
            Assert.True(dup >= 0, $"pidfd_getfd failed: errno {Marshal.GetLastPInvokeError()}");
            var socket = new Socket(new SafeSocketHandle((IntPtr)dup, ownsHandle: true));
            return new NetworkStream(socket, ownsSocket: true);
        }
        finally
        {
            syscall(3, pidfd, 0, 0);   // close
        }
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var c in _channels)
        {
            c.Dispose();
        }
        if (_app is not null)
        {
            await _app.StopAsync(CancellationToken.None);
            await _app.DisposeAsync();
        }
        Rig.Dispose();
        _dir.Dispose();
    }
}
