using System.Globalization;
using System.Text;
using Writ.Policy.Evaluation;

namespace Writ.Policy.Extensions;

/// <summary>Cedar <c>datetime</c>: milliseconds since the Unix epoch (UTC), 64-bit.</summary>
public sealed class DatetimeValue(long epochMilliseconds) : ExtensionValue
{
    private const long DayMs = 86_400_000L;

    public long EpochMilliseconds { get; } = epochMilliseconds;

    public override string TypeName => "datetime";

    public override bool SupportsComparison => true;

    public override int CompareTo(ExtensionValue other) => EpochMilliseconds.CompareTo(((DatetimeValue)other).EpochMilliseconds);

    /// <summary>
    /// Parses <c>YYYY-MM-DD</c>, optionally followed by <c>Thh:mm:ss</c> and then <c>Z</c>, <c>.SSSZ</c>,
    /// <c>(+|-)hhmm</c> or <c>.SSS(+|-)hhmm</c>.
    /// </summary>
    public static bool TryParse(string text, out DatetimeValue? value, out string error)
    {
        ArgumentNullException.ThrowIfNull(text);
        value = null;
        error = $"\"{DecimalValue.Trim(text)}\" is not a datetime; write YYYY-MM-DD, optionally with Thh:mm:ss and Z, .SSSZ or an offset like +0700";
        var s = text.AsSpan();
        if (s.Length < 10 || !Digits(s, 0, 4) || s[4] != '-' || !Digits(s, 5, 2) || s[7] != '-' || !Digits(s, 8, 2)) return false;
        var year = Num(s, 0, 4);
        var month = Num(s, 5, 2);
        var day = Num(s, 8, 2);
        int h = 0, m = 0, sec = 0, ms = 0, offsetSeconds = 0;
        if (s.Length > 10)
        {
            if (s.Length < 19 || s[10] != 'T' || !Digits(s, 11, 2) || s[13] != ':' || !Digits(s, 14, 2) || s[16] != ':' || !Digits(s, 17, 2)) return false;
            h = Num(s, 11, 2);
            m = Num(s, 14, 2);
            sec = Num(s, 17, 2);
            var rest = s[19..];
            if (rest.Length > 0 && rest[0] == '.')
            {
                if (rest.Length < 4 || !Digits(rest, 1, 3)) return false;
                ms = Num(rest, 1, 3);
                rest = rest[4..];
            }

            if (rest.Length == 1 && rest[0] == 'Z')
            {
            }
            else if (rest.Length == 5 && rest[0] is '+' or '-' && Digits(rest, 1, 4))
            {
                var oh = Num(rest, 1, 2);
                var om = Num(rest, 3, 2);
                if (!IsValidDate(year, month, day)) return false;
                if (h > 23 || m > 59 || sec > 59) return false;
                if (oh >= 24 || om >= 60) return false;
                offsetSeconds = (oh * 3600 + om * 60) * (rest[0] == '+' ? 1 : -1);
            }
            else
            {
                return false;
            }
        }

        if (!IsValidDate(year, month, day) || h > 23 || m > 59 || sec > 59) return false;
        var days = DaysFromCivil(year, month, day);
        var epoch = days * DayMs + ((h * 3600L + m * 60L + sec - offsetSeconds) * 1000L) + ms;
        error = "";
        value = new DatetimeValue(epoch);
        return true;
    }

    private static bool Digits(ReadOnlySpan<char> s, int at, int n)
    {
        if (at + n > s.Length) return false;
        for (var i = at; i < at + n; i++)
        {
            if (s[i] is < '0' or > '9') return false;
        }

        return true;
    }

    private static int Num(ReadOnlySpan<char> s, int at, int n) => int.Parse(s.Slice(at, n), NumberStyles.None, CultureInfo.InvariantCulture);

    private static bool IsValidDate(int y, int m, int d)
    {
        if (m is < 1 or > 12 || d < 1) return false;
        var leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        int[] lengths = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
        return d <= lengths[m - 1];
    }

    /// <summary>Days since 1970-01-01 in the proleptic Gregorian calendar (valid for year 0 too).</summary>
    private static long DaysFromCivil(long y, long m, long d)
    {
        y -= m <= 2 ? 1 : 0;
        var era = (y >= 0 ? y : y - 399) / 400;
        var yoe = y - era * 400;
        var doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
        var doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        return era * 146097 + doe - 719468;
    }

    public DatetimeValue? Offset(DurationValue d)
    {
        ArgumentNullException.ThrowIfNull(d);
        var r = EpochMilliseconds + d.Milliseconds;
        return ((EpochMilliseconds ^ r) & (d.Milliseconds ^ r)) < 0 ? null : new DatetimeValue(r);
    }

    public DurationValue? DurationSince(DatetimeValue other)
    {
        ArgumentNullException.ThrowIfNull(other);
        var r = EpochMilliseconds - other.EpochMilliseconds;
        return ((EpochMilliseconds ^ other.EpochMilliseconds) & (EpochMilliseconds ^ r)) < 0 ? null : new DurationValue(r);
    }

    public DatetimeValue? ToDate()
    {
        var rem = ((EpochMilliseconds % DayMs) + DayMs) % DayMs;
        var r = EpochMilliseconds - rem;
        return ((EpochMilliseconds ^ rem) & (EpochMilliseconds ^ r)) < 0 ? null : new DatetimeValue(r);
    }

    public DurationValue ToTime() => new(((EpochMilliseconds % DayMs) + DayMs) % DayMs);

    public override bool Equals(Value? other) => other is DatetimeValue d && d.EpochMilliseconds == EpochMilliseconds;

    public override int GetHashCode() => HashCode.Combine(0xda7e, EpochMilliseconds);

    internal override void Write(StringBuilder sb)
    {
        // Canonical form as Cedar prints it: an offset from the epoch.
        sb.Append("datetime(\"1970-01-01\").offset(duration(\"").Append(EpochMilliseconds.ToString(CultureInfo.InvariantCulture)).Append("ms\"))");
    }
}
