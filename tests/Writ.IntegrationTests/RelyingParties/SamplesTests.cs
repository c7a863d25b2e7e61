using Writ.IntegrationTests.Harness;

namespace Writ.IntegrationTests.RelyingParties;

/// <summary>
/// samples/ run for real: a Writ server and agent, an entry per sample executable (its apphost, by unix:path), Quotes
/// serving its SVID over mTLS and Greeter calling it with the SDK's HttpClient handler. A third identity (a copy of
/// Greeter at another path, registered as sample/intruder) gets through TLS — it is a valid SVID of the trust domain —
/// and is refused by Quotes' X.509-SVID scheme, which admits only sample/greeter.
/// </summary>
public sealed class SamplesTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(90);
    private static readonly SemaphoreSlim BuildLock = new(1, 1);

    [Fact]
    public async Task Greeter_gets_a_quote_from_Quotes_over_mTLS_and_a_third_identity_is_refused()
    {
        var quotesExe = await BuildSampleAsync("Writ.Samples.Quotes");
        var greeterExe = await BuildSampleAsync("Writ.Samples.Greeter");
        await using var rig = await AgentRig.StartAsync();

        // The intruder: the same program as Greeter, installed elsewhere, so the agent tells them apart by path.
        var intruderDir = rig["intruder"];
        CopyDirectory(Path.GetDirectoryName(greeterExe)!, intruderDir);
        var intruderExe = Path.Combine(intruderDir, "Writ.Samples.Greeter");
        File.SetUnixFileMode(intruderExe, File.GetUnixFileMode(greeterExe));

        var uid = (await Proc.RunAsync("id", ["-u"])).Stdout.Trim();
        await rig.CreateEntryAsync("spiffe://example.org/sample/quotes", [$"unix:uid:{uid}", "unix:path:" + quotesExe]);
        await rig.CreateEntryAsync("spiffe://example.org/sample/greeter", [$"unix:uid:{uid}", "unix:path:" + greeterExe]);
        await rig.CreateEntryAsync("spiffe://example.org/sample/intruder", [$"unix:uid:{uid}", "unix:path:" + intruderExe]);
        var env = new Dictionary<string, string?> { ["SPIFFE_ENDPOINT_SOCKET"] = "unix://" + rig.Agent.SocketPath };

        // Quotes starts once the agent has its entry (before that it is refused an identity and exits).
        var (quotes, ready) = await WorkloadTools.EventuallyAsync(
            () => BackgroundProcess.StartAndWaitAsync(l => l.StartsWith("quotes listening on ", StringComparison.Ordinal), Deadline, null, env, quotesExe),
            Deadline, "Quotes getting its SVID and listening");
        await using var _ = quotes;
        Assert.Contains(" as spiffe://example.org/sample/quotes ", ready, StringComparison.Ordinal);
        var url = ready.Split(' ')[3];

        var greeted = await RunUntilIdentifiedAsync(greeterExe, url, env);
        Assert.True(greeted.ExitCode == 0, greeted.ToString());
        Assert.EndsWith("(for spiffe://example.org/sample/greeter, from spiffe://example.org/sample/quotes)", greeted.Stdout.Trim(), StringComparison.Ordinal);

        var refused = await RunUntilIdentifiedAsync(intruderExe, url, env);
        Assert.True(refused.ExitCode == 1, refused.ToString());
        Assert.Contains("spiffe://example.org/sample/intruder: quotes refused the call: 401 WRIT-SDK-AUTH-NOT-AUTHORIZED: peer spiffe://example.org/sample/intruder is not the expected spiffe://example.org/sample/greeter",
            refused.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("quotes refused", greeted.Stderr, StringComparison.Ordinal);

        // Greeter trusts Quotes by SPIFFE ID, not by address: told to expect another identity, it refuses the server.
        var wrongServer = await Proc.RunAsync(greeterExe, [url, "spiffe://example.org/sample/elsewhere"], env: env);
        Assert.True(wrongServer.ExitCode == 1, wrongServer.ToString());
        Assert.Contains("could not call spiffe://example.org/sample/elsewhere", wrongServer.Stderr, StringComparison.Ordinal);
    }

    /// <summary>Runs a Greeter-like sample, again while the agent has not learnt its entry yet (it then has no identity).</summary>
    private static Task<ProcResult> RunUntilIdentifiedAsync(string exe, string url, Dictionary<string, string?> env) =>
        WorkloadTools.EventuallyAsync(async () =>
        {
            var r = await Proc.RunAsync(exe, [url], env: env);
            return r.Stderr.Contains("has no identity", StringComparison.Ordinal) ? throw new InvalidOperationException(r.ToString()) : r;
        }, Deadline, $"{Path.GetFileName(exe)} getting its SVID");

    /// <summary>Builds a sample (incrementally) in this test's configuration; returns its apphost, the executable the agent sees.</summary>
    private static async Task<string> BuildSampleAsync(string name)
    {
        var config = AppContext.BaseDirectory.Contains($"{Path.DirectorySeparatorChar}Debug{Path.DirectorySeparatorChar}", StringComparison.Ordinal) ? "Debug" : "Release";
        var project = Path.Combine(Repo.Root, "samples", name);
        await BuildLock.WaitAsync(TestContext.Current.CancellationToken);
        try
        {
            var build = await Proc.RunAsync("dotnet", ["build", project, "-c", config, "--nologo", "-v", "q"], timeout: TimeSpan.FromMinutes(10));
            Assert.True(build.ExitCode == 0, build.ToString());
        }
        finally
        {
            BuildLock.Release();
        }
        var exe = Path.Combine(project, "bin", config, "net10.0", name);
        Assert.True(File.Exists(exe), $"{exe} was not built");
        var real = await Proc.RunAsync("readlink", ["-f", exe]);
        return real.Stdout.Trim();
    }

    private static void CopyDirectory(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var file in Directory.EnumerateFiles(from, "*", SearchOption.AllDirectories))
        {
            var target = Path.Combine(to, Path.GetRelativePath(from, file));
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(file, target);
        }
    }
}
