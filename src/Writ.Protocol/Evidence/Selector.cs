using System.Diagnostics.CodeAnalysis;
using Writ.Protocol.Errors;

namespace Writ.Protocol.Evidence;

/// <summary>
/// One piece of attestation evidence, written <c>type:value</c>: <c>unix:uid:1000</c> is type <c>unix</c>, value
/// <c>uid:1000</c> (split at the first ':'). Type is <c>[a-z0-9_-]+</c>; value is non-empty and has no whitespace or
/// control characters. The one selector of agent, server and CLI (docs/selectors.md); the protocol's
/// <c>writ.agent.v1.Selector</c> converts through <see cref="EvidenceProto"/>. Equality is ordinal on type and value;
/// the order is ordinal by type, then value.
/// </summary>
public sealed record Selector(string Type, string Value) : IComparable<Selector>
{
    /// <summary>The code of a selector that breaks the rules above.</summary>
    public const string InvalidCode = "WRIT-SELECTOR-INVALID";

    public override string ToString() => $"{Type}:{Value}";

    public int CompareTo(Selector? other)
    {
        if (other is null)
            return 1;
        var c = string.CompareOrdinal(Type, other.Type);
        return c != 0 ? c : string.CompareOrdinal(Value, other.Value);
    }

    /// <summary>Parses <c>type:value</c>, splitting at the first ':'.</summary>
    public static bool TryParse([NotNullWhen(true)] string? text, [NotNullWhen(true)] out Selector? selector, [NotNullWhen(false)] out string? error)
    {
        selector = null;
        if (string.IsNullOrEmpty(text))
        {
            error = "selector is empty: write it as type:value, e.g. unix:uid:1000";
            return false;
        }
        var colon = text.IndexOf(':', StringComparison.Ordinal);
        if (colon < 0)
        {
            error = "selector has no ':' separating type and value: write it as type:value, e.g. unix:uid:1000";
            return false;
        }
        var type = text[..colon];
        var value = text[(colon + 1)..];
        if (!IsValid(type, value, out error))
            return false;
        selector = new Selector(type, value);
        return true;
    }

    /// <summary>Parses <c>type:value</c> or throws <see cref="WritException"/> <see cref="InvalidCode"/> saying why.</summary>
    public static Selector Parse(string? text) =>
        TryParse(text, out var selector, out var error)
            ? selector
            : throw new WritException(InvalidCode, WritErrorKind.InvalidArgument, $"selector '{text}' is invalid: {error}");

    /// <summary>A selector type (and an attestor name): a non-empty lower-case word of a-z, 0-9, '_' and '-'.</summary>
    public static bool IsValidType([NotNullWhen(true)] string? type)
    {
        if (string.IsNullOrEmpty(type))
            return false;
        foreach (var c in type)
        {
            if (c is not ((>= 'a' and <= 'z') or (>= '0' and <= '9') or '_' or '-'))
                return false;
        }
        return true;
    }

    /// <summary>A selector value: non-empty, no whitespace or control characters.</summary>
    public static bool IsValidValue([NotNullWhen(true)] string? value)
    {
        if (string.IsNullOrEmpty(value))
            return false;
        foreach (var c in value)
        {
            if (char.IsWhiteSpace(c) || char.IsControl(c))
                return false;
        }
        return true;
    }

    /// <summary>Checks the rules of <see cref="TryParse"/> for a type and value given separately.</summary>
    public static bool IsValid(string? type, string? value, [NotNullWhen(false)] out string? error)
    {
        if (string.IsNullOrEmpty(type))
        {
            error = "selector type is empty: write the selector as type:value, e.g. unix:uid:1000";
            return false;
        }
        if (!IsValidType(type))
        {
            error = "selector type may only contain a-z, 0-9, '_' and '-': use a lower-case type such as unix or k8s";
            return false;
        }
        if (string.IsNullOrEmpty(value))
        {
            error = $"selector '{type}:' has an empty value: write it as type:value, e.g. unix:uid:1000";
            return false;
        }
        if (!IsValidValue(value))
        {
            error = $"selector value for type '{type}' contains whitespace or a control character: remove it";
            return false;
        }
        error = null;
        return true;
    }
}
