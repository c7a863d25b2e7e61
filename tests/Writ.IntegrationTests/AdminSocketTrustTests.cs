using Writ.IntegrationTests.Harness;

namespace Writ.IntegrationTests;

/// <summary>
/// The admin CLI talks only to a server it can trust (issue #12.6): the admin API hands out the CA bundle and join
/// tokens, so root running `writ bundle show` must never reach a server another user started. The attacker here is
/// 'nobody' running a real Writ server (or a bare listener) where root's CLI might look. Runs as root.
/// </summary>
public sealed class AdminSocketTrustTests
{
    private const string Nobody = "nobody";

    [Fact]
    public async Task The_default_admin_socket_is_never_taken_from_the_working_directory()
    {
        using var dir = new TempDir();
        File.SetUnixFileMode(dir.Path, (UnixFileMode)0b111_101_101);
        var shared = dir["shared"];   // a directory both users can write, as /tmp is
        Directory.CreateDirectory(shared);
        File.SetUnixFileMode(shared, (UnixFileMode)0b111_111_111 | UnixFileMode.StickyBit);
        var evilDir = Path.Combine(shared, ".writ", "server");
        await using var evil = await NobodyServer.StartAsync(shared, evilDir);
        // The attack is live: its owner gets the evil CA from it.
        var evilBundle = await Proc.RunAsync("runuser", ["-u", Nobody, "--", "dotnet", Repo.WritDll, "bundle", "show", "--admin-socket", evil.Socket], workingDir: "/");
        Assert.True(evilBundle.ExitCode == 0 && evilBundle.Stdout.Contains("BEGIN CERTIFICATE", StringComparison.Ordinal), evilBundle.ToString());

        // root, in that directory, with no --admin-socket and no WRIT_ADMIN_SOCKET (Proc removes it).
        foreach (var command in new[] { new[] { "bundle", "show" }, ["token", "generate"] })
        {
            var r = await Proc.RunAsync("dotnet", [Repo.WritDll, .. command], workingDir: shared);
            Assert.DoesNotContain(evilBundle.Stdout.Trim(), r.Stdout, StringComparison.Ordinal);
            Assert.DoesNotContain(evilDir, r.Stdout + r.Stderr, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task A_socket_another_user_owns_is_refused_even_when_named()
    {
        using var dir = new TempDir();
        File.SetUnixFileMode(dir.Path, (UnixFileMode)0b111_101_101);
        var home = dir["nobody"];
        Directory.CreateDirectory(home);
        await using var evil = await NobodyServer.StartAsync(home, Path.Combine(home, "server"));
        foreach (var command in new[] { new[] { "bundle", "show" }, ["token", "generate"], ["audit", "verify"] })
        {
            var r = await Proc.WritAsync(new Dictionary<string, string?> { ["WRIT_ADMIN_SOCKET"] = evil.Socket }, command);
            Expect.OneLineError(r, "belongs to uid 65534");
        }
    }

    [Fact]
    public async Task A_server_running_as_another_uid_is_refused_even_on_a_socket_root_owns()
    {
        // Bound by root (so the file and its directory are root's), then listening as nobody: only the kernel-reported
        // peer credentials (SO_PEERCRED, taken at listen) tell who answers.
        using var dir = new TempDir();
        var socket = dir["admin.sock"];
        await using var listener = await Listener.StartAsync(socket, dropTo: 65534);
        var r = await Proc.WritAsync("bundle", "show", "--admin-socket", socket);
        Expect.OneLineError(r, "runs as uid 65534");
    }

    [Fact]
    public async Task A_socket_in_a_directory_others_may_write_is_refused()
    {
        using var dir = new TempDir();
        var open = dir["open"];
        Directory.CreateDirectory(open);
        File.SetUnixFileMode(open, (UnixFileMode)0b111_111_111);   // no sticky bit: anyone may replace the socket
        var socket = Path.Combine(open, "admin.sock");
        await using var listener = await Listener.StartAsync(socket, dropTo: null);
        var r = await Proc.WritAsync("bundle", "show", "--admin-socket", socket);
        Expect.OneLineError(r, "is writable by other users");
    }

    /// <summary>A real `writ server run` as nobody, with its admin socket in <paramref name="dataDir"/>.</summary>
    private sealed class NobodyServer(BackgroundProcess process, string socket) : IAsyncDisposable
    {
        public string Socket { get; } = socket;

        public static async Task<NobodyServer> StartAsync(string workingDir, string dataDir)
        {
            Directory.CreateDirectory(dataDir);
            foreach (var d in new[] { Path.GetDirectoryName(dataDir)!, dataDir })
            {
                var chown = await Proc.RunAsync("chown", [Nobody, d]);
                Assert.True(chown.ExitCode == 0, chown.ToString());
            }
            var socket = Path.Combine(dataDir, "admin.sock");
            var (p, _) = await BackgroundProcess.StartAndWaitAsync(l => l.StartsWith("ready ", StringComparison.Ordinal), TimeSpan.FromSeconds(60),
                workingDir, null, "runuser", "-u", Nobody, "--", "dotnet", Repo.WritDll, "server", "run", "--trust-domain", "evil.example",
                "--data-dir", dataDir, "--admin-socket", socket, "--bind", "127.0.0.1:0");
            return new NobodyServer(p, socket);
        }

        public ValueTask DisposeAsync() => process.DisposeAsync();
    }

    /// <summary>A bare Unix-socket listener (python3) that accepts and hangs up; optionally drops to a uid before listen().</summary>
    private static class Listener
    {
        private const string Script = """
            import os, socket, sys
            s = socket.socket(socket.AF_UNIX)
            s.bind(sys.argv[1])
            os.chmod(sys.argv[1], 0o600)
            if sys.argv[2] != "-":
                os.setgroups([]); os.setgid(int(sys.argv[2])); os.setuid(int(sys.argv[2]))
            s.listen(8)
            print("listening", flush=True)
            while True:
                c, _ = s.accept()
                c.close()
            """;

        public static async Task<BackgroundProcess> StartAsync(string path, int? dropTo)
        {
            var (p, _) = await BackgroundProcess.StartAndWaitAsync(l => l == "listening", TimeSpan.FromSeconds(30), null, null,
                "/usr/bin/python3", "-c", Script, path, dropTo?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "-");
            return p;
        }
    }
}
