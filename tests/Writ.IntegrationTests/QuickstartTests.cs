using Writ.IntegrationTests.Harness;

namespace Writ.IntegrationTests;

/// <summary>The README's first command, as a newcomer runs it.</summary>
public sealed class QuickstartTests
{
    [Fact]
    public async Task Quickstart_serves_this_process_its_svids_through_the_workload_api()
    {
        using var dir = new TempDir();
        var r = await Proc.RunAsync("dotnet", [Repo.WritDll, "quickstart", "--dir", dir["qs"]], timeout: TimeSpan.FromMinutes(2));
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Contains("fetched 2 X.509-SVID(s) over the Workload API", r.Stdout, StringComparison.Ordinal);
        Assert.Contains($"SPIFFE ID:  spiffe://quickstart.writ/quickstart/uid-{Writ.Server.Hosting.UnixPeer.EffectiveUid}", r.Stdout, StringComparison.Ordinal);
        Assert.Contains("SPIFFE ID:  spiffe://quickstart.writ/quickstart/exe/dotnet", r.Stdout, StringComparison.Ordinal);
        Assert.Equal(2, r.Stdout.Split("Verified against the trust bundle: yes").Length - 1);
        Assert.DoesNotContain("Exception", r.Stdout + r.Stderr, StringComparison.Ordinal);
        Assert.True(File.Exists(Path.Combine(dir["qs"], "server", "writ.db")), "the server's SQLite database is in the state dir");

        // Run again on the same directory: it starts clean instead of tripping over the previous run.
        var again = await Proc.RunAsync("dotnet", [Repo.WritDll, "quickstart", "--dir", dir["qs"]], timeout: TimeSpan.FromMinutes(2));
        Assert.True(again.ExitCode == 0, again.ToString());
    }
}
