using System.Collections.Immutable;
using Writ.Policy.Schema;

namespace Writ.Policy.Validation;

// The validator's type language (Cedar's typechecker types): singleton booleans, entity
// least-upper-bounds, open/closed records, and "any set" / "any entity" for expected types.

internal enum BoolKind
{
    Any,
    True,
    False,
}

internal abstract record VType
{
    public static readonly VType Never = new VNever();
    public static readonly VType AnyBool = new VBool(BoolKind.Any);
    public static readonly VType True = new VBool(BoolKind.True);
    public static readonly VType False = new VBool(BoolKind.False);
    public static readonly VType Long = new VLong();
    public static readonly VType String = new VString();
    public static readonly VType AnyEntity = new VEntity(null);
    public static readonly VType AnySet = new VSet(null);
    public static readonly VType AnyRecord = new VRecord(ImmutableSortedDictionary<string, VAttr>.Empty.WithComparers(StringComparer.Ordinal), Open: true);

    public static VType Singleton(bool b) => b ? True : False;

    public static VType Entity(string type) => new VEntity(ImmutableSortedSet.Create(StringComparer.Ordinal, type));

    /// <summary>Cedar-like display for error messages (nested records are abbreviated so messages stay short).</summary>
    public string Display() => Display(2);

    public abstract string Display(int depth);

    public sealed override string ToString() => Display();
}

internal sealed record VNever : VType
{
    public override string Display(int depth) => "Never";
}

internal sealed record VBool(BoolKind Kind) : VType
{
    public override string Display(int depth) => Kind switch { BoolKind.True => "__cedar::True", BoolKind.False => "__cedar::False", _ => "Bool" };
}

internal sealed record VLong : VType
{
    public override string Display(int depth) => "Long";
}

internal sealed record VString : VType
{
    public override string Display(int depth) => "String";
}

internal sealed record VExt(string Name) : VType
{
    public override string Display(int depth) => Name;
}

/// <summary>An entity type: <see cref="Lub"/> null is "any entity", else the possible entity types.</summary>
internal sealed record VEntity(ImmutableSortedSet<string>? Lub) : VType
{
    public bool Equals(VEntity? other) =>
        other is not null && (Lub is null ? other.Lub is null : other.Lub is not null && Lub.SetEquals(other.Lub));

    public override int GetHashCode() => Lub is null ? 0 : Lub.Count == 0 ? 1 : StringComparer.Ordinal.GetHashCode(Lub[0]);

    public string? Single => Lub is { Count: 1 } ? Lub[0] : null;

    public override string Display(int depth) => Lub is null ? "entity" : string.Join(" | ", Lub);
}

internal sealed record VSet(VType? Element) : VType
{
    public override string Display(int depth) => Element is null ? "Set<_>" : $"Set<{Element.Display(depth)}>";
}

internal sealed record VAttr(VType Type, bool Required);

internal sealed record VRecord(ImmutableSortedDictionary<string, VAttr> Attrs, bool Open) : VType
{
    public bool Equals(VRecord? other)
    {
        if (ReferenceEquals(this, other))
            return true;
        if (other is null || Open != other.Open || Attrs.Count != other.Attrs.Count)
            return false;
        foreach (var (k, v) in Attrs)
        {
            if (!other.Attrs.TryGetValue(k, out var o) || !v.Equals(o))
                return false;
        }

        return true;
    }

    public override int GetHashCode() => HashCode.Combine(Attrs.Count, Open);

    public override string Display(int depth) =>
        depth <= 0 ? "{...}"
        : "{" + string.Join(", ", Attrs.Take(8).Select(a => $"{a.Key}{(a.Value.Required ? "" : "?")}: {a.Value.Type.Display(depth - 1)}"))
          + (Attrs.Count > 8 || Open ? ", .." : "") + "}";
}

/// <summary>Subtyping, least upper bounds and disjointness, as in Cedar's validator.</summary>
internal static class VTypeOps
{
    public static bool IsSubtype(VType t0, VType t1, bool strict)
    {
        switch (t0, t1)
        {
            case (VNever, _):
                return true;
            case (VBool b0, VBool b1):
                return (b0.Kind != BoolKind.Any && b1.Kind == BoolKind.Any) || b0.Kind == b1.Kind;
            case (VLong, VLong):
            case (VString, VString):
                return true;
            case (VSet s0, VSet s1):
                return (s0.Element, s1.Element) switch
                {
                    ({ } e0, { } e1) => IsSubtype(e0, e1, strict),
                    (not null, null) => true,
                    (null, not null) => false,
                    _ => true,
                };
            case (VRecord r0, VRecord r1):
                return (!r0.Open || r1.Open)
                    && ((r1.Open && !strict && AttrsSubtype(r0, r1, strict)) || AttrsSubtypeDepthOnly(r0, r1, strict));
            case (VEntity e0, VEntity e1):
                if (e0.Lub is not null && e1.Lub is not null)
                    return strict ? e0.Lub.SetEquals(e1.Lub) : e0.Lub.IsSubsetOf(e1.Lub);
                if (e0.Lub is null && e1.Lub is null)
                    return true;
                return e0.Lub is not null && !strict;
            case (VExt x0, VExt x1):
                return x0.Name == x1.Name;
            default:
                return false;
        }
    }

