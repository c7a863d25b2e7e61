using System.Text.RegularExpressions;

namespace Writ.Spiffe.Tests;

/// <summary>
/// Every case of conformance/spiffe/spiffeid_cases.md (go-spiffe's spiffeid tests, Apache-2.0), parsed from the markdown at test
/// time. Accept/reject must match go-spiffe; wording need not.
/// </summary>
public sealed partial class SpiffeIdConformanceTests
{
    private static readonly TrustDomain Td = TrustDomain.Parse("trustdomain");

    private sealed record Case(string Section, string Kind, string Input, bool Ok, string Line);

    private static Dictionary<string, List<string>> Sections()
    {
        var lines = File.ReadAllLines(TestData.Conformance("spiffeid_cases.md"));
        var result = new Dictionary<string, List<string>>();
        List<string>? current = null;
        foreach (var line in lines)
        {
            var m = SectionHeader().Match(line);
            if (m.Success)
            {
                current = [];
                result[m.Groups[1].Value] = current;
                continue;
            }
            if (current is not null && line.StartsWith('|') && !line.StartsWith("|---", StringComparison.Ordinal))
            {
                current.Add(line);
            }
        }
        return result;
    }

    private static string[] Cells(string row) => row.Trim().Trim('|').Split('|').Select(c => c.Trim()).ToArray();

    private static bool Expect(string cell) => cell.StartsWith("OK", StringComparison.Ordinal) || cell.StartsWith("ACCEPT", StringComparison.Ordinal)
        ? true
        : cell.StartsWith("ERR", StringComparison.Ordinal) || cell.StartsWith("REJECT", StringComparison.Ordinal)
            ? false
            : throw new InvalidOperationException($"cannot read expectation '{cell}'");

    /// <summary>A Go string literal in backticks: `"..."`.</summary>
    private static string? GoString(string cell)
    {
        var m = GoLiteral().Match(cell);
        return m.Success ? m.Groups[1].Value : null;
    }

    private static List<Case> AllCases()
    {
        var s = Sections();
        var cases = new List<Case>();

        // §1 FromString explicit.
        foreach (var row in s["1"].Skip(1))
        {
            var c = Cells(row);
            cases.Add(new Case("1", "id", GoString(c[0]) ?? throw new InvalidOperationException(row), Expect(c[1]), row));
        }

        // §2 generated per-character (i != '/').
        foreach (var row in s["2"].Skip(1))
        {
            var c = Cells(row);
            var ch = (char)Convert.ToInt32(c[0], 16);
            cases.Add(new Case("2", "id", "spiffe://trustdomain" + ch + "/path", Expect(c[^2]), row));
            cases.Add(new Case("2", "id", "spiffe://trustdomain/path" + ch, Expect(c[^1]), row));
            // §7 generated loop: bare name "trustdomain"+c is OK iff c is a trust domain char (same column as §2's TD case).
            cases.Add(new Case("7", "td", "trustdomain" + ch, Expect(c[^2]), row));
            if (Expect(c[^2]))
            {
                cases.Add(new Case("7", "td", "spiffe://trustdomain" + ch, true, row));
            }
        }
        cases.Add(new Case("7", "td", "trustdomain/", false, "§7 loop includes '/'"));

        // §3 FromURI: url.Parse("x") is the text x; the struct literals are spelled out.
        foreach (var row in s["3"].Skip(1))
        {
            var c = Cells(row);
            var input = c[0].Contains("url.Parse", StringComparison.Ordinal) ? Quoted(c[0])[0] : (c[0].Contains("url.URL{}", StringComparison.Ordinal) ? ""
                : c[0].Contains("SPIFFE", StringComparison.Ordinal) ? "SPIFFE://trustdomain" : throw new InvalidOperationException(row));
            cases.Add(new Case("3", "id", input, Expect(c[1]), row));
        }

        // §4 FromSegments.
        foreach (var row in s["4"].Skip(1))
        {
            var c = Cells(row);
            cases.Add(new Case("4", "segments", c[0].Trim('`'), Expect(c[1]), row));
        }

        // §5 path-string APIs; the zero-ID rows have no counterpart (SpiffeId has no zero value).
        foreach (var row in s["5"].Skip(1))
        {
            var c = Cells(row);
            var op = c[0].Trim('`');
            if (op.Contains("zero ID", StringComparison.Ordinal))
            {
                continue;
            }
            if (op.StartsWith("FromPathf", StringComparison.Ordinal))
            {
                var arg = PathfArg().Match(op);
                cases.Add(new Case("5", "path", arg.Groups[2].Success && arg.Groups[2].Value.Length > 0 ? arg.Groups[2].Value : arg.Groups[1].Value, Expect(c[1]), row));
            }
            else if (op.StartsWith("ReplacePath", StringComparison.Ordinal))
            {
                cases.Add(new Case("5", "path", Quoted(op)[^1], Expect(c[1]), row));
            }
            else if (op.StartsWith("AppendPath", StringComparison.Ordinal))
            {
                var q = Quoted(op);
                cases.Add(new Case("5", "append", q[0] + "\n" + q[1], Expect(c[1]), row));
            }
            else if (op.StartsWith("ReplaceSegments", StringComparison.Ordinal) || op.StartsWith("AppendSegments", StringComparison.Ordinal))
            {
                var list = op[op.LastIndexOf('[')..];
                cases.Add(new Case("5", "segments", list, Expect(c[1]), row));
            }
        }

        // §6 segment helpers.
        foreach (var row in s["6"].Skip(1))
        {
            var c = Cells(row);
            var args = Quoted(c[0]);
            cases.Add(new Case("6", "segments", "[" + string.Join(", ", args.Select(a => "\"" + a + "\"")) + "]", Expect(c[1]), row));
        }

        // §7 TrustDomainFromString explicit rows (the last row lists three accepted inputs).
        foreach (var row in s["7"].Skip(1))
        {
            var c = Cells(row);
            foreach (var input in Quoted(c[0]))
            {
                cases.Add(new Case("7", "td", input, Expect(c[1]), row));
            }
        }

        // §9 extra spec cases with literal inputs; the descriptive rows are tested separately below.
        foreach (var row in s["9"].Skip(1))
        {
            var c = Cells(row);
            var input = c[0].Trim('`');
            if (input.Contains('<', StringComparison.Ordinal) || input.Contains(' ', StringComparison.Ordinal))
            {
                continue;
            }
            cases.Add(new Case("9", "id", input, Expect(c[1]), row));
        }
        return cases;
    }

