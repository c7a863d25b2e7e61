namespace Writ.Policy.Tests.Schema;

/// <summary>
/// Locates the shared Cedar conformance data (walking up to the directory holding Writ.slnx, then
/// ../shared/conformance/cedar) and reaches the corpus unpacked once per test run by <see cref="Corpus.CorpusFiles"/>.
/// </summary>
internal static class CedarTestData
{

    public static string RepoRoot
    {
        get
        {
            var dir = new DirectoryInfo(AppContext.BaseDirectory);
            while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Writ.slnx")))
                dir = dir.Parent;
            return dir?.FullName ?? throw new InvalidOperationException("Could not find Writ.slnx above the test binaries; run the tests from the repository.");
        }
    }

    /// <summary>Committed schema test data (tests/Writ.Policy.Tests/Schema/TestData).</summary>
    public static string SchemaTestData => Path.Combine(RepoRoot, "tests", "Writ.Policy.Tests", "Schema", "TestData");

    public static string ConformanceDir
    {
        get
        {
            var path = Path.Combine(RepoRoot, "..", "shared", "conformance", "cedar");
            if (!Directory.Exists(path))
                throw new InvalidOperationException($"Cedar conformance data not found next to the repository (expected ../shared/conformance/cedar).");
            return path;
        }
    }

    /// <summary>The directory holding the unpacked <c>corpus-tests/</c> folder (the corpus root).</summary>
    public static string CorpusRoot => Corpus.CorpusFiles.CorpusRoot;

    public static string CorpusTestsDir => Path.Combine(CorpusRoot, "corpus-tests");
}
