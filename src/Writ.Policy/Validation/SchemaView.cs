using System.Collections.Immutable;
using Writ.Policy.Schema;

namespace Writ.Policy.Validation;

/// <summary>
/// The schema as the validator needs it: validator types for shapes, contexts and tags, and the
/// transitive descendant relation for entity types and actions.
/// </summary>
internal sealed class SchemaView
{
    public SchemaView(CedarSchema schema)
    {
        Schema = schema;
        var cache = new Dictionary<SchemaType, VType>(ReferenceEqualityComparer.Instance);
        foreach (var (name, def) in schema.EntityTypes)
        {
            EntityTypes[name] = new EntityInfo(
                name,
                VTypeOps.FromSchema(def.Shape, cache),
                def.Tags is null ? null : VTypeOps.FromSchema(def.Tags, cache),
                def.EnumIds,
                new HashSet<string>(StringComparer.Ordinal));
        }

        // descendants(T) = every type that is (transitively) declared a member of T.
        foreach (var (name, def) in schema.EntityTypes)
        {
            var seen = new HashSet<string>(StringComparer.Ordinal);
            var stack = new Stack<string>(def.MemberOfTypes);
            while (stack.Count > 0)
            {
                var parent = stack.Pop();
                if (!seen.Add(parent))
                    continue;
                if (EntityTypes.TryGetValue(parent, out var p))
                {
                    p.Descendants.Add(name);
                    foreach (var gp in schema.EntityTypes[parent].MemberOfTypes)
                        stack.Push(gp);
                }
            }
        }

        foreach (var (id, def) in schema.Actions)
        {
            Actions[id] = new ActionInfo(
                id,
                def.PrincipalTypes ?? [],
                def.ResourceTypes ?? [],
                VTypeOps.FromSchema(def.Context, cache),
                new HashSet<ActionRef>());
        }

        foreach (var (id, def) in schema.Actions)
        {
            var seen = new HashSet<ActionRef>();
            var stack = new Stack<ActionRef>(def.MemberOf);
            while (stack.Count > 0)
            {
                var parent = stack.Pop();
                if (!seen.Add(parent))
                    continue;
                if (Actions.TryGetValue(parent, out var p))
                {
                    p.Descendants.Add(id);
                    foreach (var gp in schema.Actions[parent].MemberOf)
                        stack.Push(gp);
                }
            }
        }

        foreach (var a in Actions.Values.OrderBy(a => a.Id.Type, StringComparer.Ordinal).ThenBy(a => a.Id.Id, StringComparer.Ordinal))
        {
            foreach (var p in a.Principals)
            {
                foreach (var r in a.Resources)
                    Envs.Add(new RequestEnv(p, a, r));
            }
        }
    }

    public CedarSchema Schema { get; }

    public Dictionary<string, EntityInfo> EntityTypes { get; } = new(StringComparer.Ordinal);

    public Dictionary<ActionRef, ActionInfo> Actions { get; } = [];

    /// <summary>Every (principal type, action, resource type) the schema allows.</summary>
    public List<RequestEnv> Envs { get; } = [];

    /// <summary>Cedar treats every type whose last component is <c>Action</c> as an action type.</summary>
    public static bool IsActionType(string type) => type == "Action" || type.EndsWith("::Action", StringComparison.Ordinal);

    public bool IsKnownEntityType(string type) => IsActionType(type) || EntityTypes.ContainsKey(type);

    /// <summary>Entity types whose entities can be <c>in</c> an entity of type <paramref name="type"/>: its descendants and itself.</summary>
    public IEnumerable<string> EntityTypesIn(string type)
    {
        if (EntityTypes.TryGetValue(type, out var info))
        {
            foreach (var d in info.Descendants)
                yield return d;
        }

        yield return type;
    }

    /// <summary>All actions <c>a</c> with <c>a in euids</c>; null when one of <paramref name="ids"/> is not a declared action.</summary>
    public List<ActionRef>? ActionsInSet(IEnumerable<ActionRef> ids)
    {
        var result = new List<ActionRef>();
        foreach (var id in ids)
        {
            if (!Actions.TryGetValue(id, out var a))
                return null;
            result.AddRange(a.Descendants);
            result.Add(id);
        }

        return result;
    }

    /// <summary>The attributes common to all types of an entity LUB (Cedar's permissive attribute LUB).</summary>
    public VRecord AttributesOf(ImmutableSortedSet<string> lub)
    {
        VRecord? acc = null;
        foreach (var t in lub)
        {
            var attrs = EntityTypes.TryGetValue(t, out var info) ? info.Shape : EmptyClosed;
            acc = acc is null ? attrs with { Open = false } : PermissiveAttrs(acc, attrs);
        }

        return acc ?? EmptyClosed;
    }

    private static readonly VRecord EmptyClosed = new(ImmutableSortedDictionary<string, VAttr>.Empty.WithComparers(StringComparer.Ordinal), false);

    private static VRecord PermissiveAttrs(VRecord a, VRecord b)
    {
        var builder = ImmutableSortedDictionary.CreateBuilder<string, VAttr>(StringComparer.Ordinal);
        foreach (var (k, a0) in a.Attrs)
        {
            if (b.Attrs.TryGetValue(k, out var a1) && VTypeOps.Lub(a0.Type, a1.Type, strict: false) is { } lub)
                builder[k] = new VAttr(lub, a0.Required && a1.Required);
        }

        return new VRecord(builder.ToImmutable(), false);
    }

    /// <summary>True if some type in the LUB is not an action type and has open attributes.</summary>
    public bool HasOpenAttributes(VEntity e) =>
        e.Lub is null || e.Lub.Any(t => !IsActionType(t) && (!EntityTypes.TryGetValue(t, out var info) || info.Shape.Open));

    public sealed record EntityInfo(string Name, VRecord Shape, VType? Tags, IReadOnlyList<string>? EnumIds, HashSet<string> Descendants);

    public sealed record ActionInfo(ActionRef Id, IReadOnlyList<string> Principals, IReadOnlyList<string> Resources, VRecord Context, HashSet<ActionRef> Descendants);
}

/// <summary>One request environment; slot types are set when a template is checked for a possible link.</summary>
internal sealed record RequestEnv(string Principal, SchemaView.ActionInfo Action, string Resource, string? PrincipalSlot = null, string? ResourceSlot = null);
