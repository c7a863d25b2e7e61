using System.Text;

namespace Writ.Policy.Schema;

/// <summary>
/// A fully resolved schema type: no common-type references remain. Equality is structural,
/// so two types built from different texts compare equal when they mean the same thing.
/// <see cref="object.ToString"/> prints the type in Cedar schema syntax (for error messages).
/// </summary>
public abstract record SchemaType
{
    /// <summary>The type in Cedar schema syntax, e.g. <c>Set&lt;NS::User&gt;</c>.</summary>
    public abstract string ToCedar();

    /// <summary>A short form for messages: records nested below <paramref name="depth"/> print as <c>{...}</c>.</summary>
    public virtual string ToShortCedar(int depth = 2) => ToCedar();
}

public sealed record BoolType : SchemaType
{
    public static BoolType Instance { get; } = new();

    public override string ToCedar() => "Bool";

    public override string ToString() => ToCedar();
}

public sealed record LongType : SchemaType
{
    public static LongType Instance { get; } = new();

    public override string ToCedar() => "Long";

    public override string ToString() => ToCedar();
}

public sealed record StringType : SchemaType
{
    public static StringType Instance { get; } = new();

    public override string ToCedar() => "String";

    public override string ToString() => ToCedar();
}

public sealed record SetType(SchemaType Element) : SchemaType
{
    public override string ToCedar() => $"Set<{Element.ToCedar()}>";

    public override string ToShortCedar(int depth = 2) => $"Set<{Element.ToShortCedar(depth)}>";

    public override string ToString() => ToShortCedar(4);
}

/// <summary>One attribute of a record or entity shape.</summary>
public sealed record AttributeDef(SchemaType Type, bool Required, IReadOnlyDictionary<string, string> Annotations)
{
    public AttributeDef(SchemaType type, bool required = true)
        : this(type, required, SchemaEquality.NoAnnotations)
    {
    }

    public bool Equals(AttributeDef? other) =>
        ReferenceEquals(this, other) || other is not null && Required == other.Required && Type.Equals(other.Type)
        && SchemaEquality.DictionaryEquals(Annotations, other.Annotations);

    public override int GetHashCode() => HashCode.Combine(Type, Required, Annotations.Count);
}

/// <summary>A record type. <paramref name="AdditionalAttributes"/> is only settable from the JSON syntax.</summary>
public sealed record RecordType(IReadOnlyDictionary<string, AttributeDef> Attributes, bool AdditionalAttributes = false) : SchemaType
{
    public static RecordType Empty { get; } = new(new Dictionary<string, AttributeDef>(StringComparer.Ordinal));

    public bool Equals(RecordType? other) =>
        ReferenceEquals(this, other) || other is not null && AdditionalAttributes == other.AdditionalAttributes
        && SchemaEquality.DictionaryEquals(Attributes, other.Attributes);

    public override int GetHashCode() => HashCode.Combine(Attributes.Count, AdditionalAttributes);

    public override string ToShortCedar(int depth = 2) =>
        depth <= 0 ? "{...}"
        : "{ " + string.Join(", ", Attributes.OrderBy(a => a.Key, StringComparer.Ordinal).Take(8)
            .Select(a => SchemaNames.QuoteIfNeeded(a.Key) + (a.Value.Required ? ": " : "?: ") + a.Value.Type.ToShortCedar(depth - 1)))
          + (Attributes.Count > 8 ? ", ..." : string.Empty) + " }";

    public override string ToCedar()
    {
        if (Attributes.Count == 0)
            return "{}";
        var sb = new StringBuilder("{ ");
        var first = true;
        foreach (var (name, attr) in Attributes.OrderBy(a => a.Key, StringComparer.Ordinal))
        {
            if (!first)
                sb.Append(", ");
            first = false;
            sb.Append(SchemaNames.QuoteIfNeeded(name)).Append(attr.Required ? ": " : "?: ").Append(attr.Type.ToCedar());
        }

        return sb.Append(" }").ToString();
    }

    public override string ToString() => ToShortCedar(4);
}

/// <summary>A reference to an entity type, always by its fully-qualified name, e.g. <c>NS::User</c>.</summary>
public sealed record EntityRefType(string EntityType) : SchemaType
{
    public override string ToCedar() => EntityType;

    public override string ToString() => ToCedar();
}

/// <summary>An extension type: <c>ipaddr</c>, <c>decimal</c>, <c>datetime</c> or <c>duration</c>.</summary>
public sealed record ExtensionType(string Name) : SchemaType
{
    /// <summary>The extension types Cedar 4.5 knows.</summary>
    public static IReadOnlyList<string> KnownNames { get; } = ["ipaddr", "decimal", "datetime", "duration"];

    public override string ToCedar() => Name;

    public override string ToString() => ToCedar();
}
