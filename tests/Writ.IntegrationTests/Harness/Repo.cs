namespace Writ.IntegrationTests.Harness;

/// <summary>Locates the repository (the directory holding Writ.slnx), the built `writ` and ../shared.</summary>
public static class Repo
{
    public static string Root { get; } = FindRoot();

    public static string Shared => Path.GetFullPath(Path.Combine(Root, "..", "shared"));

    /// <summary>writ.dll of the same configuration as this test assembly (Release in CI).</summary>
    public static string WritDll
    {
        get
        {
            var config = AppContext.BaseDirectory.Contains($"{Path.DirectorySeparatorChar}Debug{Path.DirectorySeparatorChar}", StringComparison.Ordinal) ? "Debug" : "Release";
            var path = Path.Combine(Root, "src", "Writ.Cli", "bin", config, "net10.0", "writ.dll");
            return File.Exists(path) ? path : throw new InvalidOperationException($"{path} is missing: build the solution first (dotnet build Writ.slnx -c {config})");
        }
    }

    private static string FindRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Writ.slnx")))
        {
            dir = dir.Parent;
        }
        return dir?.FullName ?? throw new InvalidOperationException("cannot find the repository root (Writ.slnx) above " + AppContext.BaseDirectory);
    }
}
