using System.Formats.Tar;
using System.IO.Compression;
using System.Text.Json;
using System.Text.RegularExpressions;
using Writ.IntegrationTests.Harness;

namespace Writ.IntegrationTests;

/// <summary>
/// `writ policy test` over the whole official Cedar corpus (unpacked to a temp dir) and over the cases differential testing
/// found: every request's decision, reasons and errors, the request checks against the schema, and every file's
/// shouldValidate match the reference engine.
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

    /// <summary>
    /// The cases differential testing found (tests/conformance/cedar-found, the official corpus's layout) run the same
    /// way: every request and every shouldValidate must match the reference engine's answers.
    /// </summary>
    [Fact]
    public async Task The_found_cases_pass_through_writ_policy_test()
    {
        var root = Path.Combine(Repo.Root, "tests", "conformance", "cedar-found");
        var tests = Directory.GetFiles(Path.Combine(root, "corpus-tests"), "*.json").Where(f => !f.EndsWith(".entities.json", StringComparison.Ordinal)).ToList();
        var cases = 0;
        foreach (var test in tests)
        {
            using var doc = JsonDocument.Parse(await File.ReadAllTextAsync(test, TestContext.Current.CancellationToken));
            cases += doc.RootElement.GetProperty("requests").GetArrayLength() + (doc.RootElement.TryGetProperty("shouldValidate", out _) ? 1 : 0);
        }

        Assert.True(cases >= 9, $"only {cases} cases in {root}");   // diff00084: 8 requests and shouldValidate
        var r = await Proc.RunAsync("dotnet", [Repo.WritDll, "policy", "test", "--root", root, Path.Combine(root, "corpus-tests")],
            timeout: TimeSpan.FromMinutes(2));
        var m = Summary().Match(r.Stdout);
        Assert.True(m.Success && r.ExitCode == 0, r.ExitCode + "\n" + r.Stdout + r.Stderr);
        Assert.Equal($"{cases} passed, 0 failed", m.Value);
    }
}
