using System.Diagnostics.CodeAnalysis;

namespace Writ.Server.Storage;

/// <summary>
/// One piece of attestation evidence, e.g. <c>unix:uid:1000</c> = type <c>unix</c>, value <c>uid:1000</c>.
/// Type is <c>[a-z0-9_-]+</c>; value is non-empty; neither contains whitespace or control characters.
/// </summary>
public sealed record Selector(string Type, string Value)
{
    public override string ToString() => $"{Type}:{Value}";

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

    /// <summary>Checks the rules of <see cref="TryParse"/> for a type and value given separately.</summary>
    public static bool IsValid(string? type, string? value, [NotNullWhen(false)] out string? error)
    {
        if (string.IsNullOrEmpty(type))
        {
            error = "selector type is empty: write the selector as type:value, e.g. unix:uid:1000";
            return false;
        }
        foreach (var c in type)
        {
            if (c is not ((>= 'a' and <= 'z') or (>= '0' and <= '9') or '_' or '-'))
            {
                error = "selector type may only contain a-z, 0-9, '_' and '-': use a lower-case type such as unix or k8s";
                return false;
            }
        }
        if (string.IsNullOrEmpty(value))
        {
            error = $"selector '{type}:' has an empty value: write it as type:value, e.g. unix:uid:1000";
            return false;
        }
        foreach (var c in value)
        {
            if (char.IsWhiteSpace(c) || char.IsControl(c))
            {
                error = $"selector value for type '{type}' contains whitespace or a control character: remove it";
                return false;
            }
        }
        error = null;
        return true;
    }
}
