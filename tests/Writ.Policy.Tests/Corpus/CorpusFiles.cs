using System.Formats.Tar;
using System.IO.Compression;

namespace Writ.Policy.Tests.Corpus;

/// <summary>Locates the shared Cedar conformance data and unpacks the corpus tarball once per test run.</summary>
internal static class CorpusFiles
{
    private static readonly Lazy<string> Unpacked = new(Unpack, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>The conformance folder (<c>../shared/conformance/cedar</c> next to the repository).</summary>
    public static string ConformanceDir
    {
        get
        {
            var dir = new DirectoryInfo(AppContext.BaseDirectory);
            while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Writ.slnx"))) dir = dir.Parent;
            if (dir is null) throw new InvalidOperationException("Writ.slnx not found above the test binaries; run the tests from the repository");
            return Path.GetFullPath(Path.Combine(dir.FullName, "..", "shared", "conformance", "cedar"));
        }
    }

    /// <summary>Directory that holds <c>corpus-tests/</c> after unpacking.</summary>
    public static string CorpusRoot => Unpacked.Value;

    private static string Unpack()
    {
        var target = Path.Combine(Path.GetTempPath(), "writ-cedar-corpus-" + Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture));
        if (Directory.Exists(target)) Directory.Delete(target, recursive: true);
        Directory.CreateDirectory(target);
        using var file = File.OpenRead(Path.Combine(ConformanceDir, "corpus-tests.tar.gz"));
        using var gz = new GZipStream(file, CompressionMode.Decompress);
        TarFile.ExtractToDirectory(gz, target, overwriteFiles: true);
        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            try { Directory.Delete(target, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        };
        return target;
    }

    /// <summary>Maps a path from a corpus JSON file (relative to the corpus root) onto this machine.</summary>
    public static string Resolve(string relative) =>
        relative.StartsWith("corpus-tests/", StringComparison.Ordinal)
            ? Path.Combine(CorpusRoot, relative)
            : Path.Combine(ConformanceDir, relative);
}
