using Writ.Policy.Syntax;

namespace Writ.Policy.Ast;

/// <summary>An immutable, parsed set of policies (and templates), keyed by policy id.</summary>
public sealed class PolicySet
{
    private readonly Dictionary<string, CedarPolicy> _byId;
    private Authorization.PolicyIndex? _index;

    public PolicySet(IEnumerable<CedarPolicy> policies)
    {
        ArgumentNullException.ThrowIfNull(policies);
        var list = new List<CedarPolicy>();
        _byId = new Dictionary<string, CedarPolicy>(StringComparer.Ordinal);
        foreach (var p in policies)
        {
            if (!_byId.TryAdd(p.Id, p)) throw new ArgumentException($"duplicate policy id {p.Id}", nameof(policies));
            list.Add(p);
        }

        All = list;
        Policies = list.Where(p => !p.IsTemplate).ToList();
        Templates = list.Where(p => p.IsTemplate).ToList();
    }

    public static PolicySet Empty { get; } = new([]);

    /// <summary>Policies and templates in text order.</summary>
    public IReadOnlyList<CedarPolicy> All { get; }

    /// <summary>Static policies (no template slots), in text order.</summary>
    public IReadOnlyList<CedarPolicy> Policies { get; }

    /// <summary>Templates (policies with <c>?principal</c> / <c>?resource</c>).</summary>
    public IReadOnlyList<CedarPolicy> Templates { get; }

    internal Authorization.PolicyIndex Index => _index ??= new Authorization.PolicyIndex(Policies);

    /// <summary>
    /// Returns a new set that also holds the policy made by linking template <paramref name="templateId"/> with
    /// <paramref name="values"/> under id <paramref name="newId"/>.
    /// </summary>
    public bool TryLink(string templateId, string newId, IReadOnlyDictionary<SlotId, EntityUid> values, out PolicySet? linked, out string error)
    {
        ArgumentNullException.ThrowIfNull(templateId);
        ArgumentNullException.ThrowIfNull(newId);
        linked = null;
        if (!_byId.TryGetValue(templateId, out var template) || !template.IsTemplate)
        {
            error = $"no template with id {templateId}; check the id (static policies cannot be linked)";
            return false;
        }

        if (_byId.ContainsKey(newId))
        {
            error = $"policy id {newId} is already used; choose a new id for the link";
            return false;
        }

        if (!template.TryLink(newId, values, out var policy, out error)) return false;
        linked = new PolicySet(All.Append(policy!));
        return true;
    }

    public bool TryGet(string id, out CedarPolicy policy) => _byId.TryGetValue(id, out policy!);

    /// <summary>
    /// Parses Cedar policy text. Ids: the <c>@id("...")</c> annotation when given, otherwise <c>policyN</c> by position
    /// (N from 0); a duplicate id is a parse error.
    /// </summary>
    public static bool TryParse(string text, out PolicySet? set, out IReadOnlyList<ParseError> errors)
    {
        if (Parser.TryParsePolicies(text, out var policies, out errors))
        {
            set = new PolicySet(policies);
            return true;
        }

        set = null;
        return false;
    }
}
