namespace Writ.ArchitectureTests;

/// <summary>Only <c>Writ.Server.Ledger.LedgerWriter</c> appends to the ledger (see <see cref="LedgerWriterRule"/>).</summary>
public sealed class LedgerWriterRuleTests
{
    private static IReadOnlyCollection<string> RepoStoreTypes()
    {
        var types = new List<string> { LedgerWriterRule.LedgerStore };
        foreach (var p in Repo.Projects.Where(p => File.Exists(Repo.AssemblyPath(p))))
        {
            using var pe = File.OpenRead(Repo.AssemblyPath(p));
            types.AddRange(IlScanner.Implementers(pe, LedgerWriterRule.LedgerStore));
        }
        return types;
    }

    [Fact]
    public void Only_the_ledger_writer_appends_to_the_ledger()
    {
        var violations = LedgerWriterRule.Violations(Repo.Uses, RepoStoreTypes(), LedgerWriterRule.Allowed).Select(u => u.Where).Distinct();
        Assert.Empty(violations);
    }

    [Fact]
    public void The_scan_finds_the_store_implementations_and_the_appends()
    {
        var types = RepoStoreTypes();
        Assert.Contains("Writ.Server.Storage.Sql.SqlLedgerStore", types);
        Assert.Contains(Repo.Uses, u => LedgerWriterRule.IsAppend(u, types));
    }

    [Fact]
    public void Every_transition_allowance_is_still_needed()
    {
        var types = RepoStoreTypes();
        var appending = Repo.Uses.Where(u => LedgerWriterRule.IsAppend(u, types)).Select(u => u.Caller).ToHashSet(StringComparer.Ordinal);
        var stale = LedgerWriterRule.Allowed.Where(t => !appending.Contains(t))
            .Select(t => $"{t} no longer appends to the ledger: remove it from LedgerWriterRule.{(LedgerWriterRule.Benchmarks.Contains(t) ? "Benchmarks" : "AllowedDuringTransition")}");
        Assert.Empty(stale);
    }

    [Fact]
    public void An_append_outside_the_writer_is_caught_through_an_alias_a_delegate_or_an_implementation()
    {
        // Named as the server's test assembly, to which the server opens its internals (SqlLedgerStore is internal).
        using var snippet = new Snippet("Writ.Server.Tests", ("src/Writ.Server/Api/AdminApi.Sneaky.cs", """
            using Store = Writ.Server.Storage.ILedgerStore;
            using Writ.Server.Storage;
            namespace Writ.Server.Api;
            internal static class Sneaky
            {
                public static System.Threading.Tasks.Task Direct(Store s) => s.AppendAsync([], [], default);
                public static object AsDelegate(ILedgerStore s) => (System.Func<System.Collections.Generic.IReadOnlyList<LedgerEvent>, System.Collections.Generic.IReadOnlyList<IssuedCredential>, System.Threading.CancellationToken, System.Threading.Tasks.Task<System.Collections.Generic.IReadOnlyList<LedgerEvent>>>)s.AppendAsync;
                public static System.Threading.Tasks.Task Concrete(Writ.Server.Storage.Sql.SqlLedgerStore s) => s.AppendAsync([], [], default);
                public static async System.Threading.Tasks.Task InAsync(ILedgerStore s) { await System.Threading.Tasks.Task.Yield(); await s.AppendAsync([], [], default); }
            }
            """));
        var violations = LedgerWriterRule.Violations(snippet.Uses(), RepoStoreTypes(), []).ToList();
        Assert.Equal(4, violations.Count);
        Assert.All(violations, v => Assert.Equal("Writ.Server.Api.Sneaky", v.Caller));
    }

    [Fact]
    public void The_writer_may_append_and_a_mention_in_a_comment_or_string_is_no_append()
    {
        using var snippet = new Snippet("Writ.Server",
            ("src/Writ.Server/Ledger/LedgerWriter.cs", """
                namespace Writ.Server.Ledger;
                public sealed class LedgerWriter(Writ.Server.Storage.ILedgerStore store)
                {
                    public System.Threading.Tasks.Task Append() => store.AppendAsync([], [], default);
                }
                """),
            ("src/Writ.Server/Api/AdminApi.Talk.cs", """
                namespace Writ.Server.Api;
                public static class Talk
                {
                    // store.Ledger.AppendAsync(events, [], ct) -- a comment
                    public static string Text() => "store.Ledger.AppendAsync(events, [], ct)";
                }
                """));
        var uses = snippet.Uses();
        Assert.Single(uses, u => LedgerWriterRule.IsAppend(u, RepoStoreTypes()));
        Assert.Empty(LedgerWriterRule.Violations(uses, RepoStoreTypes(), []));
    }
}
