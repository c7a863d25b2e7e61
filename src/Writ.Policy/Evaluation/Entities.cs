using Writ.Policy.Ast;

namespace Writ.Policy.Evaluation;

/// <summary>An entity: its uid, attributes, direct parents, tags and (once in an <see cref="Entities"/> store) all ancestors.</summary>
public sealed class Entity
{
    private static readonly IReadOnlyDictionary<string, Value> NoValues = new Dictionary<string, Value>(StringComparer.Ordinal);

    public Entity(EntityUid uid, IReadOnlyDictionary<string, Value>? attributes = null, IEnumerable<EntityUid>? parents = null, IReadOnlyDictionary<string, Value>? tags = null)
    {
        Uid = uid ?? throw new ArgumentNullException(nameof(uid));
        Attributes = attributes ?? NoValues;
        Parents = parents is null ? new HashSet<EntityUid>() : new HashSet<EntityUid>(parents);
        Tags = tags ?? NoValues;
        Ancestors = Parents;
    }

    public EntityUid Uid { get; }
    public IReadOnlyDictionary<string, Value> Attributes { get; }

    /// <summary>Direct parents as given.</summary>
    public IReadOnlySet<EntityUid> Parents { get; }

    public IReadOnlyDictionary<string, Value> Tags { get; }

    /// <summary>
    /// Transitive ancestors. An entity built by hand has only its direct parents here; the copy held by an
    /// <see cref="Entities"/> store has the full closure over that store.
    /// </summary>
    public IReadOnlySet<EntityUid> Ancestors { get; private init; }

    internal Entity WithAncestors(IReadOnlySet<EntityUid> ancestors) =>
        new(Uid, Attributes, Parents, Tags) { Ancestors = ancestors };
}

/// <summary>An immutable entity store with the ancestor relation transitively closed.</summary>
public sealed class Entities
{
    private readonly Dictionary<EntityUid, Entity> _byUid;

    private Entities(Dictionary<EntityUid, Entity> byUid) => _byUid = byUid;

    public static Entities Empty { get; } = new(new Dictionary<EntityUid, Entity>());

    public int Count => _byUid.Count;

    public IEnumerable<Entity> All => _byUid.Values;

    public bool TryGet(EntityUid uid, out Entity entity) => _byUid.TryGetValue(uid, out entity!);

    /// <summary>Builds a store; fails (with a one-line reason) if a uid appears twice.</summary>
    public static bool TryCreate(IEnumerable<Entity> entities, out Entities? store, out string error)
    {
        ArgumentNullException.ThrowIfNull(entities);
        var map = new Dictionary<EntityUid, Entity>();
        foreach (var e in entities)
        {
            if (!map.TryAdd(e.Uid, e))
            {
                store = null;
                error = $"entity {e.Uid} is defined twice; give each entity once";
                return false;
            }
        }

        // Transitive closure: for each entity, walk parents iteratively (parents may be absent from the store).
        // The store keeps its own copies, so an Entity shared between stores is never changed.
        var closed = new Dictionary<EntityUid, Entity>(map.Count);
        foreach (var e in map.Values)
        {
            if (e.Parents.Count == 0)
            {
                closed[e.Uid] = e;
                continue;
            }

            var all = new HashSet<EntityUid>(e.Parents);
            var work = new Stack<EntityUid>(e.Parents);
            while (work.Count > 0)
            {
                var u = work.Pop();
                if (!map.TryGetValue(u, out var pe)) continue;
                foreach (var gp in pe.Parents)
                {
                    if (all.Add(gp)) work.Push(gp);
                }
            }

            if (all.Contains(e.Uid))
            {
                // Cedar requires the entity hierarchy to be a DAG (its transitive-closure step rejects cycles).
                store = null;
                error = $"entity {e.Uid} is its own ancestor (the parents form a cycle); remove a parent to break the cycle";
                return false;
            }

            closed[e.Uid] = e.WithAncestors(all);
        }

        store = new Entities(closed);
        error = "";
        return true;
    }

    /// <summary>Parses Cedar's entities JSON; see <see cref="Json.CedarJson.TryParseEntities"/>.</summary>
    public static bool TryParseJson(string json, Schema.CedarSchema? schema, out Entities? entities, out string error) =>
        Json.CedarJson.TryParseEntities(json, schema, out entities, out error);

    /// <summary>Builds a store, throwing <see cref="ArgumentException"/> on duplicate uids (for code-built entities).</summary>
    public static Entities Create(IEnumerable<Entity> entities) =>
        TryCreate(entities, out var s, out var err) ? s! : throw new ArgumentException(err, nameof(entities));
}
