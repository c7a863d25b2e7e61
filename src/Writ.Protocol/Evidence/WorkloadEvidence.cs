using System.Diagnostics.CodeAnalysis;

namespace Writ.Protocol.Evidence;

/// <summary>
/// What an agent proved about one workload instance, the input of the server's issuance decision: the union of the
/// selectors of every workload attestor that succeeded, their raw facts (keys prefixed with the attestor name, e.g.
/// <c>unix.pid</c>), the instance id (<c>"&lt;pid&gt;:&lt;start time in clock ticks&gt;"</c>) and, on the agent, one line
/// per attestor that failed (never sent). The one evidence type of agent and server; the agent derives a richer view
/// that also holds the pinned process. Travels as <c>writ.agent.v1.AttestedWorkload</c> (<see cref="EvidenceProto"/>).
/// </summary>
public record WorkloadEvidence(IReadOnlyList<Selector> Selectors, IReadOnlyDictionary<string, string> Facts, string InstanceId)
{
    public const int MaxSelectors = 1000;
    public const int MaxFacts = 256;
    public const int MaxTextLength = 4096;

    /// <summary>Attestors that failed or timed out, one line each (the agent's diagnostics; not on the wire).</summary>
    public IReadOnlyList<string> AttestorErrors { get; init; } = [];

    /// <summary>Checks evidence from the wire: valid selectors, bounded sizes, printable facts.</summary>
    public static bool TryCreate(IEnumerable<(string Type, string Value)> selectors, IEnumerable<KeyValuePair<string, string>> facts, string instanceId,
        [NotNullWhen(true)] out WorkloadEvidence? evidence, [NotNullWhen(false)] out string? error)
    {
        ArgumentNullException.ThrowIfNull(selectors);
        ArgumentNullException.ThrowIfNull(facts);
        ArgumentNullException.ThrowIfNull(instanceId);
        evidence = null;
        var sels = new List<Selector>();
        foreach (var (type, value) in selectors)
        {
            if (!Selector.IsValid(type, value, out error))
            {
                error = "the workload evidence has an invalid selector: " + error;
                return false;
            }
            if (value.Length > MaxTextLength || sels.Count >= MaxSelectors)
            {
                error = $"the workload evidence is too large (at most {MaxSelectors} selectors of {MaxTextLength} characters): report it as a bug of the agent";
                return false;
            }
            sels.Add(new Selector(type, value));
        }
        var map = new SortedDictionary<string, string>(StringComparer.Ordinal);
        foreach (var (k, v) in facts)
        {
            if (k.Length is 0 or > 128 || v.Length > MaxTextLength || k.Any(char.IsControl) || v.Any(char.IsControl) || map.Count >= MaxFacts)
            {
                error = $"the workload evidence has an invalid fact (at most {MaxFacts} facts, printable, keys 1-128 and values up to {MaxTextLength} characters): report it as a bug of the agent";
                return false;
            }
            map[k] = v;
        }
        if (instanceId.Length > 256 || instanceId.Any(char.IsControl))
        {
            error = "the workload evidence has an invalid instance id (printable, at most 256 characters): report it as a bug of the agent";
            return false;
        }
        evidence = new WorkloadEvidence(sels.Distinct().ToList(), map, instanceId);
        error = null;
        return true;
    }

    public bool Contains(Selector s) => Selectors.Contains(s);

    /// <summary>The value of the first selector of this type whose value starts with "kind:", without that prefix.</summary>
    public string? SelectorValue(string type, string kind)
    {
        ArgumentNullException.ThrowIfNull(type);
        ArgumentNullException.ThrowIfNull(kind);
        foreach (var s in Selectors)
        {
            if (s.Type == type && s.Value.Length > kind.Length && s.Value.StartsWith(kind, StringComparison.Ordinal) && s.Value[kind.Length] == ':')
                return s.Value[(kind.Length + 1)..];
        }
        return null;
    }
}
