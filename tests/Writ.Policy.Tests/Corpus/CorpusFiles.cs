using Writ.Policy.Tests.Schema;

namespace Writ.Policy.Tests.Corpus;

/// <summary>
/// Corpus paths. Unpacking is shared with the schema tests (<see cref="CedarTestData"/>) so the tarball is
/// unpacked once per run.
/// </summary>
internal static class CorpusFiles
{
    public static string ConformanceDir => CedarTestData.ConformanceDir;

    /// <summary>Directory that holds <c>corpus-tests/</c> after unpacking.</summary>
    public static string CorpusRoot => CedarTestData.CorpusRoot;

    /// <summary>The cases found by differential testing (tests/conformance/cedar-found), in the corpus's layout.</summary>
    public static string FoundRoot => Path.Combine(CedarTestData.RepoRoot, "tests", "conformance", "cedar-found");

    /// <summary>Maps a path from a corpus JSON file (relative to the corpus root) onto this machine.</summary>
    public static string Resolve(string relative) =>
        relative.StartsWith("corpus-tests/", StringComparison.Ordinal)
            ? Path.Combine(CorpusRoot, relative)
            : Path.Combine(ConformanceDir, relative);
}
