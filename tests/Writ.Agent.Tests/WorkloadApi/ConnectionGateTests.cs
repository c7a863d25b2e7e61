using System.Globalization;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using Grpc.Core;
using Writ.Agent.Tests.Instances;
using Writ.Agent.Tests.TestSupport;
using Writ.Agent.WorkloadApi;
using Writ.Protocol.Agent;
using Host = Writ.Agent.Tests.WorkloadApi.WorkloadApiHost;

namespace Writ.Agent.Tests.WorkloadApi;

/// <summary>
/// The Workload API's connection gate on a real socket: the peer pinned at accept (fork-and-exec), per-uid connection
/// limits and per-uid rates answered with ResourceExhausted and a stable code, and another uid served meanwhile.
/// </summary>
public sealed class ConnectionGateTests
{
    private const int Nobody = 65534;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static string OwnUid => "unix:uid:" + InstanceRig.Ids(Environment.ProcessId).Uid.ToString(CultureInfo.InvariantCulture);

    private static JWTSVIDRequest Jwt => new() { Audience = { "a" } };

    /// <summary>
    /// Connects, clears FD_CLOEXEC on the socket and forks before any call. The child prints "parent child fd" and keeps
    /// the socket; the parent waits for SIGUSR1 and then execs the registered binary (argv[2]) with the socket still
    /// open. The child's side of the call is made by the test on a copy of the child's descriptor (pidfd_getfd): what the
    /// agent sees — the same socket, the same peer — is the same as if the child wrote the request itself.
    /// </summary>
    private const string ForkExec = """
        import os, signal, socket, sys
        s = socket.socket(socket.AF_UNIX)
        s.connect(sys.argv[1])
        os.set_inheritable(s.fileno(), True)
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])
        if os.fork() == 0:
            print(os.getppid(), os.getpid(), s.fileno(), flush=True)
            sys.stdin.read()
            os._exit(0)
        signal.sigwait([signal.SIGUSR1])
        os.execv(sys.argv[2], [sys.argv[2], "60"])
        """;

    [Fact]
    public async Task Attack_fork_and_exec_before_the_first_call_does_not_get_the_exec_d_binary_s_identity()
    {
        var sleep = Child.Resolve("/usr/bin/sleep");
        var hash = Convert.ToHexStringLower(SHA256.HashData(await File.ReadAllBytesAsync(sleep, Ct)));
        await using var host = await Host.StartAsync();
        host.Rig.SetEntries(InstanceRig.Entry("target", "unix:sha256:" + hash));

        using var attacker = Child.Start(Child.Resolve("/usr/bin/python3"), "-c", ForkExec, host.SocketPath, sleep);
        var line = await attacker.Process.StandardOutput.ReadLineAsync(Ct).AsTask().WaitAsync(TimeSpan.FromSeconds(15), Ct);
        var ids = line!.Split(' ').Select(x => int.Parse(x, CultureInfo.InvariantCulture)).ToArray();
        Wait.Until(() => host.Gate.Pinned >= 1, "the connection pinned at accept");
        Assert.Equal(0, Kill(ids[0], 10));   // SIGUSR1: the parent execs the registered binary
        Wait.Until(() => Child.ExeOf(ids[0]) == sleep, "the parent's exec");

        // The registered binary is what the connection's peer runs now: attested afresh it would get the identity.
        var evidence = await host.Rig.AttestAsync(ids[0]);
        Assert.Contains(evidence.Selectors, s => s.ToString() == "unix:sha256:" + hash);

        var child = host.Connect(_ => Task.FromResult(Host.TakeFd(ids[1], ids[2])));
        using var call = child.FetchX509SVID(new X509SVIDRequest(), Host.Headers, cancellationToken: Ct);
        var e = await Assert.ThrowsAsync<RpcException>(() => call.ResponseStream.MoveNext(Ct));
        Assert.Equal(StatusCode.Unauthenticated, e.StatusCode);
        Assert.StartsWith(ConnectionGate.CodeExecChanged + ":", e.Status.Detail, StringComparison.Ordinal);
        Assert.Empty(host.Rig.Server.Signs);   // nothing was signed for the stolen identity
    }

