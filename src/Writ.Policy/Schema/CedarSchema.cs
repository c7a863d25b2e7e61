using Writ.Policy.Schema.Syntax;

namespace Writ.Policy.Schema;

/// <summary>
/// A parsed, fully resolved Cedar schema: entity types and actions keyed by their fully-qualified
/// names. Common types are inlined during parsing. Immutable.
/// </summary>
public sealed class CedarSchema
{
    private readonly HashSet<string> _actionEntityTypes;

    /// <summary>Builds a schema from already-resolved definitions. Throws on duplicates (a programming error).</summary>
    public CedarSchema(IEnumerable<EntityTypeDef> entityTypes, IEnumerable<ActionDef> actions)
    {
        ArgumentNullException.ThrowIfNull(entityTypes);
        ArgumentNullException.ThrowIfNull(actions);
        var types = new Dictionary<string, EntityTypeDef>(StringComparer.Ordinal);
        foreach (var e in entityTypes)
        {
            if (!types.TryAdd(e.Name, e))
                throw new ArgumentException($"Entity type '{e.Name}' is defined twice; define each entity type once.", nameof(entityTypes));
        }

        var acts = new Dictionary<ActionRef, ActionDef>();
        foreach (var a in actions)
        {
            if (!acts.TryAdd(a.Id, a))
                throw new ArgumentException($"Action {a.Id} is defined twice; define each action once.", nameof(actions));
        }

        EntityTypes = types;
        Actions = acts;
        _actionEntityTypes = new HashSet<string>(acts.Keys.Select(k => k.Type), StringComparer.Ordinal);
    }

    /// <summary>Entity types by fully-qualified name (action entity types are not listed here).</summary>
    public IReadOnlyDictionary<string, EntityTypeDef> EntityTypes { get; }

    /// <summary>Actions by their entity uid.</summary>
    public IReadOnlyDictionary<ActionRef, ActionDef> Actions { get; }

    /// <summary>Fully-qualified action entity types (e.g. <c>NS::Action</c>) that have at least one action.</summary>
    public IReadOnlySet<string> ActionEntityTypes => _actionEntityTypes;

    /// <summary>True for declared entity types and for action entity types.</summary>
    public bool IsKnownEntityType(string name) => EntityTypes.ContainsKey(name) || _actionEntityTypes.Contains(name);

    /// <summary>Parses the Cedar schema syntax. On failure <paramref name="schema"/> is null and <paramref name="errors"/> is non-empty.</summary>
    public static bool TryParseCedar(string text, out CedarSchema? schema, out IReadOnlyList<SchemaError> errors)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (!CedarSchemaParser.TryParse(text, out var namespaces, out var syntaxError))
        {
            schema = null;
            errors = [syntaxError!];
            return false;
        }

        return SchemaResolver.TryResolve(namespaces!, out schema, out errors);
    }

    /// <summary>Parses Cedar's JSON schema format. On failure <paramref name="schema"/> is null and <paramref name="errors"/> is non-empty.</summary>
    public static bool TryParseJson(string json, out CedarSchema? schema, out IReadOnlyList<SchemaError> errors)
    {
        ArgumentNullException.ThrowIfNull(json);
        if (!JsonSchemaReader.TryRead(json, out var namespaces, out errors))
        {
            schema = null;
            return false;
        }

        return SchemaResolver.TryResolve(namespaces!, out schema, out errors);
    }

    /// <summary>The schema in Cedar's JSON schema format (common types inlined).</summary>
    public string ToJson() => JsonSchemaWriter.Write(this);

    /// <summary>Structural equality of two schemas (used by round-trip tests).</summary>
    public bool StructurallyEquals(CedarSchema other)
    {
        ArgumentNullException.ThrowIfNull(other);
        return SchemaEquality.DictionaryEquals(EntityTypes, other.EntityTypes)
            && Actions.Count == other.Actions.Count
            && Actions.All(kv => other.Actions.TryGetValue(kv.Key, out var o) && kv.Value.Equals(o));
    }
}
