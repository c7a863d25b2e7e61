using System.Text.Json;

namespace Writ.IntegrationTests.Harness;

/// <summary>
/// A workload instance that keeps running while a test uses its credentials. Since issue #6 the agent revokes what it
/// issued to an instance (a process: pid and start time) as soon as that process exits, so a token or SVID fetched by a
/// short-lived command is revoked by the time the test uses it. A held workload prints its result, then waits for its
/// stdin to close (<see cref="ReleaseAsync"/>) and exits; dispose kills it if it is still running.
/// </summary>
public sealed class HeldWorkload : IAsyncDisposable
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(60);

    private HeldWorkload(BackgroundProcess process, string output)
    {
        Process = process;
        Output = output;
    }

    public BackgroundProcess Process { get; }

    /// <summary>The first line the workload printed (a token, or the node client's JSON).</summary>
    public string Output { get; }

    /// <summary>`writ jwt fetch ARGS --hold` on the rig's agent: <see cref="Output"/> is the token.</summary>
    public static Task<HeldWorkload> JwtAsync(AgentRig rig, params string[] args) =>
        StartAsync(BackgroundProcess.Writ(["jwt", "fetch", .. args, "--hold", "--socket", rig.Agent.SocketPath]));

    /// <summary>
    /// `node jwt-binding.mjs fetch SOCKET AUDIENCE OUTDIR --hold`: one instance writes OUTDIR/svid.pem and svid.key and
    /// prints a JWT-SVID bound to that SVID (<see cref="Output"/> is its JSON line).
    /// </summary>
    public static Task<HeldWorkload> NodeFetchAsync(AgentRig rig, string audience, string outDir) =>
        StartAsync(BackgroundProcess.StartIn(WorkloadTools.InteropDir, "node",
            Path.Combine(WorkloadTools.InteropDir, "jwt-binding.mjs"), "fetch", rig.Agent.SocketPath, audience, outDir, "--hold"));

    private static async Task<HeldWorkload> StartAsync(BackgroundProcess p)
    {
        try
        {
            var first = await p.Stdout.WaitForAsync(l => l.Trim().Length > 0, Deadline, () => p.HasExited
                && p.Stdout.Text.Trim().Length == 0).ConfigureAwait(false);
            Assert.False(p.HasExited, $"the held workload exited after printing its result:\n{p.Stdout.Text}\n--- stderr\n{p.Stderr.Text}");
            return new HeldWorkload(p, first.Trim());
        }
        catch
        {
            await p.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    public JsonElement Json()
    {
        using var doc = JsonDocument.Parse(Output);
        return doc.RootElement.Clone();
    }

    /// <summary>Closes the workload's stdin and waits for it to exit on its own (exit code 0).</summary>
    public async Task ReleaseAsync()
    {
        Process.CloseInput();
        var code = await Process.WaitForExitAsync(Deadline).ConfigureAwait(false);
        Assert.True(code == 0, $"the held workload exited with {code}:\n{Process.Stdout.Text}\n--- stderr\n{Process.Stderr.Text}");
    }

    /// <summary>
    /// Waits (with a deadline) until the agent's ValidateJWTSVID, asked by `writ jwt validate`, refuses
    /// <paramref name="token"/> as revoked; before that it must validate (or the wait fails at once).
    /// </summary>
    public static async Task WaitUntilRevokedAsync(AgentRig rig, string audience, string token, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            var r = await rig.WorkloadAsync("jwt", "validate", "--audience", audience, "--token", token).ConfigureAwait(false);
            if (r.ExitCode != 0)
            {
                Expect.OneLineError(r, "the JWT-SVID was revoked");
                return;
            }
            Assert.True(DateTime.UtcNow < deadline, $"the token still validated {timeout.TotalSeconds:F0} s after its holder exited:\n{r}");
            await Task.Delay(100).ConfigureAwait(false);
        }
    }

    public ValueTask DisposeAsync() => Process.DisposeAsync();
}