    [Fact]
    public async Task A_uid_at_its_connection_limit_is_refused_with_resource_exhausted_while_another_uid_is_served()
    {
        await using var host = await Host.StartAsync(limits: o => o with { MaxConnections = 100, MaxConnectionsPerUid = 2, RateLimitPerUid = 0 });
        host.Rig.SetEntries(InstanceRig.Entry("web", OwnUid));
        var first = host.Connect(host.ConnectOwn);
        var second = host.Connect(host.ConnectOwn);
        Assert.Single((await first.FetchJWTSVIDAsync(Jwt, Host.Headers, cancellationToken: Ct)).Svids);
        Assert.Single((await second.FetchJWTSVIDAsync(Jwt, Host.Headers, cancellationToken: Ct)).Svids);
        Assert.Equal(2, host.Gate.Open);   // each connection counted once, however many places look at it
        Assert.Equal(2, host.Gate.DecidedOnAcceptLoop);   // on Kestrel's accept loop, before a flood could queue up

        var third = host.Connect(host.ConnectOwn);
        var e = await Assert.ThrowsAsync<RpcException>(async () => await third.FetchJWTSVIDAsync(Jwt, Host.Headers, cancellationToken: Ct));
        Assert.Equal(StatusCode.ResourceExhausted, e.StatusCode);
        Assert.StartsWith(ConnectionGate.CodePerUid + ": uid ", e.Status.Detail, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', e.Status.Detail);

        // Another uid is not held back by this one: nobody's connection is admitted and attested (it has no entry).
        File.SetUnixFileMode(Path.GetDirectoryName(host.SocketPath)!, (UnixFileMode)0b111_101_101);
        File.SetUnixFileMode(host.SocketPath, (UnixFileMode)0b110_110_110);   // as the agent leaves it: every user may connect
        using var other = Child.StartExpecting(Child.Resolve("/usr/bin/python3"), "/usr/bin/setpriv",
            "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c",
            "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\nprint(s.fileno(), flush=True)\nsys.stdin.read()\n", host.SocketPath);
        var fd = int.Parse((await other.Process.StandardOutput.ReadLineAsync(Ct).AsTask().WaitAsync(TimeSpan.FromSeconds(15), Ct))!, CultureInfo.InvariantCulture);
        var nobody = host.Connect(_ => Task.FromResult(Host.TakeFd(other.Pid, fd)));
        var denied = await Assert.ThrowsAsync<RpcException>(async () => await nobody.FetchJWTSVIDAsync(Jwt, Host.Headers, cancellationToken: Ct));
        Assert.Equal(StatusCode.PermissionDenied, denied.StatusCode);
        Assert.Contains(host.Rig.Tracker.Instances, i => i.Peer.Uid == Nobody);
    }

    [Fact]
    public async Task A_uid_over_its_rate_is_refused_with_resource_exhausted_until_its_tokens_come_back()
    {
        var clock = new ManualClock();
        await using var host = await Host.StartAsync(limits: o => o with { RateLimitPerUid = 3 }, gateClock: clock);
        host.Rig.SetEntries(InstanceRig.Entry("web", OwnUid));
        // The connection takes one token, each call one: two calls pass, the third is refused.
        await host.Client.FetchJWTSVIDAsync(Jwt, Host.Headers, cancellationToken: Ct);
        await host.Client.FetchJWTSVIDAsync(Jwt, Host.Headers, cancellationToken: Ct);
        var e = await Assert.ThrowsAsync<RpcException>(async () => await host.Client.FetchJWTSVIDAsync(Jwt, Host.Headers, cancellationToken: Ct));
        Assert.Equal(StatusCode.ResourceExhausted, e.StatusCode);
        Assert.StartsWith(ConnectionGate.CodeRate + ": uid ", e.Status.Detail, StringComparison.Ordinal);

        clock.Advance(TimeSpan.FromSeconds(1));   // three tokens back: the same connection is served again
        Assert.Single((await host.Client.FetchJWTSVIDAsync(Jwt, Host.Headers, cancellationToken: Ct)).Svids);
    }

    [DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int Kill(int pid, int signal);

    /// <summary>A clock whose timestamps move only when told (the gate's rate limit reads nothing else of it).</summary>
    private sealed class ManualClock : TimeProvider
    {
        private long _ticks = 1;

        public override long TimestampFrequency => TimeSpan.TicksPerSecond;

        public override long GetTimestamp() => Interlocked.Read(ref _ticks);

        public void Advance(TimeSpan by) => Interlocked.Add(ref _ticks, by.Ticks);
    }
}
