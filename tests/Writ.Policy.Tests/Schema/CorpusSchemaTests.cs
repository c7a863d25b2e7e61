using Writ.Policy.Schema;

namespace Writ.Policy.Tests.Schema;

public class CorpusSchemaTests
{
    private const int ExpectedCorpusSchemas = 7809;

    [Fact]
    public void Every_corpus_cedarschema_parses()
    {
        var files = Directory.GetFiles(CedarTestData.CorpusTestsDir, "*.cedarschema");
        Assert.Equal(ExpectedCorpusSchemas, files.Length);
        var failures = new List<string>();
        foreach (var f in files)
        {
            if (!CedarSchema.TryParseCedar(File.ReadAllText(f), out var schema, out var errors))
                failures.Add($"{Path.GetFileName(f)}: {errors[0]}");
            else
                Assert.NotNull(schema);
        }

        Assert.True(failures.Count == 0, $"{failures.Count} schemas failed:\n" + string.Join("\n", failures.Take(30)));
    }

    [Fact]
    public void Sample_data_schemas_parse()
    {
        var files = Directory.GetFiles(Path.Combine(CedarTestData.ConformanceDir, "sample-data"), "*.cedarschema", SearchOption.AllDirectories);
        Assert.NotEmpty(files);
        foreach (var f in files)
        {
            Assert.True(CedarSchema.TryParseCedar(File.ReadAllText(f), out var schema, out var errors), $"{f}: {string.Join(" | ", errors)}");
            Assert.NotEmpty(schema!.EntityTypes);
            Assert.NotEmpty(schema.Actions);
        }
    }
}
