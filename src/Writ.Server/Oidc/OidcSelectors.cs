using System.Text.Json;
using Writ.Protocol.Evidence;

namespace Writ.Server.Oidc;

/// <summary>
/// The selectors of a validated OIDC token (docs/selectors.md): <c>oidc:iss:&lt;issuer&gt;</c>, <c>oidc:sub:&lt;sub&gt;</c>,
/// and <c>oidc:claim:&lt;name&gt;:&lt;value&gt;</c> for each claim the issuer's configuration lists (string, number or
/// boolean values; a list gives one selector per element; objects and nested lists give none). A value that cannot be a
/// selector value (empty, whitespace, control characters) gives no selector and is reported in
/// <see cref="Result.Omitted"/>: it is never escaped or joined into another value, so no claim can pose as another.
/// </summary>
public static class OidcSelectors
{
    public const string Type = "oidc";

    /// <summary>The selectors, and a line for each configured claim value that could not become one.</summary>
    public sealed record Result(IReadOnlyList<Selector> Selectors, IReadOnlyList<string> Omitted);

    public static Result From(ValidatedToken token, OidcIssuerConfig issuer)
    {
        ArgumentNullException.ThrowIfNull(token);
        ArgumentNullException.ThrowIfNull(issuer);
        var selectors = new List<Selector>();
        var omitted = new List<string>();
        Add(selectors, omitted, "iss", token.Issuer, "iss");
        Add(selectors, omitted, "sub", token.Subject, "sub");
        foreach (var name in issuer.Claims.Distinct(StringComparer.Ordinal))
        {
            if (!Selector.IsValidValue(name) || name.Contains(':', StringComparison.Ordinal))
            {
                omitted.Add($"claim name '{name}' cannot be part of a selector (it has ':', whitespace or control characters)");
                continue;
            }
            if (token.Claims.ValueKind != JsonValueKind.Object || !token.Claims.TryGetProperty(name, out var value))
            {
                continue;
            }
            if (value.ValueKind == JsonValueKind.Array)
            {
                foreach (var element in value.EnumerateArray())
                {
                    AddScalar(selectors, omitted, name, element);
                }
            }
            else
            {
                AddScalar(selectors, omitted, name, value);
            }
        }
        selectors.Sort();
        return new Result(selectors.Distinct().ToList(), omitted);
    }

    private static void AddScalar(List<Selector> selectors, List<string> omitted, string name, JsonElement value)
    {
        var text = value.ValueKind switch
        {
            JsonValueKind.String => value.GetString(),
            JsonValueKind.Number => value.GetRawText(),
            JsonValueKind.True => "true",
            JsonValueKind.False => "false",
            _ => null,
        };
        if (text is null)
        {
            if (value.ValueKind is JsonValueKind.Object or JsonValueKind.Array)
            {
                omitted.Add($"claim '{name}' has a JSON {(value.ValueKind == JsonValueKind.Object ? "object" : "list")} value, which gives no selector");
            }
            return;
        }
        Add(selectors, omitted, "claim:" + name, text, $"claim '{name}'");
    }

    private static void Add(List<Selector> selectors, List<string> omitted, string prefix, string? value, string what)
    {
        if (!Selector.IsValidValue(value))
        {
            omitted.Add($"{what} has a value that cannot be a selector (empty, whitespace or control characters)");
            return;
        }
        selectors.Add(new Selector(Type, prefix + ":" + value));
    }
}
