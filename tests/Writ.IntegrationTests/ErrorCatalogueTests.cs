using System.Text.RegularExpressions;
using Writ.IntegrationTests.Harness;

namespace Writ.IntegrationTests;

/// <summary>
/// docs/errors.md is the catalogue of stable codes: every <c>"WRIT-…"</c> literal in src/ has its row there (code, when,
/// what to do), and every row's code still exists in src/ (a code is never renamed silently).
/// </summary>
public sealed partial class ErrorCatalogueTests
{
    [GeneratedRegex("\"(WRIT-[A-Z0-9-]*[A-Z0-9])\"")]   // a code never ends in "-": "WRIT-CONFIG-" is a prefix, not a code
    private static partial Regex CodeLiteral();

    [GeneratedRegex(@"^\|\s*`(WRIT-[A-Z0-9-]+)`\s*\|(.*)\|(.*)\|\s*$", RegexOptions.Multiline)]
    private static partial Regex CatalogueRow();

    private static HashSet<string> CodesInSource()
    {
        var src = Path.Combine(Repo.Root, "src");
        var sep = Path.DirectorySeparatorChar;
        return Directory.EnumerateFiles(src, "*.cs", SearchOption.AllDirectories)
            .Where(f => !f.Contains($"{sep}bin{sep}", StringComparison.Ordinal) && !f.Contains($"{sep}obj{sep}", StringComparison.Ordinal))
            .SelectMany(f => CodeLiteral().Matches(File.ReadAllText(f)).Select(m => m.Groups[1].Value))
            .ToHashSet(StringComparer.Ordinal);
    }

    private static List<Match> Rows() => CatalogueRow().Matches(File.ReadAllText(Path.Combine(Repo.Root, "docs", "errors.md"))).ToList();

    [Fact]
    public void Every_code_in_the_source_is_in_the_catalogue()
    {
        var documented = Rows().Select(m => m.Groups[1].Value).ToHashSet(StringComparer.Ordinal);
        var codes = CodesInSource();
        Assert.True(codes.Count > 20, $"found only {codes.Count} codes in src/: the scan is broken");
        var missing = codes.Where(c => !documented.Contains(c)).Order(StringComparer.Ordinal).ToList();
        Assert.True(missing.Count == 0, "codes missing from docs/errors.md (add a row | `CODE` | when | what to do |): " + string.Join(", ", missing));
    }

    [Fact]
    public void Every_code_in_the_catalogue_is_still_in_the_source_once_with_when_and_what_to_do()
    {
        var rows = Rows();
        Assert.True(rows.Count > 20, $"found only {rows.Count} rows in docs/errors.md: the table format changed");
        var codes = CodesInSource();
        var stale = rows.Select(m => m.Groups[1].Value).Where(c => !codes.Contains(c)).ToList();
        Assert.True(stale.Count == 0, "docs/errors.md lists codes no longer in src/: " + string.Join(", ", stale));
        var twice = rows.GroupBy(m => m.Groups[1].Value).Where(g => g.Count() > 1).Select(g => g.Key).ToList();
        Assert.True(twice.Count == 0, "docs/errors.md lists codes twice: " + string.Join(", ", twice));
        var empty = rows.Where(m => string.IsNullOrWhiteSpace(m.Groups[2].Value) || string.IsNullOrWhiteSpace(m.Groups[3].Value)).Select(m => m.Groups[1].Value).ToList();
        Assert.True(empty.Count == 0, "rows without 'when' or 'what to do': " + string.Join(", ", empty));
    }
}
