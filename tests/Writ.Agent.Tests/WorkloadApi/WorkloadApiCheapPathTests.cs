using Grpc.Core;
using Microsoft.Extensions.Time.Testing;
using Writ.Agent.Tests.Instances;
using Writ.Agent.Tests.TestSupport;
using Writ.Agent.WorkloadApi;
using Writ.Protocol.Agent;

using Host = Writ.Agent.Tests.WorkloadApi.WorkloadApiHost;

namespace Writ.Agent.Tests.WorkloadApi;

/// <summary>
/// The per-call re-check's cheap path: later calls on an attested connection skip the attestors only while the
/// kernel still vouches for the same, living process; a connection that outlives its process is not served.
/// </summary>
public sealed class WorkloadApiCheapPathTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static Metadata Headers => Host.Headers;

    private static string OwnUid => "unix:uid:" + InstanceRig.Ids(Environment.ProcessId).Uid.ToString(System.Globalization.CultureInfo.InvariantCulture);

    [Fact]
    public async Task Later_calls_on_an_attested_connection_skip_the_attestors_but_not_after_the_interval()
    {
        // The tracker and the service share a clock the test steps: the cheap path's window is the interval on that clock,
        // so a loaded machine (a slow call) cannot push the second call past it.
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var host = await Host.StartAsync(TimeSpan.FromMinutes(1), time: time);
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
        await using var host = await Host.StartAsync(TimeSpan.FromMinutes(5));
        host.Rig.SetEntries(InstanceRig.Entry("web", OwnUid));
        using var python = Child.Start(Child.Resolve("/usr/bin/python3"), "-c",
            "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\nprint(s.fileno(), flush=True)\nsys.stdin.read()\n",
            host.SocketPath);
        var fdLine = await python.Process.StandardOutput.ReadLineAsync(Ct).AsTask().WaitAsync(TimeSpan.FromSeconds(10), Ct);
        var stolen = Host.TakeFd(python.Pid, int.Parse(fdLine!, System.Globalization.CultureInfo.InvariantCulture));
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
}
