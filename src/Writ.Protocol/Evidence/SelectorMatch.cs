namespace Writ.Protocol.Evidence;

/// <summary>
/// The one match rule of agent and server (as SPIRE's): an entry matches a workload when the entry's selectors are a
/// subset of the workload's (entry selectors ⊆ workload selectors), compared by type and value, ordinal. An entry with
/// no selectors matches nothing.
/// </summary>
public static class SelectorMatch
{
    /// <summary>The workload's selectors as the set <see cref="Matches"/> and <see cref="FirstMissing"/> look in.</summary>
    public static IReadOnlySet<Selector> SetOf(IEnumerable<Selector> workload) => new HashSet<Selector>(workload);

    /// <summary>Whether every selector of the entry is in the workload's set (and the entry has at least one).</summary>
    public static bool Matches(IEnumerable<Selector> entry, IReadOnlySet<Selector> workload)
    {
        ArgumentNullException.ThrowIfNull(entry);
        ArgumentNullException.ThrowIfNull(workload);
        var any = false;
        foreach (var s in entry)
        {
            if (!workload.Contains(s))
                return false;
            any = true;
        }
        return any;
    }

    /// <summary>The first of the entry's selectors the workload lacks, or null when entry ⊆ workload.</summary>
    public static Selector? FirstMissing(IEnumerable<Selector> entry, IReadOnlySet<Selector> workload)
    {
        ArgumentNullException.ThrowIfNull(entry);
        ArgumentNullException.ThrowIfNull(workload);
        foreach (var s in entry)
        {
            if (!workload.Contains(s))
                return s;
        }
        return null;
    }
}
