using System.Xml.Linq;

namespace Writ.ArchitectureTests;

/// <summary>Project references point one way (see <see cref="ProjectDirection"/>), in the project files and in the built assemblies.</summary>
public sealed class ProjectDirectionTests
{
    private static Dictionary<string, string> AssemblyToProject(IEnumerable<SrcProject> projects) =>
        projects.ToDictionary(p => p.AssemblyName, p => p.Name, StringComparer.Ordinal);

    [Fact]
    public void Every_src_project_is_ruled_and_built_into_this_test()
    {
        Assert.NotEmpty(Repo.Projects);
        var problems = Repo.Projects
            .Where(p => !ProjectDirection.MayReference.ContainsKey(p.Name) || !File.Exists(Repo.AssemblyPath(p)))
            .Select(p => ProjectDirection.MayReference.ContainsKey(p.Name)
                ? $"{p.RelativePath}: its assembly {p.AssemblyName}.dll is not in the test output: add a ProjectReference to it in tests/Writ.ArchitectureTests"
                : $"{p.RelativePath}: add {p.Name} to ProjectDirection.MayReference with the projects it may reference");
        Assert.Empty(problems);
    }

    [Fact]
    public void Project_files_reference_only_down_the_direction()
    {
        Assert.Empty(Repo.Projects.SelectMany(p => ProjectDirection.CheckProjectFile(p.Name, p.Xml)));
    }

    [Fact]
    public void Compiled_assemblies_reference_only_down_the_direction()
    {
        var map = AssemblyToProject(Repo.Projects);
        var problems = Repo.Projects.Where(p => File.Exists(Repo.AssemblyPath(p))).SelectMany(p =>
        {
            using var pe = File.OpenRead(Repo.AssemblyPath(p));
            return ProjectDirection.CheckAssembly(p.Name, Repo.ReferencedAssemblies(pe), map).ToList();
        });
        Assert.Empty(problems);
    }

    [Theory]
    [InlineData("Writ.Agent", "../Writ.Server/Writ.Server.csproj")]
    [InlineData("Writ.Server", "../Writ.Agent/Writ.Agent.csproj")]
    [InlineData("Writ.Policy", "../Writ.Spiffe/Writ.Spiffe.csproj")]
    [InlineData("Writ.Spiffe", "../Writ.Protocol/Writ.Protocol.csproj")]
    [InlineData("Writ.Protocol", "..\\Writ.Server\\Writ.Server.csproj")]
    [InlineData("Writ.Workload", "../Writ.Protocol/Writ.Protocol.csproj")]
    [InlineData("Writ.Authz", "../Writ.Agent/Writ.Agent.csproj")]
    [InlineData("Writ.Server", "../Writ.Cli/Writ.Cli.csproj")]
    [InlineData("Writ.Bench", "../Writ.Cli/Writ.Cli.csproj")]
    public void A_project_file_reference_against_the_direction_is_caught(string project, string reference)
    {
        var csproj = XDocument.Parse($"""
            <Project Sdk="Microsoft.NET.Sdk">
              <ItemGroup>
                <!-- <ProjectReference Include="../Writ.Cli/Writ.Cli.csproj" /> a comment never counts -->
                <ProjectReference Include="{reference}" />
              </ItemGroup>
            </Project>
            """);
        var problem = Assert.Single(ProjectDirection.CheckProjectFile(project, csproj));
        Assert.Contains(Path.GetFileNameWithoutExtension(reference.Replace('\\', '/')), problem, StringComparison.Ordinal);
    }

    [Fact]
    public void A_project_not_in_the_table_is_caught()
    {
        var csproj = XDocument.Parse("<Project Sdk=\"Microsoft.NET.Sdk\" />");
        Assert.Contains("MayReference", Assert.Single(ProjectDirection.CheckProjectFile("Writ.Newcomer", csproj)), StringComparison.Ordinal);
    }

    [Fact]
    public void An_assembly_reference_against_the_direction_is_caught_even_without_a_project_reference()
    {
        // An assembly named Writ.Agent that uses a server type: whatever its project file says, the compiled reference shows.
        using var snippet = new Snippet("Writ.Agent", ("src/Writ.Agent/Sneaky.cs", """
            namespace Writ.Agent;
            public static class Sneaky
            {
                public static string Name => typeof(Writ.Server.Storage.ILedgerStore).FullName!;
            }
            """));
        var map = AssemblyToProject(Repo.Projects);
        var problem = Assert.Single(ProjectDirection.CheckAssembly("Writ.Agent", snippet.References(), map));
        Assert.Contains("Writ.Server", problem, StringComparison.Ordinal);
    }

    [Fact]
    public void The_cli_reaches_the_server_agent_and_policy_and_nothing_reaches_the_cli()
    {
        var map = AssemblyToProject(Repo.Projects);
        Assert.Equal("Writ.Cli", map["writ"]);
        Assert.Empty(ProjectDirection.CheckAssembly("Writ.Cli", ["Writ.Server", "Writ.Agent", "Writ.Policy", "Writ.Protocol", "Writ.Spiffe", "System.Runtime"], map));
        Assert.NotEmpty(ProjectDirection.CheckAssembly("Writ.Server", ["writ"], map));
    }
}
