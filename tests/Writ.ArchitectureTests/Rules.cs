using System.Xml.Linq;

namespace Writ.ArchitectureTests;

/// <summary>
/// The direction project references point: Writ.Spiffe ← Writ.Protocol ← Writ.Agent / Writ.Server ← Writ.Cli, with
/// Writ.Policy alone (the server, Writ.Authz and the top layer use it; the agent only through Writ.Authz's types),
/// Writ.Authz (request-time decisions, shared by agent and server) over Policy and Protocol, Writ.Workload (the .NET SDK
/// for workloads) over Writ.Spiffe alone, Writ.Tpm alone (the agent drives a TPM with it, the server verifies TPM evidence with it) and Writ.Bench beside the CLI (it drives a server and
/// agents; only the CLI wires it). Agent and server never know each other: they meet at the protocol.
/// </summary>
public static class ProjectDirection
{
    /// <summary>Each src project and the projects of ours it may reference. A new project must be added here.</summary>
    public static readonly IReadOnlyDictionary<string, string[]> MayReference = new Dictionary<string, string[]>(StringComparer.Ordinal)
    {
        ["Writ.Spiffe"] = [],
        ["Writ.Policy"] = [],
        ["Writ.Tpm"] = [],
        ["Writ.Protocol"] = ["Writ.Spiffe"],
        ["Writ.Authz"] = ["Writ.Spiffe", "Writ.Policy", "Writ.Protocol"],
        ["Writ.Workload"] = ["Writ.Spiffe"],
        ["Writ.Agent"] = ["Writ.Spiffe", "Writ.Protocol", "Writ.Tpm", "Writ.Policy", "Writ.Authz"],
        ["Writ.Server"] = ["Writ.Spiffe", "Writ.Protocol", "Writ.Policy", "Writ.Tpm", "Writ.Authz"],
        ["Writ.Bench"] = ["Writ.Spiffe", "Writ.Protocol", "Writ.Policy", "Writ.Tpm", "Writ.Authz", "Writ.Agent", "Writ.Server", "Writ.Workload"],
        ["Writ.Cli"] = ["Writ.Spiffe", "Writ.Protocol", "Writ.Policy", "Writ.Tpm", "Writ.Authz", "Writ.Agent", "Writ.Server", "Writ.Bench", "Writ.Workload"],
    };

    /// <summary>The violations in a project file's ProjectReference items (by the referenced .csproj's name).</summary>
    public static IEnumerable<string> CheckProjectFile(string project, XDocument csproj)
    {
        var referenced = csproj.Descendants("ProjectReference")
            .Select(e => (string?)e.Attribute("Include"))
            .Where(i => !string.IsNullOrWhiteSpace(i))
            .Select(i => Path.GetFileNameWithoutExtension(i!.Replace('\\', '/')));
        return Check(project, referenced, "its project file references");
    }

    /// <summary>
    /// The violations in a compiled assembly's references: <paramref name="assemblyToProject"/> maps our assembly names
    /// (writ → Writ.Cli) to projects; references to anything else (the BCL, packages) are not ours to rule on.
    /// </summary>
    public static IEnumerable<string> CheckAssembly(string project, IEnumerable<string> referencedAssemblies, IReadOnlyDictionary<string, string> assemblyToProject) =>
        Check(project, referencedAssemblies.Where(assemblyToProject.ContainsKey).Select(a => assemblyToProject[a]), "its compiled assembly references");

    private static IEnumerable<string> Check(string project, IEnumerable<string> referenced, string how)
    {
        if (!MayReference.TryGetValue(project, out var allowed))
        {
            yield return $"{project} is not in ProjectDirection.MayReference: add it with the projects it may reference";
            yield break;
        }
        foreach (var r in referenced.Distinct(StringComparer.Ordinal))
            if (!allowed.Contains(r, StringComparer.Ordinal))
                yield return $"{project}: {how} {r}, against the direction (it may reference only: {(allowed.Length == 0 ? "nothing of ours" : string.Join(", ", allowed))})";
    }
}

/// <summary>
/// gRPC status is the API layer's business: domain code throws <c>Writ.Protocol.Errors.WritException</c> and one
/// interceptor per API maps it. Only files named <c>*Interceptor*.cs</c> in the API layer may create an
/// <c>RpcException</c> (construct it, or derive from it).
/// </summary>
public static class RpcExceptionRule
{
    public const string RpcException = "Grpc.Core.RpcException";

    /// <summary>The API layer: the only folders whose interceptors may create an RpcException.</summary>
    public static readonly string[] ApiLayer = ["src/Writ.Server/Api/", "src/Writ.Agent/WorkloadApi/"];

    /// <summary>
    /// The one mapping of a <c>WritException</c> to a gRPC status (kind → status code, the stable code in the detail and
    /// the trailer). It lives in Writ.Protocol because the server's and the agent's interceptors share it; only they call it.
    /// </summary>
    public static readonly string[] StatusMapping = ["src/Writ.Protocol/Errors/WritStatus.cs"];

