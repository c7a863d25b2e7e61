using System.Globalization;
using System.Text;
using Writ.Policy.Evaluation;

namespace Writ.Policy.Extensions;

/// <summary>Cedar <c>duration</c>: a signed 64-bit number of milliseconds.</summary>
public sealed class DurationValue(long milliseconds) : ExtensionValue
{
    public long Milliseconds { get; } = milliseconds;

    public override string TypeName => "duration";

    public override bool SupportsComparison => true;

    public override int CompareTo(ExtensionValue other) => Milliseconds.CompareTo(((DurationValue)other).Milliseconds);

    /// <summary>Parses <c>-?(Nd)?(Nh)?(Nm)?(Ns)?(Nms)?</c> with at least one part, e.g. <c>1d2h3m4s5ms</c>.</summary>
    public static bool TryParse(string text, out DurationValue? value, out string error)
    {
        ArgumentNullException.ThrowIfNull(text);
        value = null;
        error = $"\"{DecimalValue.Trim(text)}\" is not a duration; write quantity-unit pairs in the order d, h, m, s, ms, e.g. duration(\"1d2h30m\")";
        var s = text.AsSpan();
        var neg = s.Length > 0 && s[0] == '-';
        if (neg) s = s[1..];
        if (s.Length == 0) return false;
        // units in order: d h m s ms
        Span<ulong> amounts = stackalloc ulong[5];
        Span<bool> seen = stackalloc bool[5];
        var lastUnit = -1;
        var overflow = false;
        var i = 0;
        while (i < s.Length)
        {
            var start = i;
            while (i < s.Length && s[i] is >= '0' and <= '9') i++;
            if (i == start) return false;
            var digits = s[start..i];
            int unit;
            if (i < s.Length && s[i] == 'd') { unit = 0; i++; }
            else if (i < s.Length && s[i] == 'h') { unit = 1; i++; }
            else if (i + 1 < s.Length && s[i] == 'm' && s[i + 1] == 's') { unit = 4; i += 2; }
            else if (i < s.Length && s[i] == 'm') { unit = 2; i++; }
            else if (i < s.Length && s[i] == 's') { unit = 3; i++; }
            else return false;
            if (unit <= lastUnit) return false;
            lastUnit = unit;
            seen[unit] = true;
            if (!ulong.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out amounts[unit])) overflow = true;
        }

        if (overflow)
        {
            error = $"duration \"{DecimalValue.Trim(text)}\" overflows 64-bit milliseconds";
            return false;
        }

        ReadOnlySpan<long> mul = [86_400_000L, 3_600_000L, 60_000L, 1000L, 1L];
        Int128 total = 0;
        for (var u = 0; u < 5; u++) total += (Int128)amounts[u] * mul[u];
        if (neg) total = -total;
        if (total > long.MaxValue || total < long.MinValue)
        {
            error = $"duration \"{DecimalValue.Trim(text)}\" overflows 64-bit milliseconds";
            return false;
        }

        error = "";
        value = new DurationValue((long)total);
        return true;
    }

    public override bool Equals(Value? other) => other is DurationValue d && d.Milliseconds == Milliseconds;

    public override int GetHashCode() => HashCode.Combine(0xd0, Milliseconds);

    internal override void Write(StringBuilder sb) =>
        sb.Append("duration(\"").Append(Milliseconds.ToString(CultureInfo.InvariantCulture)).Append("ms\")");
}
