using Writ.IntegrationTests.Harness;

namespace Writ.IntegrationTests;

/// <summary>
/// deploy/systemd's units (issue #11.8): systemd-analyze accepts them, and their ExecStart lines, with the settings of
/// the example environment files, start a server and an agent that can be stopped (SIGTERM, as systemd stops them) and
/// started again at will. systemd is not PID 1 here, so the test runs each ExecStart itself, rewritten only where the
/// machine's directories are: `/usr/local/bin/writ` is the built executable; `/etc/writ/`, `/var/lib/` and `/run/` move under a
/// temp directory; the bind address is 127.0.0.1:0 and the agent's server the address
/// the server's ready line gave; the agent's join token comes from `writ token generate`.
/// </summary>
public sealed class SystemdUnitTests
{
    private static readonly string Deploy = Path.Combine(Repo.Root, "deploy", "systemd");
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(90);

    [Theory]
    [InlineData("writ-server.service")]
    [InlineData("writ-agent.service")]
    public async Task Systemd_analyze_verifies_the_unit(string unit)
    {
        var analyze = new[] { "/usr/bin/systemd-analyze", "/bin/systemd-analyze" }.FirstOrDefault(File.Exists);
        // .ci/run installs it; only a developer's machine without it may skip, never CI.
        Assert.SkipWhen(analyze is null && Environment.GetEnvironmentVariable("CI") is null, "systemd-analyze is not installed (apt package systemd)");
        Assert.True(analyze is not null, "systemd-analyze is not installed: install the apt package systemd (.ci/run does)");
        using var dir = new TempDir();
        // verify checks that ExecStart's program exists: point it at the built writ, change nothing else.
        var copy = dir[unit];
        await File.WriteAllTextAsync(copy, (await File.ReadAllTextAsync(Path.Combine(Deploy, unit))).Replace("/usr/local/bin/writ", WritExe, StringComparison.Ordinal));
        var r = await Proc.RunAsync(analyze!, ["verify", "--man=no", copy]);
        Assert.True(r.ExitCode == 0 && r.Stderr.Trim().Length == 0, r.ToString());
    }

    [Fact]
    public async Task The_units_ExecStart_lines_start_server_and_agent_and_both_restart_at_will()
    {
        using var dir = new TempDir();
        var server = Unit.Load("writ-server.service", dir.Path);
        var agent = Unit.Load("writ-agent.service", dir.Path);
        server.Environment["WRIT_SERVER_BIND"] = "127.0.0.1:0";

        var (s, ready) = await server.StartAsync();
        var agentApi = ready.Split(' ').First(w => w.StartsWith("agent_api=", StringComparison.Ordinal))["agent_api=".Length..];
        string[] admin = ["--admin-socket", Path.Combine(dir.Path, "run", "writ", "server.sock")];
        var bundle = await Proc.WritAsync(["bundle", "show", .. admin]);
        Assert.True(bundle.ExitCode == 0, bundle.ToString());
        var bundleFile = agent.Environment["WRIT_AGENT_TRUST_BUNDLE"]!;
        Directory.CreateDirectory(Path.GetDirectoryName(bundleFile)!);
        await File.WriteAllTextAsync(bundleFile, bundle.Stdout);
        var token = await Proc.WritAsync(["token", "generate", "--output", "json", .. admin]);
        Assert.True(token.ExitCode == 0, token.ToString());
        using (var doc = System.Text.Json.JsonDocument.Parse(token.Stdout))
        {
            agent.Environment["WRIT_AGENT_JOIN_TOKEN"] = doc.RootElement.GetProperty("token").GetString();
        }
        agent.Environment["WRIT_AGENT_SERVER"] = agentApi;

        var (a, _) = await agent.StartAsync();
        try
        {
            // Restart at will: the agent (its join token is used up; it has its SVID), then the server, then the agent
            // again. (Stopping the server while agents hold their sync streams is ServerLifecycleTests' subject.)
            await a.StopAsync();
            (a, _) = await agent.StartAsync();
            await a.StopAsync();
            await s.StopAsync();
            server.Environment["WRIT_SERVER_BIND"] = agentApi;   // the agent's environment file names this address
            (s, _) = await server.StartAsync();
            (a, _) = await agent.StartAsync();
            var health = await Proc.WritAsync(["healthcheck", .. admin]);
            Assert.True(health.ExitCode == 0, health.ToString());
            Assert.True(File.Exists(Path.Combine(dir.Path, "run", "writ", "workload.sock")), "no Workload API socket at the unit's path");
        }
        finally
        {
            await a.DisposeAsync();
            await s.DisposeAsync();
        }
    }

    private static string WritExe => Path.Combine(Path.GetDirectoryName(Repo.WritDll)!, "writ");

    /// <summary>A unit's ExecStart and environment (its Environment= lines and its EnvironmentFile from deploy/systemd).</summary>
    private sealed class Unit
    {
        private Unit(string[] argv, Dictionary<string, string?> environment)
        {
            Argv = argv;
            Environment = environment;
        }

        public string[] Argv { get; }
        public Dictionary<string, string?> Environment { get; }

        public static Unit Load(string name, string root)
        {
            string Rewrite(string s) => s.Replace("/usr/local/bin/writ", WritExe, StringComparison.Ordinal)
                .Replace("/etc/writ/", root + "/etc/writ/", StringComparison.Ordinal)
                .Replace("/var/lib/", root + "/var/lib/", StringComparison.Ordinal)
                .Replace("/run/", root + "/run/", StringComparison.Ordinal);
            var env = new Dictionary<string, string?>(StringComparer.Ordinal);
            string[]? argv = null;
            foreach (var line in File.ReadAllLines(Path.Combine(Deploy, name)))
            {
                if (line.StartsWith("ExecStart=", StringComparison.Ordinal))
                {
                    argv = Rewrite(line["ExecStart=".Length..]).Split(' ', StringSplitOptions.RemoveEmptyEntries);
                }
                else if (line.StartsWith("Environment=", StringComparison.Ordinal))
                {
                    Set(env, Rewrite(line["Environment=".Length..]));
                }
                else if (line.StartsWith("EnvironmentFile=", StringComparison.Ordinal))
                {
                    // /etc/writ/server.env is installed from deploy/systemd/server.env (docs/install.md).
                    var installed = Path.Combine(Deploy, Path.GetFileName(line["EnvironmentFile=".Length..]));
                    foreach (var setting in File.ReadAllLines(installed).Where(l => l.Length > 0 && !l.StartsWith('#')))
                    {
                        Set(env, Rewrite(setting));
                    }
                }
            }
            Assert.NotNull(argv);
            return new Unit(argv, env);
        }

        private static void Set(Dictionary<string, string?> env, string assignment)
        {
            var eq = assignment.IndexOf('=', StringComparison.Ordinal);
            env[assignment[..eq]] = assignment[(eq + 1)..];
        }

        /// <summary>Runs ExecStart with the unit's environment; returns once it printed its ready line.</summary>
        public Task<(BackgroundProcess Process, string Ready)> StartAsync() =>
            BackgroundProcess.StartAndWaitAsync(l => l.StartsWith("ready ", StringComparison.Ordinal), Deadline, "/", Environment, Argv[0], [.. Argv.Skip(1)]);
    }
}
