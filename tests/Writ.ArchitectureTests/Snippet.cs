using System.Text;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.Emit;
using Microsoft.CodeAnalysis.Text;

namespace Writ.ArchitectureTests;

/// <summary>
/// Compiles small C# sources (each with the repository path it pretends to live at) into an assembly with a portable
/// PDB, in memory, so the rules can be shown to catch an offending snippet.
/// </summary>
public sealed class Snippet : IDisposable
{
    public MemoryStream Pe { get; } = new();
    public MemoryStream Pdb { get; } = new();

    public Snippet(string assemblyName, params (string Path, string Source)[] files)
    {
        var trees = files.Select(f => CSharpSyntaxTree.ParseText(SourceText.From(f.Source, Encoding.UTF8), new CSharpParseOptions(LanguageVersion.Latest), path: $"{Root}/{f.Path}"));
        var compilation = CSharpCompilation.Create(assemblyName, trees, Platform.Value,
            new CSharpCompilationOptions(OutputKind.DynamicallyLinkedLibrary, nullableContextOptions: NullableContextOptions.Enable));
        var result = compilation.Emit(Pe, Pdb, options: new EmitOptions(debugInformationFormat: DebugInformationFormat.PortablePdb));
        if (!result.Success)
            throw new InvalidOperationException("the snippet does not compile: " + string.Join("; ", result.Diagnostics.Where(d => d.Severity == DiagnosticSeverity.Error)));
    }

    public const string Root = "/repo";

    // The framework, gRPC and our libraries (loaded once: a few hundred files).
    private static readonly Lazy<MetadataReference[]> Platform = new(() =>
    {
        var platform = ((string)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES")!).Split(Path.PathSeparator);
        var ours = new[] { "Grpc.Core.Api.dll", "Writ.Server.dll", "Writ.Protocol.dll", "Writ.Agent.dll" }.Select(f => Path.Combine(AppContext.BaseDirectory, f));
        return [.. platform.Concat(ours).Select(p => MetadataReference.CreateFromFile(p))];
    });

    public IReadOnlyList<IlUse> Uses()
    {
        Pe.Position = 0;
        Pdb.Position = 0;
        return [.. IlScanner.Scan(Pe, Pdb, Root)];
    }

    public IReadOnlyList<string> References()
    {
        Pe.Position = 0;
        return Repo.ReferencedAssemblies(Pe);
    }

    public void Dispose()
    {
        Pe.Dispose();
        Pdb.Dispose();
    }
}
