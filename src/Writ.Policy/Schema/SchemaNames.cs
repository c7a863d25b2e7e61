using System.Globalization;
using System.Text;

namespace Writ.Policy.Schema;

/// <summary>Helpers for Cedar names and string literals in schemas.</summary>
internal static class SchemaNames
{
    /// <summary>Identifiers that may not be used as type names (common types, entity types).</summary>
    public static readonly IReadOnlySet<string> ReservedTypeNames =
        new HashSet<string>(StringComparer.Ordinal) { "Bool", "Boolean", "Entity", "Extension", "Long", "Record", "Set", "String" };

    /// <summary>Cedar keywords that are never valid identifiers (<c>__cedar</c> is handled separately: it may start a type path).</summary>
    public static readonly IReadOnlySet<string> PolicyKeywords =
        new HashSet<string>(StringComparer.Ordinal) { "true", "false", "if", "then", "else", "in", "like", "has", "is" };

    public static bool IsIdentifier(string s)
    {
        if (s.Length == 0 || !(s[0] == '_' || char.IsAsciiLetter(s[0])))
            return false;
        foreach (var c in s)
        {
            if (!(c == '_' || char.IsAsciiLetterOrDigit(c)))
                return false;
        }

        return true;
    }

    public static string QuoteIfNeeded(string name) => IsIdentifier(name) ? name : QuoteString(name);

    /// <summary>A Cedar string literal with Cedar's escapes.</summary>
    public static string QuoteString(string s)
    {
        var sb = new StringBuilder(s.Length + 2).Append('"');
        foreach (var rune in s.EnumerateRunes())
        {
            switch (rune.Value)
            {
                case '"': sb.Append("\\\""); break;
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                case 0: sb.Append("\\0"); break;
                default:
                    if (rune.Value < 0x20 || rune.Value == 0x7f)
                        sb.Append("\\u{").Append(rune.Value.ToString("x", CultureInfo.InvariantCulture)).Append('}');
                    else
                        sb.Append(rune.ToString());
                    break;
            }
        }

        return sb.Append('"').ToString();
    }

    /// <summary>Escapes line breaks and other control characters so a message stays on one line.</summary>
    public static string OneLine(string message)
    {
        if (!message.Any(IsLineBreaking))
            return message;
        var sb = new StringBuilder(message.Length + 8);
        foreach (var c in message)
        {
            if (IsLineBreaking(c))
                sb.Append("\\u{").Append(((int)c).ToString("x", CultureInfo.InvariantCulture)).Append('}');
            else
                sb.Append(c);
        }

        return sb.ToString();
    }

    private static bool IsLineBreaking(char c) => c < 0x20 || c == 0x7f || c == '\u0085' || c == '\u2028' || c == '\u2029';

    /// <summary>Splits <c>A::B::C</c> into namespace <c>A::B</c> and basename <c>C</c>.</summary>
    public static (string Namespace, string Basename) Split(string qualified)
    {
        var i = qualified.LastIndexOf("::", StringComparison.Ordinal);
        return i < 0 ? (string.Empty, qualified) : (qualified[..i], qualified[(i + 2)..]);
    }

    public static string Qualify(string ns, string basename) => ns.Length == 0 ? basename : ns + "::" + basename;
}
