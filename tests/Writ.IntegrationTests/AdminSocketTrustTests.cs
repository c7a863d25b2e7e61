using System.Diagnostics;
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
    private sealed class NobodyServer : IAsyncDisposable
    {
        private readonly Process _process;

        private NobodyServer(Process process, string socket, LineLog output)
        {
            _process = process;
            Socket = socket;
            Output = output;
        }

        public string Socket { get; }
        public LineLog Output { get; }

        public static async Task<NobodyServer> StartAsync(string workingDir, string dataDir)
        {
            Directory.CreateDirectory(dataDir);
            foreach (var d in new[] { Path.GetDirectoryName(dataDir)!, dataDir })
            {
                await Chown(d);
            }
            var socket = Path.Combine(dataDir, "admin.sock");
            var psi = new ProcessStartInfo("runuser") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = workingDir };
            foreach (var a in new[] { "-u", Nobody, "--", "dotnet", Repo.WritDll, "server", "run", "--trust-domain", "evil.example",
                         "--data-dir", dataDir, "--admin-socket", socket, "--bind", "127.0.0.1:0" })
            {
                psi.ArgumentList.Add(a);
            }
            var output = new LineLog();
            var p = Process.Start(psi) ?? throw new InvalidOperationException("could not start runuser");
            p.OutputDataReceived += (_, e) => output.Add(e.Data);
            p.ErrorDataReceived += (_, e) => output.Add(e.Data);
            p.BeginOutputReadLine();
            p.BeginErrorReadLine();
            var server = new NobodyServer(p, socket, output);
            try
            {
                await output.WaitForAsync(l => l.StartsWith("ready ", StringComparison.Ordinal), TimeSpan.FromSeconds(60), () => p.HasExited);
            }
            catch
            {
                await server.DisposeAsync();
                throw;
            }
            return server;
        }

        private static async Task Chown(string path)
        {
            var r = await Proc.RunAsync("chown", [Nobody, path]);
            Assert.True(r.ExitCode == 0, r.ToString());
        }

        public async ValueTask DisposeAsync()
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
                await _process.WaitForExitAsync();
            }
            _process.Dispose();
        }
    }

    /// <summary>A bare Unix-socket listener (python3) that accepts and hangs up; optionally drops to a uid before listen().</summary>
    private sealed class Listener : IAsyncDisposable
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

        private readonly Process _process;

        private Listener(Process process) => _process = process;

        public static async Task<Listener> StartAsync(string path, int? dropTo)
        {
            var psi = new ProcessStartInfo("/usr/bin/python3") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            foreach (var a in new[] { "-c", Script, path, dropTo?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "-" })
            {
                psi.ArgumentList.Add(a);
            }
            var output = new LineLog();
            var p = Process.Start(psi) ?? throw new InvalidOperationException("could not start python3");
            p.OutputDataReceived += (_, e) => output.Add(e.Data);
            p.ErrorDataReceived += (_, e) => output.Add(e.Data);
            p.BeginOutputReadLine();
            p.BeginErrorReadLine();
            var listener = new Listener(p);
            try
            {
                await output.WaitForAsync(l => l == "listening", TimeSpan.FromSeconds(30), () => p.HasExited);
            }
            catch
            {
                await listener.DisposeAsync();
                throw;
            }
            return listener;
        }

        public async ValueTask DisposeAsync()
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
                await _process.WaitForExitAsync();
            }
            _process.Dispose();
        }
    }
}
