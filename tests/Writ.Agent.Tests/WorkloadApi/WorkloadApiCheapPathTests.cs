using System.Net.Sockets;
using System.Runtime.InteropServices;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;
using Writ.Agent.Instances;
using Writ.Agent.Tests.Instances;
using Writ.Agent.Tests.TestSupport;
using Writ.Agent.WorkloadApi;
using Writ.Protocol.Agent;
using Writ.Spiffe;

namespace Writ.Agent.Tests.WorkloadApi;

/// <summary>
/// The per-call re-check's cheap path: later calls on an attested connection skip the attestors only while the
/// kernel still vouches for the same, living process; a connection that outlives its process is not served.
/// </summary>
public sealed class WorkloadApiCheapPathTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static readonly Metadata Headers = new() { { WorkloadApiService.SecurityHeader, "true" } };

    private static string OwnUid => "unix:uid:" + InstanceRig.Ids(Environment.ProcessId).Uid.ToString(System.Globalization.CultureInfo.InvariantCulture);

    [Fact]
    public async Task Later_calls_on_an_attested_connection_skip_the_attestors_but_not_after_the_interval()
    {
        // The tracker and the service share a clock the test steps: the cheap path's window is the interval on that clock,
        // so a loaded machine (a slow call) cannot push the second call past it.
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var host = await Host.StartAsync(TimeSpan.FromMinutes(1), time);
        host.Rig.SetEntries(InstanceRig.Entry("web", OwnUid));
        var client = host.Connect(host.ConnectOwn);
        await client.FetchJWTSVIDAsync(new JWTSVIDRequest { Audience = { "a" } }, Headers, cancellationToken: Ct);
        var instance = Assert.Single(host.Rig.Tracker.Instances);
        var attested = instance.LastAttested;
        time.Advance(host.Rig.Tracker.Interval - TimeSpan.FromSeconds(1));
        await client.FetchJWTSVIDAsync(new JWTSVIDRequest { Audience = { "a" } }, Headers, cancellationToken: Ct);
        Assert.Equal(attested, instance.LastAttested);   // the cheap path: the attestors did not run again

        // Once the interval has passed (no periodic re-check runs in this host) a call attests in full again.
        time.Advance(TimeSpan.FromSeconds(1));
        await client.FetchJWTSVIDAsync(new JWTSVIDRequest { Audience = { "a" } }, Headers, cancellationToken: Ct);
        Assert.True(instance.LastAttested > attested, "a call past the interval must run the attestors");
    }

    [Fact]
    public async Task A_connection_taken_over_from_an_attested_process_that_exited_is_refused()
    {
        // The attacker: a process that got hold of a socket another (entitled) process connected and attested, and
        // keeps calling on it after that process exited. Here python connects, this test takes its socket
        // (pidfd_getfd), python exits, and the next call on the same HTTP/2 connection must not be served.
        await using var host = await Host.StartAsync(TimeSpan.FromMinutes(5), TimeProvider.System);
        host.Rig.SetEntries(InstanceRig.Entry("web", OwnUid));
        using var python = Child.Start(Child.Resolve("/usr/bin/python3"), "-c",
            "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\nprint(s.fileno(), flush=True)\nsys.stdin.read()\n",
            host.SocketPath);
        var fdLine = await python.Process.StandardOutput.ReadLineAsync(Ct).AsTask().WaitAsync(TimeSpan.FromSeconds(10), Ct);
        var stolen = TakeFd(python.Pid, int.Parse(fdLine!, System.Globalization.CultureInfo.InvariantCulture));
        var client = host.Connect(_ => Task.FromResult(stolen));

        var first = await client.FetchJWTSVIDAsync(new JWTSVIDRequest { Audience = { "a" } }, Headers, cancellationToken: Ct);
        Assert.Single(first.Svids);   // python, alive, attested: served
        Assert.Contains(host.Rig.Tracker.Instances, i => i.Peer.Pid == python.Pid);

        python.Process.StandardInput.Close();
        await python.Process.WaitForExitAsync(Ct).WaitAsync(TimeSpan.FromSeconds(10), Ct);

        var e = await Assert.ThrowsAsync<RpcException>(async () =>
            await client.FetchJWTSVIDAsync(new JWTSVIDRequest { Audience = { "a" } }, Headers, cancellationToken: Ct));
        Assert.True(e.StatusCode is StatusCode.Unauthenticated or StatusCode.PermissionDenied, $"got {e.StatusCode}: {e.Status.Detail}");
        using var stream = client.FetchX509SVID(new X509SVIDRequest(), Headers, cancellationToken: Ct);
        var e2 = await Assert.ThrowsAsync<RpcException>(() => stream.ResponseStream.MoveNext(Ct));
        Assert.True(e2.StatusCode is StatusCode.Unauthenticated or StatusCode.PermissionDenied, $"got {e2.StatusCode}: {e2.Status.Detail}");
    }

    [DllImport("libc", SetLastError = true)]
    private static extern long syscall(long number, long a, long b, long c);

    /// <summary>A duplicate of another process's fd (pidfd_open + pidfd_getfd, Linux 5.6+; our own child, so ptrace allows it).</summary>
    private static Stream TakeFd(int pid, int fd)
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

    private sealed class Host : IAsyncDisposable
    {
        private readonly TempDir _dir = new();
        private readonly List<GrpcChannel> _channels = [];
        private WebApplication? _app;

        private Host(TimeSpan interval, TimeProvider time) => (Rig, _time) = (new InstanceRig(interval, time), time);

        private readonly TimeProvider _time;

        public InstanceRig Rig { get; }

        public string SocketPath => _dir.Combine("w.sock");

        public static async Task<Host> StartAsync(TimeSpan interval, TimeProvider time)
        {
            var host = new Host(interval, time);
            var builder = WebApplication.CreateSlimBuilder();
            builder.Logging.ClearProviders();
            builder.Services.AddSingleton(new AgentOptions
            {
                ServerAddress = "127.0.0.1:1", TrustDomain = TrustDomain.Parse("example.org"), DataDir = host._dir.Path, SocketPath = host.SocketPath,
            });
            builder.Services.AddSingleton(host._time);
            builder.Services.AddSingleton(host.Rig.State);
            builder.Services.AddSingleton(host.Rig.Runner);
            builder.Services.AddSingleton(host.Rig.Tracker);
            builder.Services.AddSingleton(host.Rig.Cache);
            builder.Services.AddGrpc();
            builder.WebHost.ConfigureKestrel(k => k.ListenUnixSocket(host.SocketPath, lo => lo.Protocols = HttpProtocols.Http2));
            host._app = builder.Build();
            host._app.MapGrpcService<WorkloadApiService>();
            await host._app.StartAsync(Ct);
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
}
