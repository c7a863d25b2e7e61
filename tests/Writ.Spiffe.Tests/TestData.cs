namespace Writ.Spiffe.Tests;

/// <summary>Finds the shared test data: walk up from the test binary to the directory holding Writ.slnx, then ../shared.</summary>
internal static class TestData
{
    private static readonly Lazy<string> Root = new(() =>
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Writ.slnx")))
        {
            dir = dir.Parent;
        }
        if (dir is null)
        {
            throw new InvalidOperationException("cannot find Writ.slnx above the test binaries");
        }
        return dir.FullName;
    });

    public static string RepoRoot => Root.Value;

    public static string Shared(params string[] parts) =>
        Path.GetFullPath(Path.Combine([RepoRoot, "..", "shared", .. parts]));

    public static string Conformance(params string[] parts) => Shared(["conformance", "spiffe", .. parts]);

    public static string X509SvidFixture(string name) => Conformance("fixtures", "svid", "x509svid", "testdata", name);

    public static string BundleFixture(string kind, string name) => Conformance("fixtures", "bundle", kind, "testdata", name);
}
