using Writ.Cli.CommandLine;
using Writ.Cli.Commands;
using Writ.IntegrationTests.Harness;

namespace Writ.IntegrationTests;

/// <summary>
/// Truncated, corrupted and deeply nested inputs to the `writ policy` commands (in-process, so thousands of cases
/// run quickly): never an exception, always an exit code and, on failure, one `error:` line.
/// </summary>
public sealed class PolicyRobustnessTests
{
    private static string Example(string name) => Path.Combine(Repo.Root, "docs", "examples", "policy", name);

    private static async Task<(int Code, string Out, string Err)> Run(params string[] args)
    {
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();
        var code = await new CommandRunner(AllCommands.Build()).RunAsync(args, new CommandContext(stdout, stderr, TestContext.Current.CancellationToken));
        return (code, stdout.ToString(), stderr.ToString());
    }

    private static void AssertCleanFailure((int Code, string Out, string Err) r, string what)
    {
        Assert.True(r.Code is 0 or 1, $"{what}: exit {r.Code}\n{r.Err}");
        if (r.Code != 0)
        {
            var lines = r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.True(lines.Length == 1 && lines[0].StartsWith("error: ", StringComparison.Ordinal), $"{what}: expected one error line:\n{r.Err}");
        }
    }

    [Fact]
    public async Task Every_truncation_of_a_policy_file_gets_a_clean_answer()
    {
        using var dir = new TempDir();
        var text = File.ReadAllText(Example("workloads.cedar"));
        var failures = 0;
        for (var cut = 0; cut < text.Length; cut += 3)
        {
            File.WriteAllText(dir["p.cedar"], text[..cut]);
            var v = await Run("policy", "validate", "--policies", dir["p.cedar"], "--schema", Example("workloads.cedarschema"));
            AssertCleanFailure(v, $"validate of the first {cut} chars");
            var f = await Run("policy", "format", dir["p.cedar"]);
            AssertCleanFailure(f, $"format of the first {cut} chars");
            failures += v.Code;
        }
        Assert.True(failures > 0, "no truncation failed: the loop is broken");
    }

    [Fact]
    public async Task Corrupted_entities_context_schema_and_test_files_get_clean_answers()
    {
        using var dir = new TempDir();
        var rng = new Random(4);
        var entities = File.ReadAllText(Example("entities.json"));
        var schema = File.ReadAllText(Example("workloads.cedarschema"));
        var test = File.ReadAllText(Example("workloads.test.json"));
        foreach (var name in new[] { "entities.json", "workloads.cedar", "workloads.cedarschema" })
        {
            File.Copy(Example(name), dir[name]);
        }
        for (var i = 0; i < 150; i++)
        {
            File.WriteAllText(dir["e.json"], Corrupt(entities, rng));
            File.WriteAllText(dir["s.cedarschema"], Corrupt(schema, rng));
            File.WriteAllText(dir["t.json"], Corrupt(test, rng));
            var ctx = Corrupt("""{"source_ip": "10.1.2.3", "now": "2026-11-24T12:00:00Z"}""", rng);
            var a = await Run("policy", "authorize", "--policies", Example("workloads.cedar"), "--entities", dir["e.json"],
                "--schema", dir["s.cedarschema"], "--principal", "Workload::\"spiffe://example.org/payments/api\"",
                "--action", "Action::\"get\"", "--resource", "Secret::\"/payments/db-password\"", "--context", ctx);
            AssertCleanFailure(a, $"authorize, case {i}");
            var t = await Run("policy", "test", "--root", dir.Path, dir["t.json"]);
            Assert.True(t.Code is 0 or 1, $"test, case {i}: exit {t.Code}\n{t.Err}");
            Assert.Matches(@"\d+ passed, \d+ failed\n$", t.Out);
        }
    }

    [Fact]
    public async Task Deep_nesting_is_an_error_not_a_crash()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir["deep.cedar"], "permit (principal, action, resource) when { " + new string('(', 100_000) + "true" + new string(')', 100_000) + " };");
        File.WriteAllText(dir["deep.json"], string.Concat(Enumerable.Repeat("{\"a\":", 10_000)) + "1" + new string('}', 10_000));
        var v = await Run("policy", "validate", "--policies", dir["deep.cedar"], "--schema", Example("workloads.cedarschema"));
        Assert.Equal(1, v.Code);
        Assert.Contains("deep.cedar:1:", v.Out, StringComparison.Ordinal);
        var a = await Run("policy", "authorize", "--policies", Example("workloads.cedar"), "--entities", dir["deep.json"],
            "--principal", "A::\"a\"", "--action", "Action::\"get\"", "--resource", "A::\"b\"", "--context", "@" + dir["deep.json"]);
        AssertCleanFailure(a, "deeply nested entities");
        Assert.Equal(1, a.Code);
    }

    /// <summary>Cuts the text short, or overwrites a few characters with JSON/Cedar punctuation.</summary>
    private static string Corrupt(string text, Random rng)
    {
        if (rng.Next(3) == 0)
        {
            return text[..rng.Next(text.Length)];
        }
        var chars = text.ToCharArray();
        for (var k = rng.Next(1, 4); k > 0; k--)
        {
            chars[rng.Next(chars.Length)] = "{}[]\":,\\0a-"[rng.Next(11)];
        }
        return new string(chars);
    }
}