    /// <summary>
    /// Files allowed to create RpcExceptions while a change is under way; empty since #13 landed (every throw in the
    /// agent API, the Workload API and the SVID cache is a WritException). The test fails on an entry no longer needed.
    /// </summary>
    public static readonly string[] AllowedDuringTransition = [];

    public static bool IsCreation(IlUse u) => u.Target == RpcException && u.Method == ".ctor";

    /// <summary>Whether a file may create an RpcException for good: an interceptor of the API layer.</summary>
    public static bool IsInterceptor(string file) =>
        ApiLayer.Any(dir => file.StartsWith(dir, StringComparison.Ordinal))
        && Path.GetFileName(file).Contains("Interceptor", StringComparison.Ordinal) && file.EndsWith(".cs", StringComparison.Ordinal);

    /// <summary>
    /// Code generated at build time (under obj/: Grpc.Tools' service base classes answer an unimplemented method with
    /// an RpcException) is not ours to rule on.
    /// </summary>
    public static bool IsGenerated(string file) => file.Contains("/obj/", StringComparison.Ordinal);

    /// <summary>The creations that break the rule, given the allow-list in force.</summary>
    public static IEnumerable<IlUse> Violations(IEnumerable<IlUse> uses, IReadOnlyCollection<string> allowed) =>
        uses.Where(IsCreation).Where(u => u.File is null || !(IsInterceptor(u.File) || StatusMapping.Contains(u.File) || IsGenerated(u.File) || allowed.Contains(u.File)));
}

/// <summary>
/// The ledger has one writer: only <c>Writ.Server.Ledger.LedgerWriter</c> appends to it (calls
/// <c>ILedgerStore.AppendAsync</c>, on the interface or on an implementation, or takes it as a delegate).
/// </summary>
public static class LedgerWriterRule
{
    public const string LedgerStore = "Writ.Server.Storage.ILedgerStore";
    public const string Writer = "Writ.Server.Ledger.LedgerWriter";

    /// <summary>
    /// Types allowed to append directly while a change is under way; none since #13 landed (LedgerWriter is the one
    /// writer). The test fails on an entry that is no longer needed.
    /// </summary>
    public static readonly string[] AllowedDuringTransition = [];

    /// <summary>
    /// Benchmarks that time the raw store, for good: `writ bench pipeline` reports "ledger append alone" by appending
    /// to the throwaway SQLite store it creates for the run (never a real ledger). The test fails on an entry that no
    /// longer appends, as for the transition list.
    /// </summary>
    public static readonly string[] Benchmarks =
    [
        "Writ.Bench.PipelineBench",
    ];

    /// <summary>Every type allowed to append besides the writer: the transition entries and the benchmarks.</summary>
    public static IReadOnlyCollection<string> Allowed => [.. AllowedDuringTransition, .. Benchmarks];

    public static bool IsAppend(IlUse u, IReadOnlyCollection<string> storeTypes) => u.Method == "AppendAsync" && storeTypes.Contains(u.Target);

    /// <summary>The appends that break the rule; <paramref name="storeTypes"/> is ILedgerStore and its implementations.</summary>
    public static IEnumerable<IlUse> Violations(IEnumerable<IlUse> uses, IReadOnlyCollection<string> storeTypes, IReadOnlyCollection<string> allowed) =>
        uses.Where(u => IsAppend(u, storeTypes)).Where(u => u.Caller != Writer && !allowed.Contains(u.Caller));
}

/// <summary>
/// One libc binding: only <c>Writ.Protocol.Interop.Libc</c> declares imports from libc; every project calls it.
/// </summary>
public static class LibcBindingRule
{
    public const string Binding = "Writ.Protocol.Interop.Libc";

    /// <summary>
    /// Types that still declare their own libc imports (statfs/fgetxattr, the pidfd_open syscall and poll, get/setrlimit):
    /// left to move into Libc after #13 (see its closing note); a stale entry fails the test, a new one is refused.
    /// </summary>
    public static readonly string[] AllowedDuringTransition =
    [
        "Writ.Agent.WorkloadAttestation.ExecutableStorage",
        "Writ.Agent.Instances.PidfdWatcher",
        "Writ.Agent.WorkloadApi.FileDescriptorLimit",
    ];

    public static bool IsLibc(string library) => library is "libc" or "c" || library.StartsWith("libc.", StringComparison.Ordinal);

    public static IEnumerable<string> Violations(IEnumerable<(string Type, string Method, string Library)> imports, IReadOnlyCollection<string> allowed) =>
        imports.Where(i => IsLibc(i.Library) && i.Type != Binding && !allowed.Contains(i.Type))
            .Select(i => $"{i.Type}.{i.Method} imports {i.Library}: call Writ.Protocol.Interop.Libc (add the function there if it is missing)");
}
