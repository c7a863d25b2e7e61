namespace Writ.Policy.Schema;

/// <summary>Structural comparisons used by the schema records' equality.</summary>
internal static class SchemaEquality
{
    public static IReadOnlyDictionary<string, string> NoAnnotations { get; } =
        new Dictionary<string, string>(StringComparer.Ordinal);

    public static bool DictionaryEquals<TValue>(IReadOnlyDictionary<string, TValue> a, IReadOnlyDictionary<string, TValue> b)
    {
        if (ReferenceEquals(a, b))
            return true;
        if (a.Count != b.Count)
            return false;
        foreach (var (key, value) in a)
        {
            if (!b.TryGetValue(key, out var other) || !EqualityComparer<TValue>.Default.Equals(value, other))
                return false;
        }

        return true;
    }

    public static bool ListEquals<T>(IReadOnlyList<T>? a, IReadOnlyList<T>? b)
    {
        if (a is null || b is null)
            return a is null && b is null;
        return a.SequenceEqual(b);
    }

    /// <summary>Order-insensitive comparison (member-of lists and appliesTo lists are sets in Cedar).</summary>
    public static bool SetEquals<T>(IReadOnlyList<T> a, IReadOnlyList<T> b) =>
        new HashSet<T>(a).SetEquals(b);

    /// <summary>Order-insensitive; null (no <c>appliesTo</c>) equals an empty list (applies to no type): both mean "nothing".</summary>
    public static bool NullableSetEquals<T>(IReadOnlyList<T>? a, IReadOnlyList<T>? b) => SetEquals(a ?? [], b ?? []);
}
