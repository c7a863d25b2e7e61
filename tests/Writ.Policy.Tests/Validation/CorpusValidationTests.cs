using System.Text.Json;
using Writ.Policy.Ast;
using Writ.Policy.Schema;
using Writ.Policy.Tests.Corpus;
using Writ.Policy.Validation;

namespace Writ.Policy.Tests.Validation;

/// <summary>
/// Every corpus test's <c>shouldValidate</c> must match strict validation. The corpus is split into
/// 16 shards (by the first hex digit of the test file name) so failures are reported in bulk.
/// </summary>
public class CorpusValidationTests
{
    private const int ExpectedCorpusTests = 7809;

    public static TheoryData<string> Shards() => new("0123456789abcdef".Select(c => c.ToString()));

    private static string[] CorpusTestFiles() =>
        Directory.GetFiles(Path.Combine(CorpusFiles.CorpusRoot, "corpus-tests"), "*.json")
            .Where(f => !f.EndsWith(".entities.json", StringComparison.Ordinal))
            .ToArray();

    [Fact]
    public void Corpus_has_the_expected_number_of_tests() => Assert.Equal(ExpectedCorpusTests, CorpusTestFiles().Length);

    [Theory]
    [MemberData(nameof(Shards))]
    public void ShouldValidate_matches_for_shard(string shard)
    {
        var files = CorpusTestFiles().Where(f => Path.GetFileName(f).StartsWith(shard, StringComparison.Ordinal)).ToArray();
        Assert.NotEmpty(files);
        var mismatches = files.Select(Check).Where(m => m is not null).ToList();
        Assert.True(mismatches.Count == 0, $"{mismatches.Count}/{files.Length} mismatches in shard {shard}:\n" + string.Join("\n", mismatches.Take(25)));
    }

    [Fact]
    public void ShouldValidate_matches_for_the_hand_written_tests()
    {
        var files = Directory.GetFiles(Path.Combine(CorpusFiles.ConformanceDir, "tests"), "*.json", SearchOption.AllDirectories);
        Assert.NotEmpty(files);
        var mismatches = files.Select(Check).Where(m => m is not null).ToList();
        Assert.True(mismatches.Count == 0, $"{mismatches.Count}/{files.Length} mismatches:\n" + string.Join("\n", mismatches));
    }

    /// <summary>Null when the test's expectation holds, else a one-line description of the mismatch.</summary>
    internal static string? Check(string testFile)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(testFile));
        var root = doc.RootElement;
        var name = Path.GetFileName(testFile);
        var expected = root.GetProperty("shouldValidate").GetBoolean();
        var schemaText = File.ReadAllText(CorpusFiles.Resolve(root.GetProperty("schema").GetString()!));
        if (!CedarSchema.TryParseCedar(schemaText, out var schema, out var schemaErrors))
            return $"{name}: schema did not parse: {schemaErrors[0]}";
        var policyText = File.ReadAllText(CorpusFiles.Resolve(root.GetProperty("policies").GetString()!));
        if (!PolicySet.TryParse(policyText, out var policies, out var parseErrors))
            return $"{name}: policies did not parse: {parseErrors[0]}";
        var result = Validator.Validate(policies!, schema!);
        if (result.Passed == expected)
            return null;
        return expected
            ? $"{name}: expected to validate but got {result.Errors.Count} error(s): {string.Join(" | ", result.Errors.Take(3))}"
            : $"{name}: expected validation errors but it validated";
    }
}
