using System.Reflection.Metadata;
using System.Reflection.PortableExecutable;
using System.Xml.Linq;

namespace Writ.ArchitectureTests;

/// <summary>A project under src/: its name (the .csproj's), the assembly it builds and the projects it references.</summary>
public sealed record SrcProject(string Name, string RelativePath, string AssemblyName, XDocument Xml);

/// <summary>The repository this test runs from: its src/ projects and their assemblies as built into this test's output.</summary>
public static class Repo
{
    private static readonly Lazy<string> LazyRoot = new(() =>
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Writ.slnx")))
                return dir.FullName;
        throw new InvalidOperationException($"no Writ.slnx above {AppContext.BaseDirectory}: run the architecture tests from the repository's build output");
    });

    private static readonly Lazy<IReadOnlyList<SrcProject>> LazyProjects = new(() =>
        [.. Directory.GetFiles(Path.Combine(Root, "src"), "*.csproj", SearchOption.AllDirectories)
            .Where(p => !p.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}", StringComparison.Ordinal))
            .Order(StringComparer.Ordinal)
            .Select(Load)]);

    private static readonly Lazy<IReadOnlyList<IlUse>> LazyUses = new(() =>
        [.. Projects.SelectMany(p =>
        {
            using var pe = File.OpenRead(AssemblyPath(p));
            var pdbPath = Path.ChangeExtension(AssemblyPath(p), ".pdb");
            using var pdb = File.Exists(pdbPath) ? File.OpenRead(pdbPath) : null;
            return IlScanner.Scan(pe, pdb, Root).ToList();
        })]);

    public static string Root => LazyRoot.Value;

    public static IReadOnlyList<SrcProject> Projects => LazyProjects.Value;

    /// <summary>Every method reference in the IL of every src assembly, with the source line it comes from.</summary>
    public static IReadOnlyList<IlUse> Uses => LazyUses.Value;

    public static string AssemblyPath(SrcProject p) => Path.Combine(AppContext.BaseDirectory, p.AssemblyName + ".dll");

    public static SrcProject Load(string csprojPath)
    {
        var xml = XDocument.Load(csprojPath);
        var name = Path.GetFileNameWithoutExtension(csprojPath);
        var assembly = xml.Descendants("AssemblyName").Select(e => e.Value.Trim()).LastOrDefault(v => v.Length > 0) ?? name;
        return new SrcProject(name, Path.GetRelativePath(Root, csprojPath).Replace('\\', '/'), assembly, xml);
    }

    /// <summary>The names of the assemblies an assembly references (what the compiler kept: the ones it really uses).</summary>
    public static IReadOnlyList<string> ReferencedAssemblies(Stream pe)
    {
        using var reader = new PEReader(pe, PEStreamOptions.LeaveOpen);
        var md = reader.GetMetadataReader();
        return [.. md.AssemblyReferences.Select(h => md.GetString(md.GetAssemblyReference(h).Name))];
    }
}
