using System.Text.RegularExpressions;
using Writ.IntegrationTests.Harness;

namespace Writ.IntegrationTests;

/// <summary>docs/policy.md shows only tested policy: every `cedar` block is in an example file that a test file runs.</summary>
public sealed partial class PolicyDocsTests
{
    private static string ExamplesDir => Path.Combine(Repo.Root, "docs", "examples", "policy");

    private static string Doc => File.ReadAllText(Path.Combine(Repo.Root, "docs", "policy.md"));

    [GeneratedRegex(@"```cedar\n(.*?)```", RegexOptions.Singleline)]
    private static partial Regex CedarBlock();

    [GeneratedRegex(@"\s+")]
    private static partial Regex Space();

    private static string Normalize(string s) => Space().Replace(s, " ").Trim();

    [Fact]
    public void Every_cedar_block_in_the_doc_is_in_an_example_file()
    {
        var blocks = CedarBlock().Matches(Doc).Select(m => m.Groups[1].Value).ToList();
        Assert.True(blocks.Count >= 5, $"found only {blocks.Count} cedar blocks: the scan is broken");
        var examples = Directory.GetFiles(ExamplesDir, "*.cedar", SearchOption.AllDirectories).Select(f => Normalize(File.ReadAllText(f))).ToList();
        var missing = blocks.Where(b => !examples.Any(e => e.Contains(Normalize(b), StringComparison.Ordinal))).ToList();
        Assert.True(missing.Count == 0, "cedar blocks in docs/policy.md that no file in docs/examples/policy holds:\n" + string.Join("\n---\n", missing));
    }

    [Fact]
    public void Every_example_policy_file_is_run_by_a_test_file()
    {
        var tests = Directory.GetFiles(ExamplesDir, "*.test.json").Select(File.ReadAllText).ToList();
        Assert.NotEmpty(tests);
        var untested = Directory.GetFiles(ExamplesDir, "*.cedar").Select(Path.GetFileName)
            .Where(name => !tests.Any(t => t.Contains($"\"policies\": \"{name}\"", StringComparison.Ordinal))).ToList();
        Assert.True(untested.Count == 0, "example policies no test file runs: " + string.Join(", ", untested));
    }

    [Fact]
    public async Task Every_shipped_example_policy_is_formatted_as_writ_policy_format_writes_it()
    {
        var files = Directory.GetFiles(ExamplesDir, "*.cedar", SearchOption.AllDirectories).Order(StringComparer.Ordinal).ToArray();
        Assert.True(files.Length >= 6, $"found only {files.Length} example policies: the scan is broken");
        var r = await Proc.WritAsync(["policy", "format", "--check", .. files]);
        Assert.True(r.ExitCode == 0, "example policies that 'writ policy format --write' would change:\n" + r);
    }

    [Fact]
    public async Task The_documented_authorize_output_is_what_writ_prints()
    {
        var r = await Proc.RunAsync("dotnet", [Repo.WritDll, "policy", "authorize", "--policies", "workloads.cedar", "--entities", "entities.json",
            "--schema", "workloads.cedarschema", "--principal", "Workload::\"spiffe://example.org/payments/batch\"", "--action", "Action::\"get\"",
            "--resource", "Secret::\"/payments/db-password\"", "--context", """{"source_ip": "10.1.2.3", "now": "2026-11-24T12:00:00Z"}"""],
            workingDir: ExamplesDir);
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Contains(r.Stdout, Doc, StringComparison.Ordinal);
    }
}
