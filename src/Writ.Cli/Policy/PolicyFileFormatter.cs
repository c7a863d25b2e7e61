using System.Text;
using Writ.Policy.Ast;
using Writ.Policy.Syntax;

namespace Writ.Cli.Policy;

/// <summary>
/// Canonical formatting of a Cedar policy file. The engine's formatter prints policies from the AST and so drops
/// comments; this keeps the comments that sit between policies (above a policy, or after its <c>;</c> on the same
/// line) and refuses a file with a comment inside a policy rather than lose it.
/// </summary>
public static class PolicyFileFormatter
{
    private readonly record struct Comment(int Start, int End);

    public static bool TryFormat(string path, string text, out string formatted, out string error)
    {
        formatted = "";
        if (PolicyInputs.LooksLikeJson(path, text))
        {
            error = $"{path}: is in the JSON policy format; format formats Cedar text (.cedar) only";
            return false;
        }
        if (!PolicyInputs.TryParsePolicies(path, text, out var set, out var errors))
        {
            error = errors[0] + (errors.Count > 1 ? $" (and {errors.Count - 1} more errors; run 'writ policy validate')" : "");
            return false;
        }
        var lineStarts = LineStarts(text);
        var comments = FindComments(text);
        var policies = set!.All.Where(p => p.TemplateId is null).OrderBy(p => p.Span.Start).ToList();
        foreach (var c in comments)
        {
            if (policies.Any(p => c.Start >= p.Span.Start && c.Start < p.Span.End))
            {
                var (line, col) = Position(lineStarts, c.Start);
                error = $"{path}:{line}:{col}: a comment inside a policy would be lost by formatting; move it above the policy (comments between policies are kept)";
                return false;
            }
        }

        var sb = new StringBuilder();
        var ci = 0;
        var prevEnd = -1; // offset just after the previous item (comment or policy)
        var prevPolicyEndLine = -1;
        foreach (var p in policies.Append(null))
        {
            var limit = p?.Span.Start ?? int.MaxValue;
            while (ci < comments.Count && comments[ci].Start < limit)
            {
                var c = comments[ci++];
                var body = text[c.Start..c.End].TrimEnd();
                if (prevPolicyEndLine > 0 && Position(lineStarts, c.Start).Line == prevPolicyEndLine && prevEnd <= c.Start
                    && !text[prevEnd..c.Start].Contains('\n', StringComparison.Ordinal))
                {
                    sb.Append(' ').Append(body);
                }
                else
                {
                    Separate(sb, text, prevEnd, c.Start);
                    sb.Append(body);
                }
                prevEnd = c.End;
            }
            if (p is null)
            {
                break;
            }
            Separate(sb, text, prevEnd, p.Span.Start, policyFollows: true);
            sb.Append(PolicyFormatter.Format(p));
            prevEnd = p.Span.End;
            prevPolicyEndLine = Position(lineStarts, Math.Max(p.Span.Start, p.Span.End - 1)).Line;
        }
        if (sb.Length > 0)
        {
            sb.Append('\n');
        }
        formatted = sb.ToString();
        error = "";
        return true;

        static void Separate(StringBuilder sb, string text, int prevEnd, int nextStart, bool policyFollows = false)
        {
            if (sb.Length == 0)
            {
                return;
            }
            // policies are always separated by a blank line; a comment keeps a blank line above it only if it had one
            var gap = prevEnd >= 0 && prevEnd <= nextStart ? text[prevEnd..nextStart] : "";
            var blank = HasBlankLine(gap) || (policyFollows && sb[^1] == ';');
            sb.Append(blank ? "\n\n" : "\n");
        }
    }

    /// <summary>True if the file has a `//` comment (outside string literals).</summary>
    public static bool HasComments(string text) => FindComments(text).Count > 0;

    private static bool HasBlankLine(string gap)
    {
        var newlines = 0;
        foreach (var ch in gap)
        {
            if (ch == '\n')
            {
                if (++newlines >= 2)
                {
                    return true;
                }
            }
            else if (!char.IsWhiteSpace(ch))
            {
                newlines = 0;
            }
        }
        return false;
    }

    private static List<Comment> FindComments(string text)
    {
        var list = new List<Comment>();
        var i = 0;
        while (i < text.Length)
        {
            var ch = text[i];
            if (ch == '"')
            {
                i++;
                while (i < text.Length && text[i] != '"')
                {
                    i += text[i] == '\\' ? 2 : 1;
                }
                i++;
            }
            else if (ch == '/' && i + 1 < text.Length && text[i + 1] == '/')
            {
                var start = i;
                while (i < text.Length && text[i] != '\n')
                {
                    i++;
                }
                list.Add(new Comment(start, i));
            }
            else
            {
                i++;
            }
        }
        return list;
    }

    private static List<int> LineStarts(string text)
    {
        var starts = new List<int> { 0 };
        for (var i = 0; i < text.Length; i++)
        {
            if (text[i] == '\n')
            {
                starts.Add(i + 1);
            }
        }
        return starts;
    }

    private static (int Line, int Column) Position(List<int> lineStarts, int offset)
    {
        var idx = lineStarts.BinarySearch(offset);
        if (idx < 0)
        {
            idx = ~idx - 1;
        }
        return (idx + 1, offset - lineStarts[idx] + 1);
    }
}
