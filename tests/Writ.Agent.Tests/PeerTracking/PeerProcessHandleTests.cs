using System.Net.Sockets;
using Writ.Agent.PeerTracking;
using Writ.Agent.Tests.TestSupport;
using Writ.Agent.WorkloadAttestation;
using Writ.Protocol.Evidence;

namespace Writ.Agent.Tests.PeerTracking;

public sealed class PeerProcessHandleTests
{
    // Connects, reports its pid, then (if asked) forks a child that keeps the socket and exits.
    private const string ClientScript = """
        import os, socket, sys
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(sys.argv[1])
        me = os.getpid()
        if sys.argv[2] == "handoff":
            if os.fork() == 0:
                s.sendall(("%d\n" % me).encode())
                s.recv(1)
                os._exit(0)
            os._exit(0)
        s.sendall(("%d\n" % me).encode())
        s.recv(1)
        """;

    [Fact]
    public async Task The_pidfd_names_the_live_connecting_process()
    {
        using var server = await Server.ConnectAsync("stay");
        Assert.True(PeerProcessHandle.TryOpen(server.Connection, out PeerProcessHandle? handle, out bool unsupported, out string? error), error);
        Assert.False(unsupported);
        using (handle)
        {
            Assert.Equal(server.ReportedPid, handle!.CurrentPid);
        }
    }

    [Fact]
    public async Task The_pidfd_reports_a_connecting_process_that_exited_as_gone()
    {
        using var server = await Server.ConnectAsync("handoff");
        server.Client.Process.WaitForExit();
        Wait.Until(() => !Directory.Exists($"/proc/{server.ReportedPid}"), "connector reaped");
        Assert.True(PeerProcessHandle.TryOpen(server.Connection, out PeerProcessHandle? handle, out _, out string? error), error);
        using (handle)
        {
            Assert.Null(handle!.CurrentPid);
        }
    }

    [Fact]
    public async Task A_recycled_pid_between_connect_and_pin_is_caught_with_the_pidfd()
    {
        // The attack: connect, hand the socket to a child, exit, and get a trusted process to reuse
        // the pid before the agent pins it (the connection can wait in the listen backlog). Real pid
        // reuse is simulated by a proc tree in which that pid is alive again.
        using var server = await Server.ConnectAsync("handoff");
        server.Client.Process.WaitForExit();
        Wait.Until(() => !Directory.Exists($"/proc/{server.ReportedPid}"), "connector reaped");
        Assert.True(PeerCredentialReader.TryRead(server.Connection, out PeerCredentials peer, out _));
        using var proc = new FakeProc();
        proc.Write(peer.Pid, "stat", FakeProc.StatLine(peer.Pid, "trusted-daemon", 'S', 123));
        var runner = new WorkloadAttestationRunner([new Marker()], proc, TimeSpan.FromSeconds(10), new ListLogger());

        // Without the pidfd the recycled pid is indistinguishable (this is the gap it closes) ...
        WorkloadAttestationResult blind = await runner.AttestAsync(peer, TestContext.Current.CancellationToken);
        Assert.NotNull(blind.Evidence);

        // ... with it, the agent knows the process that connected is gone.
        Assert.True(PeerProcessHandle.TryOpen(server.Connection, out PeerProcessHandle? handle, out _, out string? error), error);
        using (handle)
        {
            WorkloadAttestationResult result = await runner.AttestAsync(peer, handle, TestContext.Current.CancellationToken);
            Assert.Null(result.Evidence);
            Assert.Contains("has exited and the pid may belong to another process", result.Error, StringComparison.Ordinal);
        }

        WorkloadAttestationResult viaSocket = await runner.AttestConnectionAsync(server.Connection, TestContext.Current.CancellationToken);
        Assert.Null(viaSocket.Evidence);
        Assert.NotNull(viaSocket.Error);
    }

    [Fact]
    public async Task Attesting_a_live_connection_end_to_end_succeeds()
    {
        using var server = await Server.ConnectAsync("stay");
        var runner = new WorkloadAttestationRunner([new UnixWorkloadAttestor(ProcFs.Host)], ProcFs.Host, TimeSpan.FromSeconds(10), new ListLogger());

        WorkloadAttestationResult result = await runner.AttestConnectionAsync(server.Connection, TestContext.Current.CancellationToken);

        Assert.Null(result.Error);
        Assert.Equal(server.ReportedPid, result.Evidence!.Process.Peer.Pid);
        Assert.Contains(result.Evidence.Selectors, s => s.ToString() == "unix:uid:0");
    }

    private sealed class Marker : IWorkloadAttestor
    {
        public string Name => "marker";

        public Task<AttestorResult> AttestAsync(WorkloadProcess process, CancellationToken ct) =>
            Task.FromResult(AttestorResult.Success(Name, [new Selector("marker", "seen")], new Dictionary<string, string>()));
    }

    private sealed class Server : IDisposable
    {
        private readonly TempDir _dir;
        private readonly Socket _listener;

        private Server(TempDir dir, Socket listener, Child client, Socket connection, int reportedPid)
        {
            _dir = dir;
            _listener = listener;
            Client = client;
            Connection = connection;
            ReportedPid = reportedPid;
        }

        public Child Client { get; }

        public Socket Connection { get; }

        public int ReportedPid { get; }

        public static async Task<Server> ConnectAsync(string mode)
        {
            var dir = new TempDir();
            string path = dir.Combine("agent.sock");
            var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            listener.Bind(new UnixDomainSocketEndPoint(path));
            listener.Listen(1);
            Child client = Child.Start("/usr/bin/python3", "-c", ClientScript, path, mode);
            Socket conn = await listener.AcceptAsync(TestContext.Current.CancellationToken);
            var buffer = new byte[64];
            int total = 0;
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(15));
            while (total == 0 || buffer[total - 1] != (byte)'\n')
            {
                int n = await conn.ReceiveAsync(buffer.AsMemory(total), SocketFlags.None, cts.Token);
                Assert.NotEqual(0, n);
                total += n;
            }

            int pid = int.Parse(System.Text.Encoding.ASCII.GetString(buffer, 0, total).Trim(), System.Globalization.CultureInfo.InvariantCulture);
            return new Server(dir, listener, client, conn, pid);
        }

        public void Dispose()
        {
            Connection.Dispose();
            _listener.Dispose();
            Client.Dispose();
            _dir.Dispose();
        }
    }
}
