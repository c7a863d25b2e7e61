using System.IO.Compression;
using System.Text.Json;
using Writ.Policy.Ast;
using Writ.Policy.Schema;
using Writ.Policy.Tests.Corpus;
using Writ.Policy.Tests.Schema;
using Writ.Policy.Validation;

namespace Writ.Policy.Tests.Validation;

/// <summary>Pass/fail agrees with cedar-wasm 4.12 beyond the corpus's own pairings (see TestData/NOTICE.md).</summary>
public class DifferentialValidationTests
{
    private static string TestData => Path.Combine(CedarTestData.RepoRoot, "tests", "Writ.Policy.Tests", "Validation", "TestData");

    private static string ReadGz(string name)
    {
        using var gz = new GZipStream(File.OpenRead(Path.Combine(TestData, name)), CompressionMode.Decompress);
        using var reader = new StreamReader(gz);
        return reader.ReadToEnd();
    }

    private static CedarSchema CorpusSchema(Dictionary<string, CedarSchema> cache, string file)
    {
        if (!cache.TryGetValue(file, out var schema))
        {
            Assert.True(CedarSchema.TryParseCedar(File.ReadAllText(CorpusFiles.Resolve("corpus-tests/" + file)), out schema, out var errors), $"{file}: {string.Join(" | ", errors)}");
            cache[file] = schema!;
        }

        return schema!;
    }

    [Fact]
    public void Policies_checked_against_other_corpus_schemas_agree_with_the_reference()
    {
        var lines = ReadGz("cross-pairs.txt.gz").Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(5000, lines.Length);
        var schemas = new Dictionary<string, CedarSchema>(StringComparer.Ordinal);
        var mismatches = new List<string>();
        foreach (var line in lines)
        {
            var parts = line.Split(' ');
            Assert.True(PolicySet.TryParse(File.ReadAllText(CorpusFiles.Resolve("corpus-tests/" + parts[0])), out var policies, out _));
            var passed = Validator.Validate(policies!, CorpusSchema(schemas, parts[1])).Passed;
            if (passed != (parts[2] == "P"))
                mismatches.Add($"{line}: got {(passed ? "P" : "E")}");
        }

        Assert.True(mismatches.Count == 0, $"{mismatches.Count} mismatches:\n" + string.Join("\n", mismatches.Take(20)));
    }

    [Fact]
    public void Mutated_corpus_policies_agree_with_the_reference()
    {
        using var doc = JsonDocument.Parse(ReadGz("mutated-policies.json.gz"));
        var entries = doc.RootElement.EnumerateArray().ToList();
        Assert.Equal(1500, entries.Count);
        var schemas = new Dictionary<string, CedarSchema>(StringComparer.Ordinal);
        var mismatches = new List<string>();
        foreach (var e in entries)
        {
            var text = e.GetProperty("policies").GetString()!;
            var expected = e.GetProperty("shouldValidate").GetBoolean();
            if (!PolicySet.TryParse(text, out var policies, out var parseErrors))
            {
                mismatches.Add($"did not parse: {parseErrors[0]}");
                continue;
            }

            var result = Validator.Validate(policies!, CorpusSchema(schemas, e.GetProperty("schema").GetString()!));
            if (result.Passed != expected)
                mismatches.Add($"expected {(expected ? "valid" : "errors")}, got {string.Join(" | ", result.Errors.Take(2))} for: {text.ReplaceLineEndings(" ")}");
        }

        Assert.True(mismatches.Count == 0, $"{mismatches.Count} mismatches:\n" + string.Join("\n", mismatches.Take(20)));
    }
}
