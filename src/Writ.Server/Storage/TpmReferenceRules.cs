using System.Globalization;
using System.Text.RegularExpressions;

namespace Writ.Server.Storage;

/// <summary>What a valid TPM reference set is (one place for the store, the admin API and the CLI).</summary>
public static partial class TpmReferenceRules
{
    /// <summary>The name is not a valid reference set name.</summary>
    public const string NameCode = "WRIT-TPM-REFERENCE-NAME";

    /// <summary>A PCR value is invalid (bank, index, hex), or the set has none or too many.</summary>
    public const string PcrCode = "WRIT-TPM-REFERENCE-PCR";

    public const int MaxPcrs = 256;
    public const int PcrCount = 24;

    /// <summary>The banks a reference may name, and their digest sizes in bytes.</summary>
    public static readonly IReadOnlyDictionary<string, int> Banks = new Dictionary<string, int>(StringComparer.Ordinal)
    {
        ["sha1"] = 20,
        ["sha256"] = 32,
        ["sha384"] = 48,
    };

    [GeneratedRegex("^[a-z0-9][a-z0-9._-]{0,63}$", RegexOptions.CultureInvariant)]
    private static partial Regex NamePattern();

    /// <summary>The problem with the name, or null: 1–64 of a-z 0-9 . _ -, starting with a letter or digit.</summary>
    public static string? NameProblem(string? name) =>
        name is not null && NamePattern().IsMatch(name)
            ? null
            : $"reference set name '{name}' is invalid: use 1 to 64 of a-z, 0-9, '.', '_', '-', starting with a letter or digit (e.g. prod-2026q4)";

    /// <summary>The problem with one PCR value, or null.</summary>
    public static string? PcrProblem(TpmPcrReference? pcr)
    {
        if (pcr is null)
            return "a PCR value is missing";
        if (pcr.Bank is null || !Banks.TryGetValue(pcr.Bank, out var size))
            return $"PCR bank '{pcr.Bank}' is not sha1, sha256 or sha384";
        if (pcr.Index is < 0 or >= PcrCount)
            return $"PCR index {pcr.Index} is outside 0-{PcrCount - 1}";
        if (pcr.DigestHex is null || pcr.DigestHex.Length != size * 2 || !pcr.DigestHex.All(char.IsAsciiHexDigit))
            return $"PCR {pcr.Bank}:{pcr.Index} value '{pcr.DigestHex}' is not {size * 2} hex digits (a {pcr.Bank} digest)";
        return null;
    }

    /// <summary>The first problem with the set (name, at least one and at most <see cref="MaxPcrs"/> valid PCR values), or null.</summary>
    public static string? Problem(TpmReferenceSet set)
    {
        ArgumentNullException.ThrowIfNull(set);
        if (NameProblem(set.Name) is { } n)
            return n;
        if (set.Pcrs is null || set.Pcrs.Count == 0)
            return $"reference set '{set.Name}' has no PCR value: give at least one, e.g. --pcr sha256:7:<64 hex digits>";
        if (set.Pcrs.Count > MaxPcrs)
            return $"reference set '{set.Name}' has {set.Pcrs.Count} PCR values, more than {MaxPcrs}";
        return set.Pcrs.Select(PcrProblem).FirstOrDefault(p => p is not null);
    }

    /// <summary>The PCR values distinct (hex lowercased), ordered by bank, index and digest.</summary>
    public static IReadOnlyList<TpmPcrReference> Normalize(IEnumerable<TpmPcrReference> pcrs) =>
        [.. pcrs.Select(p => p with { DigestHex = p.DigestHex.ToLowerInvariant() }).Distinct()
            .OrderBy(p => p.Bank, StringComparer.Ordinal).ThenBy(p => p.Index).ThenBy(p => p.DigestHex, StringComparer.Ordinal)];

    /// <summary>Splits "bank:index:hex" (as <c>--pcr</c> takes it) into its parts without checking them; false if it has another shape.</summary>
    public static bool TrySplit(string text, out TpmPcrReference pcr)
    {
        ArgumentNullException.ThrowIfNull(text);
        var parts = text.Split(':');
        if (parts.Length != 3 || !int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var index))
        {
            pcr = null!;
            return false;
        }
        pcr = new TpmPcrReference(parts[0], index, parts[2]);
        return true;
    }

    /// <summary>Parses and checks "bank:index:hex" into a PCR value (hex lowercased); false with the problem otherwise.</summary>
    public static bool TryParse(string text, out TpmPcrReference pcr, out string error)
    {
        if (!TrySplit(text, out pcr))
        {
            error = $"PCR value '{text}' is not bank:index:hex, e.g. sha256:7:<64 hex digits>";
            return false;
        }
        pcr = pcr with { DigestHex = pcr.DigestHex.ToLowerInvariant() };
        if (PcrProblem(pcr) is { } problem)
        {
            (pcr, error) = (null!, problem);
            return false;
        }
        error = "";
        return true;
    }
}
