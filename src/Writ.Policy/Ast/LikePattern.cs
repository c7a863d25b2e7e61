using System.Text;

namespace Writ.Policy.Ast;

/// <summary>
/// A <c>like</c> pattern: literal segments separated by wildcards. <c>a*b</c> is <c>["a", "b"]</c>;
/// <c>*</c> is <c>["", ""]</c>; a pattern without wildcards has one segment.
/// </summary>
public sealed class LikePattern
{
    public LikePattern(IReadOnlyList<string> segments)
    {
        ArgumentNullException.ThrowIfNull(segments);
        if (segments.Count == 0) throw new ArgumentException("a like pattern needs at least one segment", nameof(segments));
        Segments = segments;
    }

    public IReadOnlyList<string> Segments { get; }

    /// <summary>True if <paramref name="text"/> matches the whole pattern (wildcards match any run of characters).</summary>
    public bool IsMatch(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var segs = Segments;
        if (segs.Count == 1) return string.Equals(segs[0], text, StringComparison.Ordinal);
        var first = segs[0];
        var last = segs[^1];
        if (!text.StartsWith(first, StringComparison.Ordinal)) return false;
        var pos = first.Length;
        var end = text.Length - last.Length;
        if (end < pos || !text.AsSpan(end).SequenceEqual(last)) return false;
        for (var i = 1; i < segs.Count - 1; i++)
        {
            var s = segs[i];
            if (s.Length == 0) continue;
            var idx = text.AsSpan(pos, end - pos).IndexOf(s.AsSpan(), StringComparison.Ordinal);
            if (idx < 0) return false;
            pos += idx + s.Length;
        }

        return true;
    }

    /// <summary>The pattern in Cedar syntax, without quotes (literal stars escaped).</summary>
    public override string ToString()
    {
        var sb = new StringBuilder();
        for (var i = 0; i < Segments.Count; i++)
        {
            if (i > 0) sb.Append('*');
            var q = EntityUid.Quote(Segments[i]);
            sb.Append(q.AsSpan(1, q.Length - 2).ToString().Replace("*", "\\*", StringComparison.Ordinal));
        }

        return sb.ToString();
    }
}
