using System.Globalization;
using System.Text;
using Writ.Policy.Evaluation;

namespace Writ.Policy.Extensions;

/// <summary>Cedar <c>decimal</c>: fixed point with 4 fractional digits, stored as a 64-bit count of 1/10000.</summary>
public sealed class DecimalValue(long scaled) : ExtensionValue
{
    private const long Scale = 10000;

    /// <summary>The value times 10^4.</summary>
    public long Scaled { get; } = scaled;

    public override string TypeName => "decimal";

    /// <summary>Parses <c>-?[0-9]+\.[0-9]{1,4}</c>; fails on other text or when the value does not fit.</summary>
    public static bool TryParse(string text, out DecimalValue? value, out string error)
    {
        ArgumentNullException.ThrowIfNull(text);
        value = null;
        var s = text.AsSpan();
        var neg = s.Length > 0 && s[0] == '-';
        var body = neg ? s[1..] : s;
        var dot = body.IndexOf('.');
        if (dot <= 0 || dot == body.Length - 1 || !AllDigits(body[..dot]) || !AllDigits(body[(dot + 1)..]))
        {
            error = $"\"{Trim(text)}\" is not a decimal; write digits, a point and 1 to 4 digits, e.g. decimal(\"1.25\")";
            return false;
        }

        var frac = body[(dot + 1)..];
        if (frac.Length > 4)
        {
            error = $"\"{Trim(text)}\" has more than 4 digits after the decimal point; decimals keep at most 4";
            return false;
        }

        error = $"\"{Trim(text)}\" is out of range for a decimal";
        if (!long.TryParse(body[..dot], NumberStyles.None, CultureInfo.InvariantCulture, out var whole)) return false;
        var f = long.Parse(frac, NumberStyles.None, CultureInfo.InvariantCulture);
        for (var i = frac.Length; i < 4; i++) f *= 10;
        long result;
        try
        {
            result = checked(whole * Scale);
            result = neg ? checked(-result - f) : checked(result + f);
        }
        catch (OverflowException)
        {
            return false;
        }

        error = "";
        value = new DecimalValue(result);
        return true;
    }

    private static bool AllDigits(ReadOnlySpan<char> s)
    {
        foreach (var c in s)
        {
            if (c is < '0' or > '9') return false;
        }

        return s.Length > 0;
    }

    internal static string Trim(string s) => Syntax.ErrorText.OneLine(s, 64);

    public override bool Equals(Value? other) => other is DecimalValue d && d.Scaled == Scaled;

    public override int GetHashCode() => HashCode.Combine(0xdec, Scaled);

    internal override void Write(StringBuilder sb)
    {
        var abs = Scaled < 0 ? -(Int128)Scaled : Scaled;
        sb.Append("decimal(\"");
        if (Scaled < 0) sb.Append('-');
        sb.Append((abs / Scale).ToString(CultureInfo.InvariantCulture)).Append('.').Append((abs % Scale).ToString("D4", CultureInfo.InvariantCulture));
        sb.Append("\")");
    }
}
