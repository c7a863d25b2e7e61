namespace Writ.ArchitectureTests;

/// <summary>Only <c>Writ.Protocol.Interop.Libc</c> binds libc (see <see cref="LibcBindingRule"/>).</summary>
public sealed class LibcBindingRuleTests
{
    private static List<(string Type, string Method, string Library)> RepoImports() =>
        [.. Repo.Projects.Where(p => File.Exists(Repo.AssemblyPath(p))).SelectMany(p =>
        {
            using var pe = File.OpenRead(Repo.AssemblyPath(p));
            return IlScanner.NativeImports(pe).ToList();
        })];

    [Fact]
    public void Only_the_protocol_libc_class_binds_libc()
    {
        var imports = RepoImports();
        Assert.Contains(imports, i => i.Type == LibcBindingRule.Binding && i.Library == "libc");
        Assert.Empty(LibcBindingRule.Violations(imports, LibcBindingRule.AllowedDuringTransition));
    }

    [Fact]
    public void Every_transition_allowance_is_still_needed()
    {
        var binding = RepoImports().Where(i => LibcBindingRule.IsLibc(i.Library)).Select(i => i.Type).ToHashSet(StringComparer.Ordinal);
        Assert.Empty(LibcBindingRule.AllowedDuringTransition.Where(t => !binding.Contains(t))
            .Select(t => $"{t} no longer binds libc: remove it from LibcBindingRule.AllowedDuringTransition"));
    }

    [Fact]
    public void A_private_libc_import_is_caught()
    {
        using var snippet = new Snippet("Writ.Agent", ("src/Writ.Agent/PeerTracking/Sneaky.cs", """
            using System.Runtime.InteropServices;
            namespace Writ.Agent.PeerTracking;
            internal static class Sneaky
            {
                private static class NativeMethods
                {
                    [DllImport("libc", EntryPoint = "getpid")]
                    public static extern int GetPid();
                    [DllImport("libcrypto.so.3")]
                    public static extern void ERR_clear_error();
                }
            }
            """));
        snippet.Pe.Position = 0;
        var problem = Assert.Single(LibcBindingRule.Violations(IlScanner.NativeImports(snippet.Pe), []));
        Assert.StartsWith("Writ.Agent.PeerTracking.Sneaky.GetPid imports libc", problem, StringComparison.Ordinal);
    }
}
