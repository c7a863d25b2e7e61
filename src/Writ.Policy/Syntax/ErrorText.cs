using System.Text;

namespace Writ.Policy.Syntax;

/// <summary>Makes text that echoes user input safe for a one-line error message.</summary>
internal static class ErrorText
{
    /// <summary>
    /// Replaces line breaks and other control characters (incl. U+0085, U+2028, U+2029) with spaces and cuts the text
    /// to <paramref name="max"/> characters, so an error quoting hostile input stays one readable line.
    /// </summary>
    public static string OneLine(string s, int max = 300)
    {
        ArgumentNullException.ThrowIfNull(s);
        var sb = new StringBuilder(Math.Min(s.Length, max) + 3);
        foreach (var c in s)
        {
            if (sb.Length >= max)
            {
                sb.Append("...");
                break;
            }

            sb.Append(char.IsControl(c) || c == '\u2028' || c == '\u2029' ? ' ' : c);
        }

        return sb.ToString();
    }
}