    private static bool AttrsSubtype(VRecord r0, VRecord r1, bool strict)
    {
        foreach (var (k, a1) in r1.Attrs)
        {
            if (!r0.Attrs.TryGetValue(k, out var a0))
                return false;
            var qualifier = strict ? a0.Required == a1.Required : a0.Required || !a1.Required;
            if (!qualifier || !IsSubtype(a0.Type, a1.Type, strict))
                return false;
        }

        return true;
    }

    private static bool AttrsSubtypeDepthOnly(VRecord r0, VRecord r1, bool strict) =>
        r0.Attrs.Count == r1.Attrs.Count && r0.Attrs.Keys.All(r1.Attrs.ContainsKey) && AttrsSubtype(r0, r1, strict);

    /// <summary>The least upper bound, or null when there is none (a type error in strict mode).</summary>
    public static VType? Lub(VType t0, VType t1, bool strict)
    {
        if (IsSubtype(t0, t1, strict))
            return t1;
        if (IsSubtype(t1, t0, strict))
            return t0;
        switch (t0, t1)
        {
            case (VBool, VBool):
                return VType.AnyBool;
            case (VSet { Element: null }, VSet):
            case (VSet, VSet { Element: null }):
                return VType.AnySet;
            case (VSet { Element: { } e0 }, VSet { Element: { } e1 }):
                return Lub(e0, e1, strict) is { } e ? new VSet(e) : null;
            case (VRecord r0, VRecord r1):
                var attrs = AttrsLub(r0, r1, strict);
                if (attrs is null)
                    return null;
                var union = new HashSet<string>(r0.Attrs.Keys, StringComparer.Ordinal);
                union.UnionWith(r1.Attrs.Keys);
                var open = r0.Open || r1.Open || attrs.Count != union.Count;
                return new VRecord(attrs, open);
            case (VEntity e0, VEntity e1):
                if (e0.Lub is not null && e1.Lub is not null)
                {
                    if (strict && !e0.Lub.SetEquals(e1.Lub))
                        return null;
                    return new VEntity(e0.Lub.Union(e1.Lub));
                }

                if (e0.Lub is null && e1.Lub is null)
                    return VType.AnyEntity;
                return strict ? null : VType.AnyEntity;
            default:
                return null;
        }
    }

    private static ImmutableSortedDictionary<string, VAttr>? AttrsLub(VRecord r0, VRecord r1, bool strict)
    {
        if (strict && (r0.Attrs.Count != r1.Attrs.Count || !r0.Attrs.Keys.All(r1.Attrs.ContainsKey)))
            return null;
        var b = ImmutableSortedDictionary.CreateBuilder<string, VAttr>(StringComparer.Ordinal);
        foreach (var (k, a0) in r0.Attrs)
        {
            if (!r1.Attrs.TryGetValue(k, out var a1))
            {
                if (strict)
                    return null;
                continue;
            }

            var lub = Lub(a0.Type, a1.Type, strict);
            if (lub is null || (strict && a0.Required != a1.Required))
            {
                if (strict)
                    return null;
                continue;
            }

            b[k] = new VAttr(lub, a0.Required && a1.Required);
        }

        return b.ToImmutable();
    }

    public static VType? ReduceLub(IEnumerable<VType> types, bool strict)
    {
        VType acc = VType.Never;
        foreach (var t in types)
        {
            var next = Lub(acc, t, strict);
            if (next is null)
                return null;
            acc = next;
        }

        return acc;
    }

    public static bool AreDisjoint(VType t1, VType t2) =>
        t1 is VEntity { Lub: { } l1 } && t2 is VEntity { Lub: { } l2 } && !l1.Overlaps(l2);

    /// <summary>Converts a schema type; <paramref name="cache"/> keeps shared (inlined common) types shared, so the work stays linear.</summary>
    public static VType FromSchema(SchemaType t, Dictionary<SchemaType, VType> cache)
    {
        if (cache.TryGetValue(t, out var done))
            return done;
        VType v = t switch
        {
            BoolType => VType.AnyBool,
            LongType => VType.Long,
            StringType => VType.String,
            SetType s => new VSet(FromSchema(s.Element, cache)),
            EntityRefType e => VType.Entity(e.EntityType),
            ExtensionType x => new VExt(x.Name),
            RecordType r => FromSchema(r, cache),
            _ => throw new InvalidOperationException($"Unexpected schema type {t.GetType().Name}."),
        };
        cache[t] = v;
        return v;
    }

    public static VRecord FromSchema(RecordType r, Dictionary<SchemaType, VType> cache)
    {
        if (cache.TryGetValue(r, out var done))
            return (VRecord)done;
        var b = ImmutableSortedDictionary.CreateBuilder<string, VAttr>(StringComparer.Ordinal);
        foreach (var (k, a) in r.Attributes)
            b[k] = new VAttr(FromSchema(a.Type, cache), a.Required);
        var v = new VRecord(b.ToImmutable(), r.AdditionalAttributes);
        cache[r] = v;
        return v;
    }
}
