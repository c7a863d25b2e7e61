using System.Globalization;

namespace Writ.Cli.CommandLine;

public static class DurationParser
{
    /// <summary>Accepts 90, 90s, 15m, 1h, 2h30m, 7d, 500ms. Rejects negatives and garbage.</summary>
    public static bool TryParse(string text, out TimeSpan value)
    {
        value = TimeSpan.Zero;
        if (string.IsNullOrWhiteSpace(text))
        {
            return false;
        }
        if (long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var secs))
        {
            value = TimeSpan.FromSeconds(secs);
            return true;
        }
        var total = TimeSpan.Zero;
        var i = 0;
        while (i < text.Length)
        {
            var start = i;
            while (i < text.Length && char.IsAsciiDigit(text[i]))
            {
                i++;
            }
            if (start == i || !long.TryParse(text.AsSpan(start, i - start), NumberStyles.None, CultureInfo.InvariantCulture, out var n))
            {
                return false;
            }
            var unitStart = i;
            while (i < text.Length && char.IsAsciiLetter(text[i]))
            {
                i++;
            }
            var unit = text[unitStart..i];
            try
            {
                total += unit switch
                {
                    "ms" => TimeSpan.FromMilliseconds(n),
                    "s" => TimeSpan.FromSeconds(n),
                    "m" => TimeSpan.FromMinutes(n),
                    "h" => TimeSpan.FromHours(n),
                    "d" => TimeSpan.FromDays(n),
                    _ => throw new FormatException(),
                };
            }
            catch (Exception e) when (e is FormatException or OverflowException or ArgumentOutOfRangeException)
            {
                return false;
            }
        }
        value = total;
        return true;
    }
}
