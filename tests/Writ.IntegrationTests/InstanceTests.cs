using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using Writ.IntegrationTests.Harness;

namespace Writ.IntegrationTests;

/// <summary>
/// Credentials per workload instance and continuous re-attestation on a real server and agent, with real workload
/// processes: each process its own SVID, an exit forgotten at once, a binary replaced at its path losing the identity.
/// </summary>
public sealed class InstanceTests
{
    [Fact]
    public async Task Two_processes_of_the_same_uid_get_their_own_svids()
    {
        await using var rig = await AgentRig.StartAsync();
        await rig.CreateEntryAsync("spiffe://example.org/instances/same-uid", ["unix:uid:0"]);
        await AgentTests.WaitForSvidAsync(rig);

        // Two watching processes at once, then a third that fetches and leaves.
        await using var a = await Watcher.StartAsync("node", rig.Agent.SocketPath);
        await using var b = await Watcher.StartAsync("node", rig.Agent.SocketPath);
        var sa = (await a.NextAsync()).Serials.Single();
        var sb = (await b.NextAsync()).Serials.Single();
        Assert.NotEqual(sa, sb);

        using var dir = new TempDir();
        var fetched = await rig.WorkloadAsync("svid", "fetch", "--write", dir.Path);
        Assert.True(fetched.ExitCode == 0, fetched.ToString());
        using var cert = X509Certificate2.CreateFromPem(File.ReadAllText(Path.Combine(dir.Path, "svid.pem")));
        Assert.DoesNotContain(cert.SerialNumber, new[] { sa, sb }, StringComparer.OrdinalIgnoreCase);
    }

