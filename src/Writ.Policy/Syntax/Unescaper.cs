using System.Globalization;
using System.Text;

namespace Writ.Policy.Syntax;

/// <summary>Cedar string escapes: <c>\n \r \t \\ \0 \' \" \xHH \u{H..}</c>, plus <c>\*</c> in like patterns.</summary>
internal static class Unescaper
{
    /// <summary>
    /// Unescapes the body of a string literal (without quotes). For patterns, unescaped <c>*</c> splits segments;
    /// otherwise exactly one segment is returned.
    /// </summary>
    public static bool TryUnescape(ReadOnlySpan<char> body, bool pattern, out List<string> segments, out string error)
    {
        segments = [];
        error = "";
        var sb = new StringBuilder(body.Length);
        for (var i = 0; i < body.Length; i++)
        {
            var c = body[i];
            if (c == '*' && pattern)
            {
                segments.Add(sb.ToString());
                sb.Clear();
                continue;
            }

            if (c != '\\')
            {
                sb.Append(c);
                continue;
            }

            if (i + 1 >= body.Length)
            {
                error = "the string ends with a lone backslash; escape it as \\\\";
                return false;
            }

            var e = body[++i];
            switch (e)
            {
                case 'n': sb.Append('\n'); break;
                case 'r': sb.Append('\r'); break;
                case 't': sb.Append('\t'); break;
                case '0': sb.Append('\0'); break;
                case '\\': sb.Append('\\'); break;
                case '\'': sb.Append('\''); break;
                case '"': sb.Append('"'); break;
                case '*' when pattern: sb.Append('*'); break;
                case 'x':
                {
                    if (i + 2 >= body.Length || !IsHex(body[i + 1]) || !IsHex(body[i + 2]))
                    {
                        error = "invalid escape \\x: expected two hex digits, e.g. \\x41";
                        return false;
                    }

                    var v = int.Parse(body.Slice(i + 1, 2), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
                    if (v > 0x7f)
                    {
                        error = "invalid escape \\x: the value must be at most 7F; use \\u{...} for other characters";
                        return false;
                    }

                    sb.Append((char)v);
                    i += 2;
                    break;
                }

                case 'u':
                {
                    if (i + 1 >= body.Length || body[i + 1] != '{')
                    {
                        error = "invalid escape \\u: expected \\u{HEX} with 1 to 6 hex digits";
                        return false;
                    }

                    var close = body[(i + 2)..].IndexOf('}');
                    if (close < 1 || close > 6)
                    {
                        error = "invalid escape \\u: expected \\u{HEX} with 1 to 6 hex digits";
                        return false;
                    }

                    var hex = body.Slice(i + 2, close);
                    foreach (var h in hex)
                    {
                        if (!IsHex(h))
                        {
                            error = "invalid escape \\u: expected \\u{HEX} with 1 to 6 hex digits";
                            return false;
                        }
                    }

                    var cp = int.Parse(hex, NumberStyles.HexNumber, CultureInfo.InvariantCulture);
                    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
                    {
                        error = "invalid escape \\u: the code point is not a Unicode scalar value";
                        return false;
                    }

                    sb.Append(char.ConvertFromUtf32(cp));
                    i += 2 + close;
                    break;
                }

                default:
                    error = $"invalid escape \\{ErrorText.OneLine(e.ToString())}; valid escapes are \\n \\r \\t \\0 \\\\ \\' \\\" \\xHH \\u{{HEX}}" + (pattern ? " \\*" : "");
                    return false;
            }
        }

        segments.Add(sb.ToString());
        return true;
    }

    private static bool IsHex(char c) => c is (>= '0' and <= '9') or (>= 'a' and <= 'f') or (>= 'A' and <= 'F');
}
