using System.Formats.Tar;
using System.IO.Compression;
using System.Text.RegularExpressions;
using Writ.IntegrationTests.Harness;

namespace Writ.IntegrationTests;

/// <summary>
/// `writ policy test` over the whole official Cedar corpus (unpacked to a temp dir): every request's decision, reasons
/// and errors, the request checks against the schema, and every file's shouldValidate match the reference engine.
/// </summary>
public sealed partial class PolicyCorpusTests
{
    private const int CorpusFiles = 7_809;
    private const int CorpusRequests = 62_472;

    [GeneratedRegex(@"^(\d+) passed, (\d+) failed$", RegexOptions.Multiline)]
    private static partial Regex Summary();

    [Fact]
    public async Task The_official_corpus_passes_through_writ_policy_test()
    {
        using var dir = new TempDir();
        var tarball = Path.Combine(Repo.Shared, "conformance", "cedar", "corpus-tests.tar.gz");
        await using (var file = File.OpenRead(tarball))
        await using (var gz = new GZipStream(file, CompressionMode.Decompress))
        {
            await TarFile.ExtractToDirectoryAsync(gz, dir.Path, overwriteFiles: false, TestContext.Current.CancellationToken);
        }

        var r = await Proc.RunAsync("dotnet", [Repo.WritDll, "policy", "test", "--root", dir.Path, Path.Combine(dir.Path, "corpus-tests")],
            timeout: TimeSpan.FromMinutes(5));
        var m = Summary().Match(r.Stdout);
        Assert.True(m.Success && r.ExitCode == 0, r.ExitCode + "\n" + string.Join('\n', r.Stdout.Split('\n').Take(30)));
        Assert.Equal($"{CorpusRequests + CorpusFiles} passed, 0 failed", m.Value);
    }
}
