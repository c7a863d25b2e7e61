using System.Text.RegularExpressions;
using Writ.IntegrationTests.Harness;

namespace Writ.IntegrationTests;

/// <summary>
/// README.md works as written (issue #11.3): every command of its ```sh blocks runs in order, as root, and exits 0, and
/// the last one — the billing user's writer — gets its SVID. The commands are run through /bin/sh after a minimal
/// rewrite, all of it here:
/// <list type="bullet">
/// <item>`./test.sh` is not run (it runs this test); `dotnet run --project src/Writ.Cli -c Release --` is `writ`.</item>
/// <item>`writ` is the built executable (its directory first on PATH); `/usr/local/bin/writ` is that file.</item>
/// <item>`/var/lib/…` and `/run/…` move under a temp directory, which is also the working directory; the machine-wide
///   admin socket `/run/writ/server.sock` moves there too, by WRIT_SERVER_ADMIN_SOCKET and WRIT_ADMIN_SOCKET.</item>
/// <item>`--bind 0.0.0.0:8081` is `127.0.0.1:0`, and `writ.example.org:8081` the address the server's ready line gave.</item>
/// <item>`&lt;placeholders&gt;` are filled from earlier output: `&lt;token&gt;` and `&lt;agent id&gt;` from `writ token
///   generate`, `&lt;sha256 of FILE&gt;` from `sha256sum FILE`.</item>
/// <item>A command ending in `&amp;` runs in the background until the test ends; the next command waits for its
///   `ready …` line. The last command (`writ svid watch`) never exits: it counts once it has written an SVID, and is
///   started again while the agent answers PermissionDenied because the new entry has not reached it yet (what
///   docs/agent.md tells clients to do).</item>
/// </list>
/// </summary>
public sealed partial class ReadmeTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(90);

    [Fact]
    public async Task The_readme_commands_run_in_order_and_the_billing_workload_gets_its_svid()
    {
        var commands = ShellCommands(await File.ReadAllTextAsync(Path.Combine(Repo.Root, "README.md")));
        Assert.True(commands.Count >= 10, "README.md has fewer shell commands than expected: " + string.Join(" | ", commands));
        Assert.Equal("dotnet run --project src/Writ.Cli -c Release -- quickstart", commands[0]);
        Assert.Equal("./test.sh", commands[1]);
        Assert.Contains("svid watch", commands[^1], StringComparison.Ordinal);

        using var dir = new TempDir();
        File.SetUnixFileMode(dir.Path, (UnixFileMode)0b111_101_101);   // the billing uid walks into run/
        var writ = Path.Combine(Path.GetDirectoryName(Repo.WritDll)!, "writ");
        var env = new Dictionary<string, string?>
        {
            ["PATH"] = Path.GetDirectoryName(writ) + ":" + Environment.GetEnvironmentVariable("PATH"),
            ["WRIT_ADMIN_SOCKET"] = Path.Combine(dir.Path, "run", "writ", "server.sock"),
            ["WRIT_SERVER_ADMIN_SOCKET"] = Path.Combine(dir.Path, "run", "writ", "server.sock"),
        };
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        var background = new List<BackgroundProcess>();
        string? agentApi = null;
        try
        {
            for (var i = 0; i < commands.Count; i++)
            {
                if (commands[i] == "./test.sh")
                {
                    continue;
                }
                var command = Rewrite(commands[i], dir.Path, writ, agentApi, values);
                if (i == commands.Count - 1)
                {
                    var svid = await RunWorkloadAsync(command, dir.Path, env, background);
                    Assert.Contains("SPIFFE ID:  spiffe://example.org/billing", svid, StringComparison.Ordinal);
                    Assert.True(File.Exists(Path.Combine(dir.Path, "run", "billing", "creds", "svid.pem")), "the writer wrote no svid.pem");
                }
                else if (command.EndsWith('&'))
                {
                    var (process, ready) = await BackgroundProcess.StartAndWaitAsync(l => l.StartsWith("ready ", StringComparison.Ordinal), Deadline,
                        dir.Path, env, "/bin/sh", "-c", command.TrimEnd('&').Trim());
                    background.Add(process);
                    agentApi ??= ReadyField(ready, "agent_api");
                }
                else
                {
                    var r = await Proc.RunAsync("/bin/sh", ["-c", command], env: env, workingDir: dir.Path, timeout: TimeSpan.FromMinutes(2));
                    Assert.True(r.ExitCode == 0, $"README command failed: {commands[i]}\nran as: {command}\n{r}");
                    Collect(r.Stdout, values);
                }
            }
        }
        finally
        {
            foreach (var p in background)
            {
                await p.DisposeAsync();
            }
        }
    }

    /// <summary>The commands of every ```sh block, continuation lines joined, comments dropped.</summary>
    internal static List<string> ShellCommands(string markdown)
    {
        var commands = new List<string>();
        foreach (Match block in ShBlock().Matches(markdown))
        {
            var joined = block.Groups[1].Value.Replace("\\\n", " ", StringComparison.Ordinal);
            foreach (var raw in joined.Split('\n'))
            {
                var line = TrailingComment().Replace(raw, "").Trim();
                if (line.Length > 0 && !line.StartsWith('#'))
                {
                    commands.Add(MultipleSpaces().Replace(line, " "));
                }
            }
        }
        return commands;
    }

    private static string Rewrite(string command, string root, string writ, string? agentApi, Dictionary<string, string> values)
    {
        var c = command.Replace("dotnet run --project src/Writ.Cli -c Release --", "writ", StringComparison.Ordinal)
            .Replace("/usr/local/bin/writ", writ, StringComparison.Ordinal)
            .Replace("0.0.0.0:8081", "127.0.0.1:0", StringComparison.Ordinal);
        if (agentApi is not null)
        {
            c = c.Replace("writ.example.org:8081", agentApi, StringComparison.Ordinal);
        }
        c = SystemDirectory().Replace(c, m => root + m.Value);
        return Placeholder().Replace(c, m => values.TryGetValue(m.Groups[1].Value, out var v) ? v
            : throw new InvalidOperationException($"README placeholder <{m.Groups[1].Value}> is not filled by any earlier command's output (known: {string.Join(", ", values.Keys)})"));
    }

    /// <summary>Values later commands' placeholders refer to.</summary>
    private static void Collect(string stdout, Dictionary<string, string> values)
    {
        foreach (var line in stdout.Split('\n'))
        {
            if (TokenLine().Match(line) is { Success: true } t)
            {
                values["token"] = t.Groups[1].Value;
            }
            if (AgentIdLine().Match(line) is { Success: true } a)
            {
                values["agent id"] = a.Groups[1].Value;
            }
            if (Sha256SumLine().Match(line) is { Success: true } s)
            {
                values["sha256 of " + s.Groups[2].Value] = s.Groups[1].Value;
            }
        }
    }

    /// <summary>Runs the never-ending workload command until it prints an SVID; returns its output.</summary>
    private static async Task<string> RunWorkloadAsync(string command, string cwd, Dictionary<string, string?> env, List<BackgroundProcess> background)
    {
        var deadline = DateTime.UtcNow + Deadline;
        while (true)
        {
            var p = BackgroundProcess.StartWith(cwd, env, "/bin/sh", "-c", command);   // killed with its whole process tree
            background.Add(p);
            try
            {
                await p.Stdout.WaitForAsync(l => l.StartsWith("SPIFFE ID:", StringComparison.Ordinal), deadline - DateTime.UtcNow, () => p.HasExited);
                return p.Stdout.Text;
            }
            catch (Exception e) when (e is InvalidOperationException or TimeoutException)
            {
                if (!(p.HasExited && DateTime.UtcNow < deadline))
                {
                    throw new InvalidOperationException($"README workload got no SVID: {command}\n{e.Message}\n--- stderr\n{p.Stderr.Text}", e);
                }
                await p.WaitForExitAsync(TimeSpan.FromSeconds(10));
                if (!p.Stderr.Text.Contains("issued no identity", StringComparison.Ordinal))
                {
                    throw new InvalidOperationException($"README workload got no SVID: {command}\n--- stderr\n{p.Stderr.Text}", e);
                }
                // The entry was created a moment ago and has not reached the agent yet: start again, as a client should.
            }
        }
    }

    private static string? ReadyField(string ready, string name) =>
        ready.Split(' ').FirstOrDefault(w => w.StartsWith(name + "=", StringComparison.Ordinal))?[(name.Length + 1)..];

    [Fact]
    public void The_extraction_joins_continuations_and_drops_comments()
    {
        const string md = "text\n```sh\n# a comment\nwrit a --x 1 \\\n  --y 2   # why\n\nwrit b &\n```\n```json\n{}\n```\n";
        Assert.Equal(["writ a --x 1 --y 2", "writ b &"], ShellCommands(md));
    }

    [GeneratedRegex(@"```sh\n(.*?)```", RegexOptions.Singleline)]
    private static partial Regex ShBlock();

    [GeneratedRegex(@"\s+#\s.*$")]
    private static partial Regex TrailingComment();

    [GeneratedRegex(@"\s{2,}")]
    private static partial Regex MultipleSpaces();

    [GeneratedRegex(@"(?<![\w.])/(?:run|var/lib)/")]
    private static partial Regex SystemDirectory();

    [GeneratedRegex(@"<([^<>]+)>")]
    private static partial Regex Placeholder();

    [GeneratedRegex(@"^Token:\s+(\S+)")]
    private static partial Regex TokenLine();

    [GeneratedRegex(@"^Agent ID:\s+(\S+)")]
    private static partial Regex AgentIdLine();

    [GeneratedRegex(@"^([0-9a-f]{64})\s+\*?(\S+)$")]
    private static partial Regex Sha256SumLine();
}
