namespace Writ.Policy.Ast;

public enum Effect { Permit, Forbid }

public enum ConditionKind { When, Unless }

/// <summary>A <c>when { ... }</c> or <c>unless { ... }</c> clause.</summary>
public sealed record Condition(ConditionKind Kind, Expr Body);

/// <summary>Operator of a principal or resource scope constraint.</summary>
public enum ScopeOp
{
    /// <summary>No constraint: <c>principal</c>.</summary>
    Any,
    /// <summary><c>principal == E</c>.</summary>
    Eq,
    /// <summary><c>principal in E</c>.</summary>
    In,
    /// <summary><c>principal is T</c>.</summary>
    Is,
    /// <summary><c>principal is T in E</c>.</summary>
    IsIn,
}

/// <summary>
/// A principal or resource scope constraint. <see cref="Entity"/> is set for Eq/In/IsIn unless the constraint uses a
/// template slot (<see cref="Slot"/>); <see cref="EntityType"/> is set for Is/IsIn.
/// </summary>
public sealed record ScopeConstraint(ScopeOp Op, EntityUid? Entity = null, SlotId? Slot = null, string? EntityType = null)
{
    public static readonly ScopeConstraint Any = new(ScopeOp.Any);
}

public enum ActionScopeOp
{
    /// <summary><c>action</c>.</summary>
    Any,
    /// <summary><c>action == E</c>.</summary>
    Eq,
    /// <summary><c>action in E</c>.</summary>
    In,
    /// <summary><c>action in [E1, E2, ...]</c>.</summary>
    InSet,
}

/// <summary>The action scope constraint; <see cref="Entities"/> has one element for Eq/In, any number for InSet.</summary>
public sealed record ActionConstraint(ActionScopeOp Op, IReadOnlyList<EntityUid> Entities)
{
    public static readonly ActionConstraint Any = new(ActionScopeOp.Any, []);
}

/// <summary>
/// One policy (or template, when a scope constraint uses a slot). <see cref="Id"/> is the <c>@id("...")</c>
/// annotation when given, otherwise <c>policyN</c> by position in the parsed text (N counts from 0).
/// </summary>
public sealed class CedarPolicy
{
    public CedarPolicy(
        string id,
        Effect effect,
        ScopeConstraint principal,
        ActionConstraint action,
        ScopeConstraint resource,
        IReadOnlyList<Condition> conditions,
        IReadOnlyDictionary<string, string> annotations,
        SourceSpan span = default)
    {
        Id = id;
        Effect = effect;
        Principal = principal;
        Action = action;
        Resource = resource;
        Conditions = conditions;
        Annotations = annotations;
        Span = span;
    }

    public string Id { get; }
    public Effect Effect { get; }
    public ScopeConstraint Principal { get; }
    public ActionConstraint Action { get; }
    public ScopeConstraint Resource { get; }
    public IReadOnlyList<Condition> Conditions { get; }

    /// <summary>Annotations such as <c>@id("x")</c>; an annotation without a value maps to the empty string.</summary>
    public IReadOnlyDictionary<string, string> Annotations { get; }

    public SourceSpan Span { get; }

    /// <summary>True if a scope constraint uses <c>?principal</c> or <c>?resource</c>.</summary>
    public bool IsTemplate => Principal.Slot is not null || Resource.Slot is not null;

    /// <summary>For a policy made by linking a template: the template's id; otherwise null.</summary>
    public string? TemplateId { get; init; }

    /// <summary>For a linked policy: the entities bound to the template's slots.</summary>
    public IReadOnlyDictionary<SlotId, EntityUid>? SlotValues { get; init; }

    /// <summary>The slots this template uses (empty for a static policy).</summary>
    public IReadOnlyList<SlotId> Slots =>
        (Principal.Slot, Resource.Slot) switch
        {
            (null, null) => [],
            ({ } p, null) => [p],
            (null, { } r) => [r],
            ({ } p, { } r) => [p, r],
        };

    /// <summary>Returns a copy of this policy with another id.</summary>
    public CedarPolicy WithId(string id) =>
        new(id, Effect, Principal, Action, Resource, Conditions, Annotations, Span) { TemplateId = TemplateId, SlotValues = SlotValues };

    /// <summary>
    /// Links this template: substitutes <paramref name="values"/> for its slots, giving a static policy with id
    /// <paramref name="newId"/>. Fails if a slot has no value or a value is given for a slot the template lacks.
    /// </summary>
    public bool TryLink(string newId, IReadOnlyDictionary<SlotId, EntityUid> values, out CedarPolicy? linked, out string error)
    {
        ArgumentNullException.ThrowIfNull(newId);
        ArgumentNullException.ThrowIfNull(values);
        linked = null;
        var slots = Slots;
        if (slots.Count == 0)
        {
            error = $"{Id} is not a template (it has no ?principal or ?resource slot); link a template instead";
            return false;
        }

        foreach (var s in slots)
        {
            if (!values.ContainsKey(s))
            {
                error = $"linking template {Id} needs a value for ?{SlotName(s)}";
                return false;
            }
        }

        foreach (var k in values.Keys)
        {
            if (!slots.Contains(k))
            {
                error = $"template {Id} has no ?{SlotName(k)} slot; remove that value";
                return false;
            }
        }

        linked = new CedarPolicy(newId, Effect, Bind(Principal, values), Action, Bind(Resource, values), Conditions, Annotations, Span)
        {
            TemplateId = Id,
            SlotValues = new Dictionary<SlotId, EntityUid>(values),
        };
        error = "";
        return true;
    }

    private static ScopeConstraint Bind(ScopeConstraint c, IReadOnlyDictionary<SlotId, EntityUid> values) =>
        c.Slot is { } s ? c with { Slot = null, Entity = values[s] } : c;

    internal static string SlotName(SlotId s) => s == SlotId.Principal ? "principal" : "resource";
}
