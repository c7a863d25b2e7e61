using Writ.Policy.Schema;

namespace Writ.Policy.Tests.Schema;

public class JsonRoundTripTests
{
    [Fact]
    public void Every_corpus_schema_round_trips_through_json()
    {
        var files = Directory.GetFiles(CedarTestData.CorpusTestsDir, "*.cedarschema");
        Assert.Equal(7809, files.Length);
        var failures = new List<string>();
        foreach (var f in files)
        {
            Assert.True(CedarSchema.TryParseCedar(File.ReadAllText(f), out var fromCedar, out _));
            var json = fromCedar!.ToJson();
            if (!CedarSchema.TryParseJson(json, out var fromJson, out var errors))
                failures.Add($"{Path.GetFileName(f)}: JSON did not parse: {errors[0]}");
            else if (!fromCedar.StructurallyEquals(fromJson!))
                failures.Add($"{Path.GetFileName(f)}: model changed after the JSON round trip");
            else if (fromJson!.ToJson() != json)
                failures.Add($"{Path.GetFileName(f)}: ToJson is not stable");
        }

        Assert.True(failures.Count == 0, $"{failures.Count} failures:\n" + string.Join("\n", failures.Take(20)));
    }

    [Fact]
    public void Json_written_by_the_reference_engine_reads_to_the_same_model_as_the_cedar_text()
    {
        // The committed sample; point WRIT_CEDAR_REFERENCE_JSON at a directory with cedar-wasm's
        // schemaToJson output for the whole corpus to run all 7,809.
        var dir = Environment.GetEnvironmentVariable("WRIT_CEDAR_REFERENCE_JSON") is { Length: > 0 } env
            ? env
            : Path.Combine(CedarTestData.SchemaTestData, "ReferenceJson");
        var failures = new List<string>();
        var n = 0;
        foreach (var f in Directory.GetFiles(dir, "*.json"))
        {
            n++;
            var cedarFile = Path.Combine(CedarTestData.CorpusTestsDir, Path.GetFileNameWithoutExtension(f) + ".cedarschema");
            Assert.True(CedarSchema.TryParseCedar(File.ReadAllText(cedarFile), out var fromCedar, out _));
            if (!CedarSchema.TryParseJson(File.ReadAllText(f), out var fromJson, out var errors))
                failures.Add($"{Path.GetFileName(f)}: {errors[0]}");
            else if (!fromCedar!.StructurallyEquals(fromJson!))
                failures.Add($"{Path.GetFileName(f)}: differs: {FirstDifference(fromCedar.ToJson(), fromJson!.ToJson())}");
        }

        Assert.True(n >= 40, $"expected at least 40 reference JSON schemas in {dir}, found {n}");
        Assert.True(failures.Count == 0, $"{failures.Count}/{n} failures:\n" + string.Join("\n", failures.Take(20)));
    }

    private static string FirstDifference(string a, string b)
    {
        var la = a.Split('\n');
        var lb = b.Split('\n');
        for (var i = 0; i < Math.Min(la.Length, lb.Length); i++)
        {
            if (la[i] != lb[i])
                return $"line {i + 1}: expected `{la[i].Trim()}` got `{lb[i].Trim()}`";
        }

        return $"lengths {la.Length} vs {lb.Length}";
    }
}