    private static List<string> Quoted(string text) => [.. QuotedRegex().Matches(text).Select(m => m.Groups[1].Value)];

    private static bool Run(Case c, out string? error)
    {
        switch (c.Kind)
        {
            case "id":
                return SpiffeId.TryParse(c.Input, out _, out error);
            case "td":
                return TrustDomain.TryParse(c.Input, out _, out error);
            case "path":
                return SpiffeId.TryFromPath(Td, c.Input, out _, out error);
            case "append":
                // go-spiffe's AppendPath validates the appended path on its own, then the result.
                var two = c.Input.Split('\n');
                return SpiffeId.TryFromPath(Td, two[1], out _, out error) && SpiffeId.TryFromPath(Td, two[0] + two[1], out _, out error);
            case "segments":
                var segs = c.Input is "nil" or "[]" ? [] : Quoted(c.Input).ToArray();
                try
                {
                    SpiffeId.FromSegments(Td, segs);
                    error = null;
                    return true;
                }
                catch (ArgumentException e)
                {
                    error = e.Message;
                    return false;
                }
            default:
                throw new InvalidOperationException(c.Kind);
        }
    }

    [Fact]
    public void Every_case_in_the_markdown_matches_go_spiffe()
    {
        var cases = AllCases();
        // Guard against a parser bug that silently finds few cases: §1 25, §2 2×255, §7 loop 255+39+1, §3 6, §4 8, §5 18, §6 11, §7 13, §9 16.
        Assert.True(cases.Count >= 900, $"only {cases.Count} cases were read from spiffeid_cases.md");
        Assert.Equal(25, cases.Count(c => c.Section == "1"));
        Assert.Equal(510, cases.Count(c => c.Section == "2"));
        Assert.Equal(16, cases.Count(c => c.Section == "9"));
        var failures = new List<string>();
        foreach (var c in cases)
        {
            var ok = Run(c, out var error);
            if (ok != c.Ok)
            {
                failures.Add($"[{c.Section}/{c.Kind}] {Escape(c.Input)}: expected {(c.Ok ? "accept" : "reject")}, got {(ok ? "accept" : "reject: " + error)}");
            }
            else if (!ok)
            {
                Assert.False(string.IsNullOrWhiteSpace(error));
                Assert.DoesNotContain('\n', error);
            }
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    [Fact]
    public void Id_of_exactly_2048_bytes_is_accepted_and_2049_refused()
    {
        var prefix = "spiffe://td/";
        var ok = prefix + new string('a', 2048 - prefix.Length);
        Assert.Equal(2048, ok.Length);
        Assert.True(SpiffeId.TryParse(ok, out var id, out _));
        Assert.Equal(ok, id.ToString());
        Assert.False(SpiffeId.TryParse(ok + "b", out _, out var error));
        Assert.Contains("2048", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Trust_domain_of_256_bytes_is_refused_and_255_accepted()
    {
        Assert.True(TrustDomain.TryParse(new string('a', 255), out _, out _));
        Assert.False(TrustDomain.TryParse(new string('a', 256), out _, out var e1));
        Assert.Contains("255", e1, StringComparison.Ordinal);
        Assert.False(SpiffeId.TryParse("spiffe://" + new string('a', 256) + "/x", out _, out var e2));
        Assert.Contains("255", e2, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("SPIFFE://td/a")]
    [InlineData("spiffe://TD/a")]
    [InlineData("Spiffe://td/a")]
    public void Uppercase_scheme_or_trust_domain_is_refused(string text) => Assert.False(SpiffeId.TryParse(text, out _, out _));

    private static string Escape(string s) => string.Concat(s.Select(ch => ch is >= ' ' and <= '~' ? ch.ToString() : $"\\u{(int)ch:X4}"));

    [GeneratedRegex(@"^## (\d+)\.")]
    private static partial Regex SectionHeader();

    [GeneratedRegex("^`\"(.*)\"`")]
    private static partial Regex GoLiteral();

    [GeneratedRegex("\"([^\"]*)\"")]
    private static partial Regex QuotedRegex();

    [GeneratedRegex("FromPathf\\(\"([^\"]*)\"(?:, \"([^\"]*)\")?\\)")]
    private static partial Regex PathfArg();
}
