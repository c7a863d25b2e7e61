using System.Net.Sockets;
using Envoy.Service.Secret.V3;
using Grpc.Net.Client;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Writ.Agent.PeerTracking;
using Writ.Agent.Sds;
using Writ.Agent.Tests.Instances;
using Writ.Agent.Tests.TestSupport;
using Writ.Agent.WorkloadApi;
using Writ.Spiffe;

namespace Writ.Agent.Tests.Sds;

/// <summary>
/// SDS and the Workload API on a real Unix socket behind the agent's connection gate and error interceptor, as the agent
/// maps them, with a rig's tracker, cache and fake server; this test process is the Envoy. Logs go to <see cref="Log"/>.
/// </summary>
internal sealed class SdsHost : IAsyncDisposable
{
    private readonly TempDir _dir = new();
    private GrpcChannel? _channel;
    private WebApplication? _app;

    private SdsHost() => Rig = new InstanceRig();

    public InstanceRig Rig { get; }

    public ListLogger Log { get; } = new();

    public string SocketPath => _dir.Combine("w.sock");

    /// <summary>The generated Envoy SDS client on its own connection from this process.</summary>
    public SecretDiscoveryService.SecretDiscoveryServiceClient Client { get; private set; } = null!;

    public static async Task<SdsHost> StartAsync()
    {
        var host = new SdsHost();
        var options = new AgentOptions
        {
            ServerAddress = "127.0.0.1:1", TrustDomain = TrustDomain.Parse("example.org"), DataDir = host._dir.Path, SocketPath = host.SocketPath,
        };
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.Logging.AddProvider(new ListProvider(host.Log));
        builder.Logging.SetMinimumLevel(LogLevel.Debug);
        builder.Services.AddSingleton(options);
        builder.Services.AddSingleton(TimeProvider.System);
        builder.Services.AddSingleton(host.Rig.State);
        builder.Services.AddSingleton(host.Rig.Runner);
        builder.Services.AddSingleton(host.Rig.Tracker);
        builder.Services.AddSingleton(host.Rig.Cache);
        builder.Services.AddConnectionGate(_ => new ConnectionGate(options, ProcFs.Host, TimeProvider.System, NullLogger<ConnectionGate>.Instance, FileDescriptorLimit.Current));
        builder.Services.AddSingleton(Random.Shared);
        builder.Services.AddJwtReplayGuard(_ => () => host.Rig.Server);
        builder.Services.AddWorkloadRefusalReports(_ => () => host.Rig.Server);
        builder.Services.AddSingleton<WorkloadApiErrorInterceptor>();
        builder.Services.AddSds();
        builder.Services.AddGrpc(o => o.Interceptors.Add<WorkloadApiErrorInterceptor>());
        builder.WebHost.ConfigureKestrel(k => k.ListenUnixSocket(host.SocketPath, lo =>
        {
            lo.Protocols = HttpProtocols.Http2;
            lo.UseConnectionGate();
        }));
        host._app = builder.Build();
        host._app.MapGrpcService<WorkloadApiService>();
        host._app.MapGrpcService<SdsService>();
        await host._app.StartAsync(TestContext.Current.CancellationToken);
        host._channel = GrpcChannel.ForAddress("http://localhost", new GrpcChannelOptions
        {
            HttpHandler = new SocketsHttpHandler
            {
                ConnectCallback = async (_, ct) =>
                {
                    var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                    try
                    {
                        await s.ConnectAsync(new UnixDomainSocketEndPoint(host.SocketPath), ct);
                        return new NetworkStream(s, ownsSocket: true);
                    }
                    catch
                    {
                        s.Dispose();
                        throw;
                    }
                },
            },
        });
        host.Client = new SecretDiscoveryService.SecretDiscoveryServiceClient(host._channel);
        return host;
    }

    public async ValueTask DisposeAsync()
    {
        _channel?.Dispose();
        if (_app is not null)
        {
            await _app.StopAsync(CancellationToken.None);
            await _app.DisposeAsync();
        }
        Rig.Dispose();
        _dir.Dispose();
    }

    private sealed class ListProvider(ListLogger log) : ILoggerProvider
    {
        public ILogger CreateLogger(string categoryName) => log;

        public void Dispose()
        {
        }
    }
}
