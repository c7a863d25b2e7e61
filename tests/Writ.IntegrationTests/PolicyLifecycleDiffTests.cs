using Writ.Cli.Audit;
using Writ.Cli.Commands;
using Writ.Server.Storage;

namespace Writ.IntegrationTests;

/// <summary>The line diff behind `writ policy diff` (in-process).</summary>
public sealed class PolicyLifecycleDiffTests
{
    [Fact]
    public void Equal_texts_have_no_diff() => Assert.Equal("", LineDiff.Unified("a", "x\ny\n", "b", "x\ny\n"));

    [Fact]
    public void A_changed_line_has_three_lines_of_context()
    {
        var a = string.Join("\n", Enumerable.Range(1, 10).Select(i => $"l{i}")) + "\n";
        var b = a.Replace("l5\n", "L5\n", StringComparison.Ordinal);
        Assert.Equal("--- a\n+++ b\n@@ -2,7 +2,7 @@\n l2\n l3\n l4\n-l5\n+L5\n l6\n l7\n l8\n", LineDiff.Unified("a", a, "b", b));
    }

    [Fact]
    public void Distant_changes_make_separate_hunks_and_near_ones_merge()
    {
        var a = string.Join("\n", Enumerable.Range(1, 20).Select(i => $"l{i}")) + "\n";
        var far = a.Replace("l2\n", "X\n", StringComparison.Ordinal).Replace("l18\n", "Y\n", StringComparison.Ordinal);
        var d = LineDiff.Unified("a", a, "b", far);
        Assert.Equal(2, d.Split('\n').Count(l => l.StartsWith("@@", StringComparison.Ordinal)));
        Assert.Contains("@@ -1,5 +1,5 @@", d, StringComparison.Ordinal);
        Assert.Contains("@@ -15,6 +15,6 @@", d, StringComparison.Ordinal);
        var near = a.Replace("l5\n", "X\n", StringComparison.Ordinal).Replace("l10\n", "Y\n", StringComparison.Ordinal);
        Assert.Single(LineDiff.Unified("a", a, "b", near).Split('\n'), l => l.StartsWith("@@", StringComparison.Ordinal));
    }

    [Fact]
    public void Insertions_and_deletions_at_the_ends()
    {
        Assert.Equal("--- a\n+++ b\n@@ -0,0 +1,2 @@\n+x\n+y\n", LineDiff.Unified("a", "", "b", "x\ny\n"));
        Assert.Equal("--- a\n+++ b\n@@ -1,2 +0,0 @@\n-x\n-y\n", LineDiff.Unified("a", "x\ny\n", "b", ""));
        Assert.Equal("--- a\n+++ b\n@@ -1,2 +1,3 @@\n x\n y\n+z\n", LineDiff.Unified("a", "x\ny\n", "b", "x\ny\nz\n"));
    }

    [Fact]
    public void Applying_the_diff_gives_the_new_text()
    {
        var a = "permit(a);\nforbid(b);\n// c\npermit(d);\nx\ny\nz\n";
        var b = "forbid(b);\n// c2\npermit(d);\nnew\nx\nz\n";
        var d = LineDiff.Unified("a", a, "b", b);
        // Rebuild both sides from the hunks (the whole texts are covered: small files, context 3).
        var lines = d.Split('\n').Skip(3).Where(l => l.Length > 0 && !l.StartsWith("@@", StringComparison.Ordinal)).ToList();
        Assert.Equal(a, string.Concat(lines.Where(l => l[0] != '+').Select(l => l[1..] + "\n")));
        Assert.Equal(b, string.Concat(lines.Where(l => l[0] != '-').Select(l => l[1..] + "\n")));
    }

    [Fact]
    public void Sets_pair_files_by_name()
    {
        var d = PolicyLifecycleCommands.DiffSets("v1", [new PolicyFileRecord("a.cedar", "x\n"), new PolicyFileRecord("b.cedar", "y\n")],
            "v2", [new PolicyFileRecord("b.cedar", "y2\n"), new PolicyFileRecord("c.cedar", "z\n")]);
        Assert.Contains("--- v1/a.cedar\n+++ /dev/null\n", d, StringComparison.Ordinal);
        Assert.Contains("--- v1/b.cedar\n+++ v2/b.cedar\n@@ -1 +1 @@\n-y\n+y2\n", d, StringComparison.Ordinal);
        Assert.Contains("--- /dev/null\n+++ v2/c.cedar\n", d, StringComparison.Ordinal);
    }
}
