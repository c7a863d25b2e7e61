using System.Diagnostics;
using System.Net.Sockets;
using Writ.Agent.PeerTracking;
using Writ.Agent.Tests.TestSupport;

namespace Writ.Agent.Tests.PeerTracking;

public sealed class PeerCredentialReaderTests
{
    private const int Nobody = 65534;

    // The client reports what it believes it is, tries to forge SCM_CREDENTIALS as root/pid 1,
    // then waits for the server to close the connection.
    private const string ClientScript = """
        import os, socket, struct, sys
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(sys.argv[1])
        try:
            s.sendmsg([b"x"], [(socket.SOL_SOCKET, socket.SCM_CREDENTIALS, struct.pack("iII", 1, 0, 0))])
            forged = "sent"
        except PermissionError:
            forged = "EPERM"
        s.sendall(("%d %d %d %s\n" % (os.getpid(), os.getuid(), os.getgid(), forged)).encode())
        s.recv(1)
        """;

    [Fact]
    public async Task Reads_the_kernel_credentials_of_a_client_running_as_nobody_and_a_forged_claim_changes_nothing()
    {
        using var dir = new TempDir();
        File.SetUnixFileMode(dir.Path, (UnixFileMode)0b111_111_111);
        string socketPath = dir.Combine("agent.sock");
        string script = dir.Combine("client.py");
        await File.WriteAllTextAsync(script, ClientScript, TestContext.Current.CancellationToken);
        File.SetUnixFileMode(script, (UnixFileMode)0b110_100_100);

        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(socketPath));
        File.SetUnixFileMode(socketPath, (UnixFileMode)0b111_111_111);
        listener.Listen(1);

        using Child client = Child.StartExpecting("/usr/sbin/runuser", "/usr/sbin/runuser", "-u", "nobody", "--", "/usr/bin/python3", script, socketPath);
        using Socket conn = await listener.AcceptAsync(TestContext.Current.CancellationToken);
        string reported = await ReadLineAsync(conn);
        string[] parts = reported.Split(' ');
        int clientPid = int.Parse(parts[0], System.Globalization.CultureInfo.InvariantCulture);

        Assert.True(PeerCredentialReader.TryRead(conn, out PeerCredentials creds, out string? error), error);
        Assert.Null(error);
        Assert.Equal(new PeerCredentials(clientPid, Nobody, Nobody), creds);
        Assert.NotEqual(client.Pid, creds.Pid); // runuser forks: the peer is the python process itself
        Assert.Equal($"{clientPid} {Nobody} {Nobody} EPERM", reported.Trim());
    }

    [Fact]
    public async Task Reports_the_process_that_connected_even_after_it_exits_and_leaves_the_socket_to_a_child()
    {
        // The connecting process forks, exits, and its child keeps the connection: SO_PEERCRED
        // still names the (now dead) connecting pid, never the child, so pinning must fail later.
        const string script = """
            import os, socket, sys
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(sys.argv[1])
            me = os.getpid()
            if os.fork() == 0:
                s.sendall(("%d %d\n" % (me, os.getpid())).encode())
                s.recv(1)
                os._exit(0)
            os._exit(0)
            """;
        using var dir = new TempDir();
        string socketPath = dir.Combine("agent.sock");
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(socketPath));
        listener.Listen(1);
        using Child client = Child.Start("/usr/bin/python3", "-c", script, socketPath);
        using Socket conn = await listener.AcceptAsync(TestContext.Current.CancellationToken);
        string[] pids = (await ReadLineAsync(conn)).Trim().Split(' ');
        int connector = int.Parse(pids[0], System.Globalization.CultureInfo.InvariantCulture);
        int holder = int.Parse(pids[1], System.Globalization.CultureInfo.InvariantCulture);
        client.Process.WaitForExit();

        Assert.True(PeerCredentialReader.TryRead(conn, out PeerCredentials creds, out _));
        Assert.Equal(connector, creds.Pid);
        Assert.NotEqual(holder, creds.Pid);
        Assert.False(ProcessPin.TryCreate(ProcFs.Host, creds.Pid, out _, out string? pinError));
        Assert.Contains($"process {connector}", pinError, StringComparison.Ordinal);
    }

    [Fact]
    public void Refuses_a_tcp_socket()
    {
        using var tcp = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        Assert.False(PeerCredentialReader.TryRead(tcp, out PeerCredentials creds, out string? error));
        Assert.Equal(default, creds);
        Assert.Contains("Unix-domain socket", error, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', error!);
    }

    [Fact]
    public void Refuses_an_unconnected_unix_socket()
    {
        using var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        Assert.False(PeerCredentialReader.TryRead(s, out PeerCredentials creds, out string? error));
        Assert.Equal(default, creds);
        Assert.NotNull(error);
    }

    [Fact]
    public async Task Reads_the_credentials_of_a_socketpair_peer_in_this_process()
    {
        using var dir = new TempDir();
        string socketPath = dir.Combine("agent.sock");
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(socketPath));
        listener.Listen(1);
        using var client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await client.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), TestContext.Current.CancellationToken);
        using Socket conn = await listener.AcceptAsync(TestContext.Current.CancellationToken);

        Assert.True(PeerCredentialReader.TryRead(conn, out PeerCredentials creds, out string? error), error);
        Assert.Equal(Environment.ProcessId, creds.Pid);
        Assert.Equal(0, creds.Uid); // the tests run as root
    }

    private static async Task<string> ReadLineAsync(Socket conn)
    {
        var buffer = new byte[256];
        var text = new System.Text.StringBuilder();
        var sw = Stopwatch.StartNew();
        while (!text.ToString().Contains('\n', StringComparison.Ordinal))
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(15));
            int n = await conn.ReceiveAsync(buffer, SocketFlags.None, cts.Token);
            if (n == 0)
            {
                break;
            }

            text.Append(System.Text.Encoding.ASCII.GetString(buffer, 0, n));
        }

        // The forged-credential attempt may have delivered one "x" byte first.
        return text.ToString().TrimStart('x');
    }
}
