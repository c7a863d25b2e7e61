using Writ.Server.Storage;

namespace Writ.Server.NodeAttestation.Tpm;

/// <summary>
/// Which TPM reference sets a node's PCR values satisfy (its <c>tpm:pcr_set:NAME</c> selectors): a set is satisfied when
/// every (bank, index) it names is among the node's PCRs and has one of the set's values for it. PCRs the set does not
/// name are not looked at.
/// </summary>
public static class TpmReferenceMatcher
{
    /// <summary>
    /// The names (ordinal order) of the <paramref name="sets"/> the <paramref name="pcrs"/> satisfy. Should a PCR be given
    /// twice, every value given for it must be allowed: a second, unverified value never makes a set match.
    /// </summary>
    public static IReadOnlyList<string> Matching(IReadOnlyList<(string Bank, int Index, byte[] Digest)> pcrs, IReadOnlyList<TpmReferenceSet> sets)
    {
        ArgumentNullException.ThrowIfNull(pcrs);
        ArgumentNullException.ThrowIfNull(sets);
        var actual = pcrs.ToLookup(p => (p.Bank, p.Index), p => Convert.ToHexStringLower(p.Digest));
        return [.. sets.Where(s => Satisfies(s, actual)).Select(s => s.Name).Distinct().Order(StringComparer.Ordinal)];
    }

    /// <summary>Whether the set names PCR <paramref name="index"/> of <paramref name="bank"/> (a change to it matters to the set).</summary>
    public static bool Covers(TpmReferenceSet set, string bank, int index)
    {
        ArgumentNullException.ThrowIfNull(set);
        return set.Pcrs.Any(p => p.Index == index && string.Equals(p.Bank, bank, StringComparison.Ordinal));
    }

    private static bool Satisfies(TpmReferenceSet set, ILookup<(string Bank, int Index), string> actual)
    {
        if (set.Pcrs.Count == 0)
            return false;
        foreach (var pcr in set.Pcrs.GroupBy(p => (p.Bank, p.Index)))
        {
            var allowed = pcr.Select(p => p.DigestHex.ToLowerInvariant()).ToHashSet(StringComparer.Ordinal);
            var values = actual[pcr.Key].ToList();
            if (values.Count == 0 || !values.All(allowed.Contains))
                return false;
        }
        return true;
    }
}
