using System.Globalization;
using Writ.Cli.Workload;
using Writ.IntegrationTests.Harness;

namespace Writ.IntegrationTests;

/// <summary>
/// Issue #12 item 1: a local user floods the agent's Workload API with connections, each making one FetchX509SVID and
/// staying open, while a registered workload of another uid keeps its stream. The agent's file-descriptor limit is
/// lowered (prlimit) so the point where it would run out is within the flood's reach.
/// </summary>
public sealed class WorkloadApiFloodTests
{
    private const int FdLimit = 1024;
    private const int Connections = 3000;

    /// <summary>
    /// Opens argv[2] connections to argv[1], each sending the HTTP/2 preface and one FetchX509SVID (headers as HPACK
    /// literals, an empty request message), keeps every one open, prints "opened N failed M" and waits for stdin to close.
    /// </summary>
    private const string Flood = """
        import socket, struct, sys
        def frame(kind, flags, stream, payload):
            return struct.pack('>I', len(payload))[1:] + bytes([kind, flags]) + struct.pack('>I', stream) + payload
        def literal(name, value):
            return b'\x00' + bytes([len(name)]) + name + bytes([len(value)]) + value
        headers = b''.join(literal(n, v) for n, v in [(b':method', b'POST'), (b':scheme', b'http'),
            (b':path', b'/SpiffeWorkloadAPI/FetchX509SVID'), (b':authority', b'localhost'),
            (b'content-type', b'application/grpc'), (b'te', b'trailers'), (b'workload.spiffe.io', b'true')])
        request = b'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n' + frame(4, 0, 0, b'') + frame(1, 4, 1, headers) + frame(0, 1, 1, b'\x00' * 5)
        held, failed = [], 0
        for _ in range(int(sys.argv[2])):
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(5)
            try:
                s.connect(sys.argv[1])
                s.sendall(request)
            except OSError:
                failed += 1
            held.append(s)
        print('opened', len(held) - failed, 'failed', failed, flush=True)
        sys.stdin.read()
        """;

    [Fact]
    public async Task Attack_a_connection_flood_from_nobody_leaves_the_agent_up_and_another_uids_workload_rotating()
    {
        await using var rig = await AgentRig.StartAsync();
        await rig.CreateEntryAsync("spiffe://example.org/victim", ["unix:uid:0"], "--x509-ttl", "20s");
        await AgentTests.WaitForSvidAsync(rig);
        var prlimit = await Proc.RunAsync("prlimit", ["--pid", rig.Agent.Pid.ToString(CultureInfo.InvariantCulture), $"--nofile={FdLimit}:{FdLimit}"]);
        Assert.True(prlimit.ExitCode == 0, prlimit.ToString());

        // The victim: this test process (uid 0), its stream open before the flood.
        using var victim = rig.Client();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(150));
        using var stream = victim.Client.FetchX509SVID(new X509SVIDRequest(), WorkloadClient.Headers, cancellationToken: cts.Token);
        Assert.True(await stream.ResponseStream.MoveNext(cts.Token));
        var before = Serial(stream.ResponseStream.Current);

        await using var flood = BackgroundProcess.Start("/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
            "/usr/bin/python3", "-c", Flood, rig.Agent.SocketPath, Connections.ToString(CultureInfo.InvariantCulture));
        var opened = await flood.Stdout.WaitForAsync(l => l.StartsWith("opened ", StringComparison.Ordinal), TimeSpan.FromSeconds(120), () => flood.HasExited);
        TestContext.Current.SendDiagnosticMessage($"flood from nobody: {opened}; agent fd limit {FdLimit}");

        // While nobody holds what it could open: the victim's open stream rotates, and a new call is served.
        string rotated;
        do
        {
            Assert.True(await NextAsync(rig, stream.ResponseStream, cts.Token), "the victim's stream ended during the flood");
            rotated = Serial(stream.ResponseStream.Current);
        }
        while (rotated == before);
        Assert.Equal("spiffe://example.org/victim", Assert.Single((await FetchAsync(rig, "a new call during the flood")).Svids).SpiffeId);
        Assert.False(rig.Agent.HasExited, $"the agent exited during the flood:\n{rig.Agent.Stderr.Text}");
        Assert.Contains("WRIT-AGENT-CONN-UID", rig.Agent.Stderr.Text, StringComparison.Ordinal);   // nobody was refused, not served without bound

        flood.CloseInput();
        await flood.WaitForExitAsync(TimeSpan.FromSeconds(30));
        do
        {
            Assert.True(await NextAsync(rig, stream.ResponseStream, cts.Token), "the victim's stream ended after the flood");
        }
        while (Serial(stream.ResponseStream.Current) == rotated);
        Assert.Single((await FetchAsync(rig, "a new call after the flood")).Svids);
        Assert.False(rig.Agent.HasExited, $"the agent exited after the flood:\n{rig.Agent.Stderr.Text}");
        Assert.DoesNotContain("Out of memory", rig.Agent.Stderr.Text, StringComparison.Ordinal);
    }

    /// <summary>
    /// A new connection's FetchX509SVID, retried as SPIFFE clients do (Unavailable → backoff): while the flood is on, its
    /// connections may fill the socket's listen backlog for a moment (the kernel then refuses a connect with EAGAIN).
    /// </summary>
    private static Task<X509SVIDResponse> FetchAsync(AgentRig rig, string what) =>
        WorkloadTools.EventuallyAsync(async () =>
        {
            using var client = rig.Client();
            return await client.FetchX509Async(CancellationToken.None);
        }, TimeSpan.FromSeconds(30), what);

    /// <summary>The stream's next message; a failure carries the agent's log (did it exit, what did it refuse).</summary>
    private static async Task<bool> NextAsync(AgentRig rig, Grpc.Core.IAsyncStreamReader<X509SVIDResponse> stream, CancellationToken ct)
    {
        try
        {
            return await stream.MoveNext(ct);
        }
        catch (Grpc.Core.RpcException e)
        {
            throw new InvalidOperationException($"the victim's stream failed ({e.Status}); agent exited: {rig.Agent.HasExited}\n--- agent stderr\n{rig.Agent.Stderr.Text}", e);
        }
    }

    private static string Serial(X509SVIDResponse response)
    {
        using var leaf = WorkloadClient.ParseCertificates(response.Svids[0].X509Svid.Span)[0];
        return leaf.SerialNumber;
    }
}
