namespace Writ.Policy.Schema.Syntax;

// The unresolved form shared by the Cedar-syntax and JSON-syntax readers. Names here are written
// as in the source (possibly namespace-relative); SchemaResolver turns them into the resolved model.

/// <summary>A source position; (0, 0) when unknown (JSON).</summary>
internal readonly record struct SourcePos(int Line, int Column)
{
    public static SourcePos None => default;
}

internal enum RefKind
{
    /// <summary>May name a common type or an entity type (Cedar syntax types, JSON <c>EntityOrCommon</c>).</summary>
    CommonOrEntity,

    /// <summary>Must name an entity type (JSON <c>Entity</c>, member-of lists, appliesTo lists).</summary>
    Entity,

    /// <summary>Must name a common type (Cedar syntax <c>context: T</c>).</summary>
    Common,
}

internal abstract record RawType(SourcePos Pos);

internal sealed record RawNamedType(string Name, RefKind Kind, SourcePos Pos) : RawType(Pos);

internal sealed record RawSetType(RawType Element, SourcePos Pos) : RawType(Pos);

internal sealed record RawRecordType(IReadOnlyList<RawAttribute> Attributes, bool AdditionalAttributes, SourcePos Pos) : RawType(Pos);

/// <summary>Only from JSON: <c>{"type": "Long"}</c> etc. and <c>{"type": "Extension", "name": ...}</c>.</summary>
internal sealed record RawBuiltinType(SchemaType Type, SourcePos Pos) : RawType(Pos);

internal sealed record RawAttribute(string Name, RawType Type, bool Required, IReadOnlyDictionary<string, string> Annotations, SourcePos Pos);

internal sealed record RawName(string Name, SourcePos Pos);

internal sealed record RawEntityDecl(
    RawName Name,
    IReadOnlyList<RawName> MemberOf,
    RawType? Shape,
    RawType? Tags,
    IReadOnlyList<string>? EnumIds,
    IReadOnlyDictionary<string, string> Annotations);

/// <summary>An action parent: <paramref name="Type"/> null means "the Action type of the current namespace".</summary>
internal sealed record RawActionParent(string? Type, string Id, SourcePos Pos);

internal sealed record RawActionDecl(
    string Name,
    SourcePos Pos,
    IReadOnlyList<RawActionParent> MemberOf,
    IReadOnlyList<RawName>? PrincipalTypes,
    IReadOnlyList<RawName>? ResourceTypes,
    RawType? Context,
    IReadOnlyDictionary<string, string> Annotations);

internal sealed record RawCommonTypeDecl(RawName Name, RawType Type, IReadOnlyDictionary<string, string> Annotations);

internal sealed class RawNamespace(string name, SourcePos pos)
{
    /// <summary>Empty for the empty namespace.</summary>
    public string Name { get; } = name;

    public SourcePos Pos { get; } = pos;

    public Dictionary<string, string> Annotations { get; } = new(StringComparer.Ordinal);

    public List<RawEntityDecl> EntityTypes { get; } = [];

    public List<RawActionDecl> Actions { get; } = [];

    public List<RawCommonTypeDecl> CommonTypes { get; } = [];
}
