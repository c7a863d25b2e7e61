using System.Globalization;
using System.Text;

namespace Writ.Cli.Audit;

/// <summary>
/// A small unified line diff (as `diff -u` prints it, 3 lines of context): the longest common subsequence of the lines
/// between the common prefix and suffix. Policy files are small; past <see cref="MaxCells"/> comparisons the changed
/// middle is shown as removed and added as a whole instead of using quadratic memory.
/// </summary>
public static class LineDiff
{
    public const int Context = 3;
    public const long MaxCells = 16_000_000;

    private enum Op { Same, Del, Add }

    /// <summary>The unified diff of two texts with these header names, or "" when they are equal.</summary>
    public static string Unified(string oldName, string oldText, string newName, string newText)
    {
        var a = Lines(oldText);
        var b = Lines(newText);
        var script = Script(a, b);
        if (script.All(s => s.Op == Op.Same))
            return "";
        var sb = new StringBuilder();
        sb.Append("--- ").Append(oldName).Append('\n');
        sb.Append("+++ ").Append(newName).Append('\n');
        // Positions (line numbers before each script item) in both texts.
        var posA = new int[script.Count + 1];
        var posB = new int[script.Count + 1];
        for (var i = 0; i < script.Count; i++)
        {
            posA[i + 1] = posA[i] + (script[i].Op == Op.Add ? 0 : 1);
            posB[i + 1] = posB[i] + (script[i].Op == Op.Del ? 0 : 1);
        }
        var i0 = 0;
        while (i0 < script.Count)
        {
            var firstChange = script.FindIndex(i0, s => s.Op != Op.Same);
            if (firstChange < 0)
                break;
            var start = Math.Max(i0, firstChange - Context);
            var end = firstChange;   // exclusive end of the hunk's changes
            while (true)
            {
                var lastChange = end;
                while (lastChange < script.Count && script[lastChange].Op != Op.Same)
                    lastChange++;
                var next = script.FindIndex(lastChange, s => s.Op != Op.Same);
                if (next >= 0 && next - lastChange <= 2 * Context)
                {
                    end = next;
                    continue;
                }
                end = Math.Min(script.Count, lastChange + Context);
                break;
            }
            var aLen = posA[end] - posA[start];
            var bLen = posB[end] - posB[start];
            sb.Append("@@ -").Append(Range(posA[start], aLen)).Append(" +").Append(Range(posB[start], bLen)).Append(" @@\n");
            for (var i = start; i < end; i++)
            {
                var (op, line) = script[i];
                sb.Append(op switch { Op.Del => '-', Op.Add => '+', _ => ' ' }).Append(line).Append('\n');
            }
            i0 = end;
        }
        return sb.ToString();
    }

    private static string Range(int before, int length) =>
        length == 0 ? $"{before.ToString(CultureInfo.InvariantCulture)},0"
        : length == 1 ? (before + 1).ToString(CultureInfo.InvariantCulture)
        : $"{(before + 1).ToString(CultureInfo.InvariantCulture)},{length.ToString(CultureInfo.InvariantCulture)}";

    internal static string[] Lines(string text)
    {
        if (text.Length == 0)
            return [];
        var lines = text.Replace("\r\n", "\n", StringComparison.Ordinal).Split('\n');
        return text.EndsWith('\n') ? lines[..^1] : lines;
    }

    private static List<(Op Op, string Line)> Script(string[] a, string[] b)
    {
        var pre = 0;
        while (pre < a.Length && pre < b.Length && a[pre] == b[pre])
            pre++;
        var suf = 0;
        while (suf < a.Length - pre && suf < b.Length - pre && a[^(suf + 1)] == b[^(suf + 1)])
            suf++;
        var script = new List<(Op, string)>(a.Length + b.Length);
        for (var i = 0; i < pre; i++)
            script.Add((Op.Same, a[i]));
        var n = a.Length - pre - suf;
        var m = b.Length - pre - suf;
        if ((long)n * m > MaxCells)
        {
            for (var i = 0; i < n; i++)
                script.Add((Op.Del, a[pre + i]));
            for (var j = 0; j < m; j++)
                script.Add((Op.Add, b[pre + j]));
        }
        else
        {
            // lcs[i, j] = LCS length of a[pre+i..] and b[pre+j..]
            var lcs = new int[n + 1, m + 1];
            for (var i = n - 1; i >= 0; i--)
                for (var j = m - 1; j >= 0; j--)
                    lcs[i, j] = a[pre + i] == b[pre + j] ? lcs[i + 1, j + 1] + 1 : Math.Max(lcs[i + 1, j], lcs[i, j + 1]);
            int x = 0, y = 0;
            while (x < n || y < m)
            {
                if (x < n && y < m && a[pre + x] == b[pre + y])
                {
                    script.Add((Op.Same, a[pre + x]));
                    x++;
                    y++;
                }
                else if (y < m && (x == n || lcs[x, y + 1] > lcs[x + 1, y]))
                {
                    script.Add((Op.Add, b[pre + y]));
                    y++;
                }
                else
                {
                    script.Add((Op.Del, a[pre + x]));
                    x++;
                }
            }
        }
        for (var i = a.Length - suf; i < a.Length; i++)
            script.Add((Op.Same, a[i]));
        return script;
    }
}