    [Fact]
    public async Task An_exited_process_is_forgotten_at_once_through_its_pidfd_and_reported()
    {
        // The periodic re-check is 10 min away (the longest interval allowed), so within the wait below only the pidfd
        // can notice the exit: what is proved is the path taken, not how fast a loaded machine took it.
        await using var rig = await AgentRig.StartAsync(agentArgs: ["--reattest-interval", "10m"]);
        await rig.CreateEntryAsync("spiffe://example.org/instances/exits", ["unix:uid:0"]);
        await AgentTests.WaitForSvidAsync(rig);
        await using var w = await Watcher.StartAsync("node", rig.Agent.SocketPath);
        var first = await w.NextAsync();
        Assert.Single(first.Serials);

        await w.KillAsync();
        var line = await rig.Agent.Stderr.WaitForAsync(l => l.Contains($"(pid {w.Pid}) forgotten (exited)", StringComparison.Ordinal), TimeSpan.FromSeconds(30));
        Assert.Contains("1 X.509-SVIDs", line, StringComparison.Ordinal);
        // The report reaches the server, which implements ReportInstanceGone: "does not implement" would be a regression.
        await rig.Agent.Stderr.WaitForAsync(l => l.Contains("reported gone to the server (exited)", StringComparison.Ordinal), TimeSpan.FromSeconds(30));
        Assert.DoesNotContain("does not implement ReportInstanceGone", rig.Agent.Stderr.Text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_binary_replaced_at_its_path_loses_the_identity_for_old_and_new_processes()
    {
        using var dir = new TempDir();
        await using var rig = await AgentRig.StartAsync(agentArgs: ["--reattest-interval", "1s"]);
        var bin = Path.Combine(dir.Path, "bin");
        Directory.CreateDirectory(bin);
        var path = Path.Combine(bin, "node");
        var original = (await Proc.RunAsync("sh", ["-c", "readlink -f \"$(command -v node)\""])).Stdout.Trim();
        File.Copy(original, path);
        File.SetUnixFileMode(path, (UnixFileMode)0b111_101_101);
        var hash = await Sha256Async(path);
        await rig.CreateEntryAsync("spiffe://example.org/instances/pinned-binary", ["unix:uid:0", $"unix:path:{path}", $"unix:sha256:{hash}"]);
        // Wait until the entry reached the agent: a process of the copied binary gets it.
        await Deadline.UntilAsync(async () =>
        {
            var r = await Proc.RunAsync(path, [Path.Combine(WorkloadTools.InteropDir, "workload-client.mjs"), "x509", rig.Agent.SocketPath]);
            return r.ExitCode == 0;
        }, "the entry to reach the agent");

        await using var old = await Watcher.StartAsync(path, rig.Agent.SocketPath);
        var served = await old.NextAsync();
        Assert.Equal(["spiffe://example.org/instances/pinned-binary"], served.Ids);

        // Another binary (same program, one byte longer: another hash) renamed over the path, as a package upgrade does.
        var replacement = Path.Combine(bin, "node.new");
        File.Copy(original, replacement);
        await using (var f = new FileStream(replacement, FileMode.Append))
        {
            f.WriteByte(0);
        }
        File.SetUnixFileMode(replacement, (UnixFileMode)0b111_101_101);
        File.Move(replacement, path, overwrite: true);

        // The old process still runs the old file, but its path no longer names it: re-attested within one interval,
        // its stream ends — Unauthenticated: a connection serves only the identity it was attested as, so after a
        // drift the client must reconnect (and is then attested from its new evidence).
        // The old process makes no call, so only the periodic re-check can end its stream.
        var end = await old.NextAsync(TimeSpan.FromSeconds(30));
        Assert.False(end.Ok, "the old process was still served after its binary was replaced: " + end.Raw);
        Assert.Equal("UNAUTHENTICATED", end.Name);
        await rig.Agent.Stderr.WaitForAsync(l => l.Contains($"(pid {old.Pid}) evidence drifted (executable path changed)", StringComparison.Ordinal), TimeSpan.FromSeconds(5));

        // A new process from the path runs the new binary (another hash): no identity.
        var fresh = await Proc.RunAsync(path, [Path.Combine(WorkloadTools.InteropDir, "workload-client.mjs"), "x509", rig.Agent.SocketPath]);
        Assert.Equal("PERMISSION_DENIED", WorkloadTools.StatusName(fresh));
    }

    private static async Task<string> Sha256Async(string path)
    {
        await using var f = File.OpenRead(path);
        return Convert.ToHexStringLower(await SHA256.HashDataAsync(f));
    }

    private static class Deadline
    {
        public static async Task UntilAsync(Func<Task<bool>> condition, string what)
        {
            var sw = Stopwatch.StartNew();
            while (!await condition())
            {
                if (sw.Elapsed > TimeSpan.FromSeconds(30))
                {
                    throw new TimeoutException($"timed out waiting for {what}");
                }
                await Task.Delay(100);
            }
        }
    }

    /// <summary>One event of tests/interop/instance-watch.mjs.</summary>
    private sealed record WatchEvent(bool Ok, IReadOnlyList<string> Ids, IReadOnlyList<string> Serials, string? Name, string Raw);

    /// <summary>A workload process (node, or a copy of it) holding a FetchX509SVID stream open.</summary>
    private sealed class Watcher : IAsyncDisposable
    {
        private readonly Process _process;
        private readonly System.Threading.Channels.Channel<string> _lines = System.Threading.Channels.Channel.CreateUnbounded<string>();
        private readonly LineLog _err = new();

        private Watcher(Process process)
        {
            _process = process;
        }

        public int Pid { get; private set; }

        public static async Task<Watcher> StartAsync(string node, string socket)
        {
            var psi = new ProcessStartInfo(node) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            psi.ArgumentList.Add(Path.Combine(WorkloadTools.InteropDir, "instance-watch.mjs"));
            psi.ArgumentList.Add(socket);
            var p = Process.Start(psi) ?? throw new InvalidOperationException($"could not start {node}");
            var w = new Watcher(p);
            p.OutputDataReceived += (_, e) =>
            {
                if (e.Data is { } line)
                {
                    w._lines.Writer.TryWrite(line);
                }
            };
            p.ErrorDataReceived += (_, e) => w._err.Add(e.Data);
            p.BeginOutputReadLine();
            p.BeginErrorReadLine();
            using var doc = JsonDocument.Parse(await w.ReadLineAsync(TimeSpan.FromSeconds(30)));
            w.Pid = doc.RootElement.GetProperty("pid").GetInt32();
            Assert.Equal(p.Id, w.Pid);
            return w;
        }

        private async Task<string> ReadLineAsync(TimeSpan timeout)
        {
            using var cts = new CancellationTokenSource(timeout);
            try
            {
                return await _lines.Reader.ReadAsync(cts.Token);
            }
            catch (OperationCanceledException)
            {
                throw new TimeoutException($"the watcher printed nothing within {timeout.TotalSeconds}s\n--- watcher stderr\n{_err.Text}");
            }
        }

        /// <summary>The next stream event.</summary>
        public async Task<WatchEvent> NextAsync(TimeSpan? timeout = null)
        {
            var line = await ReadLineAsync(timeout ?? TimeSpan.FromSeconds(30));
            using var doc = JsonDocument.Parse(line);
            var root = doc.RootElement;
            return root.GetProperty("ok").GetBoolean()
                ? new WatchEvent(true, [.. root.GetProperty("ids").EnumerateArray().Select(x => x.GetString()!)],
                    [.. root.GetProperty("serials").EnumerateArray().Select(x => x.GetString()!)], null, line)
                : new WatchEvent(false, [], [], root.GetProperty("name").GetString(), line);
        }

        public async Task KillAsync()
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
            }
            await _process.WaitForExitAsync();
        }

        public async ValueTask DisposeAsync()
        {
            await KillAsync();
            _process.Dispose();
        }
    }
}
