using System.Formats.Tar;
using System.IO.Compression;

namespace Writ.Policy.Tests.Schema;

/// <summary>
/// Locates the shared Cedar conformance data (walking up to the directory holding Writ.slnx, then
/// ../shared/conformance/cedar) and unpacks the corpus tarball once per test run into a temp dir.
/// </summary>
internal static class CedarTestData
{
    private static readonly Lazy<string> Corpus = new(UnpackCorpus, LazyThreadSafetyMode.ExecutionAndPublication);

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
            var path = Path.GetFullPath(Path.Combine(RepoRoot, "..", "shared", "conformance", "cedar"));
            if (!Directory.Exists(path))
                throw new InvalidOperationException("Cedar conformance data not found next to the repository (expected ../shared/conformance/cedar).");
            return path;
        }
    }

    /// <summary>The directory holding the unpacked <c>corpus-tests/</c> folder (the corpus root).</summary>
    public static string CorpusRoot => Corpus.Value;

    public static string CorpusTestsDir => Path.Combine(CorpusRoot, "corpus-tests");

    private static string UnpackCorpus()
    {
        // Unpacked trees are removed at the start of a later run rather than at process exit: deleting ~31k files
        // in a ProcessExit handler outlives the test platform's shutdown grace period and fails the run.
        RemoveLeftovers();
        var target = Path.Combine(Path.GetTempPath(), "writ-cedar-corpus-" + Environment.ProcessId);
        if (Directory.Exists(target))
            Directory.Delete(target, recursive: true);
        Directory.CreateDirectory(target);
        using (var file = File.OpenRead(Path.Combine(ConformanceDir, "corpus-tests.tar.gz")))
        using (var gz = new GZipStream(file, CompressionMode.Decompress))
            TarFile.ExtractToDirectory(gz, target, overwriteFiles: true);
        return target;
    }

    private static void RemoveLeftovers()
    {
        foreach (var dir in Directory.GetDirectories(Path.GetTempPath(), "writ-cedar-corpus-*"))
        {
            var suffix = Path.GetFileName(dir)["writ-cedar-corpus-".Length..];
            if (!int.TryParse(suffix, out var pid) || pid == Environment.ProcessId || IsRunning(pid))
                continue;
            try
            {
                Directory.Delete(dir, recursive: true);
            }
            catch (IOException)
            {
            }
            catch (UnauthorizedAccessException)
            {
            }
        }
    }

    private static bool IsRunning(int pid)
    {
        try
        {
            using var p = System.Diagnostics.Process.GetProcessById(pid);
            return !p.HasExited;
        }
        catch (ArgumentException)
        {
            return false;
        }
        catch (InvalidOperationException)
        {
            return false;
        }
    }
}
