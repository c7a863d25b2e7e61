namespace Writ.Policy.Schema;

/// <summary>
/// An entity type declaration. <paramref name="Name"/> and <paramref name="MemberOfTypes"/> are
/// fully qualified. <paramref name="EnumIds"/> is non-null for enumerated entity types
/// (<c>entity E enum ["a", "b"];</c>), whose shape is empty.
/// </summary>
public sealed record EntityTypeDef(
    string Name,
    IReadOnlyList<string> MemberOfTypes,
    RecordType Shape,
    SchemaType? Tags,
    IReadOnlyList<string>? EnumIds,
    IReadOnlyDictionary<string, string> Annotations)
{
    public bool Equals(EntityTypeDef? other) =>
        other is not null && Name == other.Name
        && SchemaEquality.SetEquals(MemberOfTypes, other.MemberOfTypes)
        && Shape.Equals(other.Shape)
        && Equals(Tags, other.Tags)
        && SchemaEquality.ListEquals(EnumIds, other.EnumIds)
        && SchemaEquality.DictionaryEquals(Annotations, other.Annotations);

    public override int GetHashCode() => HashCode.Combine(Name, MemberOfTypes.Count);
}

/// <summary>The entity uid of an action: <c>Type</c> is the fully-qualified action entity type, e.g. <c>NS::Action</c>.</summary>
public sealed record ActionRef(string Type, string Id)
{
    /// <summary>The uid in Cedar syntax, e.g. <c>NS::Action::"read"</c>.</summary>
    public override string ToString() => $"{Type}::{SchemaNames.QuoteString(Id)}";
}

/// <summary>
/// An action declaration. <paramref name="PrincipalTypes"/>/<paramref name="ResourceTypes"/> are null
/// when the action has no <c>appliesTo</c> (it then applies to no request at all).
/// </summary>
public sealed record ActionDef(
    ActionRef Id,
    IReadOnlyList<ActionRef> MemberOf,
    IReadOnlyList<string>? PrincipalTypes,
    IReadOnlyList<string>? ResourceTypes,
    RecordType Context,
    IReadOnlyDictionary<string, string> Annotations)
{
    public bool Equals(ActionDef? other) =>
        other is not null && Id.Equals(other.Id)
        && SchemaEquality.SetEquals(MemberOf, other.MemberOf)
        && SchemaEquality.NullableSetEquals(PrincipalTypes, other.PrincipalTypes)
        && SchemaEquality.NullableSetEquals(ResourceTypes, other.ResourceTypes)
        && Context.Equals(other.Context)
        && SchemaEquality.DictionaryEquals(Annotations, other.Annotations);

    public override int GetHashCode() => HashCode.Combine(Id, MemberOf.Count);
}

/// <summary>A schema error: one line that says what is wrong and what to do. Line/Column are 1-based, 0 when unknown (JSON).</summary>
public sealed record SchemaError(string Message, int Line, int Column)
{
    public override string ToString() => Line > 0 ? $"{Line}:{Column}: {Message}" : Message;
}
