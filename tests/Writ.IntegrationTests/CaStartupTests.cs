using Writ.IntegrationTests.Harness;

namespace Writ.IntegrationTests;

/// <summary>CA failures at `writ server run`: one line with the stable WRIT-CA code, no stack trace, nothing written.</summary>
public sealed class CaStartupTests
{
    [Fact]
    public async Task An_unreadable_upstream_ca_stops_the_start_in_one_line_with_its_code_and_writes_no_key()
    {
        using var dir = new TempDir();
        Directory.CreateDirectory(dir["server"]);
        await File.WriteAllTextAsync(dir["upstream.pem"], "not a certificate\n", TestContext.Current.CancellationToken);
        await File.WriteAllTextAsync(dir["upstream.key"], "not a key\n", TestContext.Current.CancellationToken);

        var r = await Proc.WritAsync(new Dictionary<string, string?>
        {
            ["WRIT_SERVER_CA_UPSTREAM_CERTIFICATE"] = dir["upstream.pem"],
            ["WRIT_SERVER_CA_UPSTREAM_KEY"] = dir["upstream.key"],
        }, "server", "run", "--trust-domain", "example.org", "--data-dir", dir["server"], "--bind", "127.0.0.1:0");

        Expect.OneLineError(r, "WRIT-CA-UPSTREAM-UNREADABLE");
        Assert.Contains(dir["upstream.pem"], r.Stderr, StringComparison.Ordinal);
        Assert.False(File.Exists(Path.Combine(dir["server"], "keys.json")), "a CA key was generated although the upstream is unreadable");
    }
}
