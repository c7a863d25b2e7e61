using System.Globalization;
using System.Text;

namespace Writ.Policy.Schema.Syntax;

internal enum SchemaTokenKind
{
    Identifier,
    String,
    Number,
    Punct,
    End,
}

/// <summary>A token. For strings <see cref="Text"/> is the unescaped value; for punctuation the symbol itself.</summary>
internal readonly record struct SchemaToken(SchemaTokenKind Kind, string Text, SourcePos Pos)
{
    public bool IsPunct(string p) => Kind == SchemaTokenKind.Punct && Text == p;

    public bool IsIdent(string word) => Kind == SchemaTokenKind.Identifier && Text == word;

    public string Describe() => Kind switch
    {
        SchemaTokenKind.End => "end of input",
        SchemaTokenKind.String => "a string",
        _ => $"`{Text}`",
    };
}

/// <summary>Tokenizer for the Cedar schema syntax (identifiers, strings with Cedar escapes, punctuation, `//` comments).</summary>
internal static class SchemaLexer
{
    private const string SinglePunct = ",;:{}[]<>=?@()";

    public static bool TryTokenize(string text, out List<SchemaToken> tokens, out SchemaError? error)
    {
        tokens = [];
        error = null;
        int i = 0, line = 1, col = 1;

        void Advance(int n)
        {
            for (var k = 0; k < n; k++)
            {
                if (text[i] == '\n')
                {
                    line++;
                    col = 1;
                }
                else
                {
                    col++;
                }

                i++;
            }
        }

        while (i < text.Length)
        {
            var c = text[i];
            if (char.IsWhiteSpace(c))
            {
                Advance(1);
                continue;
            }

            if (c == '/' && i + 1 < text.Length && text[i + 1] == '/')
            {
                while (i < text.Length && text[i] != '\n' && text[i] != '\r')
                    Advance(1);
                continue;
            }

            var pos = new SourcePos(line, col);
            if (c == '_' || char.IsAsciiLetter(c))
            {
                var start = i;
                while (i < text.Length && (text[i] == '_' || char.IsAsciiLetterOrDigit(text[i])))
                    Advance(1);
                tokens.Add(new SchemaToken(SchemaTokenKind.Identifier, text[start..i], pos));
                continue;
            }

            if (char.IsAsciiDigit(c))
            {
                var start = i;
                while (i < text.Length && char.IsAsciiDigit(text[i]))
                    Advance(1);
                tokens.Add(new SchemaToken(SchemaTokenKind.Number, text[start..i], pos));
                continue;
            }

            if (c == '"')
            {
                var start = i;
                Advance(1);
                while (i < text.Length && text[i] != '"')
                    Advance(text[i] == '\\' && i + 1 < text.Length ? 2 : 1);
                if (i >= text.Length)
                {
                    error = new SchemaError("unterminated string literal; close it with `\"`", pos.Line, pos.Column);
                    return false;
                }

                Advance(1);
                if (!TryUnescape(text.AsSpan(start + 1, i - start - 2), out var value, out var why))
                {
                    error = new SchemaError($"invalid string literal: {why}", pos.Line, pos.Column);
                    return false;
                }

                tokens.Add(new SchemaToken(SchemaTokenKind.String, value, pos));
                continue;
            }

            if (c == ':' && i + 1 < text.Length && text[i + 1] == ':')
            {
                Advance(2);
                tokens.Add(new SchemaToken(SchemaTokenKind.Punct, "::", pos));
                continue;
            }

            if (SinglePunct.Contains(c, StringComparison.Ordinal))
            {
                Advance(1);
                tokens.Add(new SchemaToken(SchemaTokenKind.Punct, c.ToString(), pos));
                continue;
            }

            error = new SchemaError(SchemaNames.OneLine($"unexpected character `{c}`; remove it or quote the name"), pos.Line, pos.Column);
            return false;
        }

        tokens.Add(new SchemaToken(SchemaTokenKind.End, string.Empty, new SourcePos(line, col)));
        return true;
    }

    /// <summary>Cedar string escapes: \n \r \t \\ \0 \' \" and \u{X..XXXXXX}.</summary>
    public static bool TryUnescape(ReadOnlySpan<char> s, out string value, out string why)
    {
        var sb = new StringBuilder(s.Length);
        value = string.Empty;
        why = string.Empty;
        for (var i = 0; i < s.Length; i++)
        {
            if (s[i] != '\\')
            {
                sb.Append(s[i]);
                continue;
            }

            if (i + 1 >= s.Length)
            {
                why = "a lone `\\` at the end; write `\\\\` for a backslash";
                return false;
            }

            var e = s[++i];
            switch (e)
            {
                case 'n': sb.Append('\n'); break;
                case 'r': sb.Append('\r'); break;
                case 't': sb.Append('\t'); break;
                case '\\': sb.Append('\\'); break;
                case '0': sb.Append('\0'); break;
                case '\'': sb.Append('\''); break;
                case '"': sb.Append('"'); break;
                case 'u':
                    var close = i + 1 < s.Length && s[i + 1] == '{' ? s[(i + 2)..].IndexOf('}') : -1;
                    if (close < 1 || close > 6
                        || !int.TryParse(s.Slice(i + 2, close), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var cp)
                        || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
                    {
                        why = "a bad `\\u{...}` escape; use 1 to 6 hex digits naming a Unicode scalar value";
                        return false;
                    }

                    sb.Append(char.ConvertFromUtf32(cp));
                    i += close + 2;
                    break;
                default:
                    why = $"unknown escape `\\{Writ.Policy.Syntax.ErrorText.OneLine(e.ToString())}`; use \\n \\r \\t \\\\ \\0 \\' \\\" or \\u{{...}}";
                    return false;
            }
        }

        value = sb.ToString();
        return true;
    }
}
