using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Writ.Protocol.Evidence;

namespace Writ.Server.Storage.Sql;

[JsonSerializable(typeof(string[]))]
internal sealed partial class StorageJsonContext : JsonSerializerContext;

/// <summary>Column encodings and argument checks shared by the SQL stores.</summary>
internal static class Codec
{
    public static string EncodeStrings(IEnumerable<string> values) =>
        JsonSerializer.Serialize(values.ToArray(), StorageJsonContext.Default.StringArray);

    public static string[] DecodeStrings(string json, string what) =>
        JsonSerializer.Deserialize(json, StorageJsonContext.Default.StringArray)
        ?? throw new StoreUnavailableException($"stored {what} is not a JSON array: the database was modified outside writ; restore it from a backup");

    public static string EncodeSelectors(IEnumerable<Selector> selectors) => EncodeStrings(selectors.Select(s => s.ToString()));

    public static Selector[] DecodeSelectors(string json)
    {
        var texts = DecodeStrings(json, "selector list");
        var result = new Selector[texts.Length];
        for (var i = 0; i < texts.Length; i++)
        {
            if (!Selector.TryParse(texts[i], out var s, out _))
                throw new StoreUnavailableException("a stored selector is malformed: the database was modified outside writ; restore it from a backup");
            result[i] = s;
        }
        return result;
    }

    /// <summary>The selector set: distinct, in ordinal order.</summary>
    public static IReadOnlyList<Selector> SelectorSet(IEnumerable<Selector> selectors) =>
        selectors.Distinct().OrderBy(s => s.Type, StringComparer.Ordinal).ThenBy(s => s.Value, StringComparer.Ordinal).ToList();

    /// <summary>
    /// The uniqueness key of an entry: SHA-256 over SPIFFE ID, parent ID and the selector SET (order-insensitive),
    /// length-prefixed so no two different triples share an encoding.
    /// </summary>
    public static string IdentityKey(string spiffeId, string parentId, IEnumerable<Selector> selectors)
    {
        var sb = new StringBuilder();
        void Add(string s) => sb.Append(s.Length).Append(':').Append(s).Append(';');
        Add(spiffeId);
        Add(parentId);
        foreach (var s in SelectorSet(selectors))
        {
            Add(s.Type);
            Add(s.Value);
        }
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(sb.ToString())));
    }

    /// <summary>Ids, SPIFFE IDs, trust domains, names: non-empty, at most 2048 chars, no whitespace or control characters.</summary>
    public static void RequireKey(string? value, string what)
    {
        if (string.IsNullOrEmpty(value))
            throw new ArgumentException($"{what} is empty: set it");
        if (value.Length > 2048)
            throw new ArgumentException($"{what} is longer than 2048 characters: shorten it");
        foreach (var c in value)
        {
            if (char.IsWhiteSpace(c) || char.IsControl(c))
                throw new ArgumentException($"{what} contains whitespace or a control character: remove it");
        }
    }

    public static void RequireSelectors(IReadOnlyList<Selector>? selectors, string what)
    {
        if (selectors is null)
            throw new ArgumentException($"{what} selectors are null: pass an empty list instead");
        foreach (var s in selectors)
        {
            if (s is null)
                throw new ArgumentException($"{what} has a null selector: remove it");
            if (!Selector.IsValid(s.Type, s.Value, out var error))
                throw new ArgumentException($"{what}: {error}");
        }
    }
}
