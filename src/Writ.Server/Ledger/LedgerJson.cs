using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace Writ.Server.Ledger;

/// <summary>
/// Writes a ledger event's data: a JSON object with its keys in ordinal order and no insignificant whitespace. Values
/// may be null, string, bool, int/long, DateTimeOffset (written as RFC 3339 UTC), a list of strings, or a nested
/// <see cref="LedgerJson"/>. The ledger hashes the stored text as it is, so the encoding only has to be stable.
/// </summary>
public sealed class LedgerJson
{
    private static readonly JsonWriterOptions Options = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
    private readonly SortedDictionary<string, object?> _values = new(StringComparer.Ordinal);

    /// <summary>Adds a member; a key given twice is a bug.</summary>
    public LedgerJson Add(string key, object? value)
    {
        ArgumentNullException.ThrowIfNull(key);
        if (!_values.TryAdd(key, value))
            throw new ArgumentException($"ledger data key '{key}' given twice", nameof(key));
        return this;
    }

    public override string ToString()
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, Options))
            Write(w);
        return Encoding.UTF8.GetString(buffer.ToArray());
    }

    private void Write(Utf8JsonWriter w)
    {
        w.WriteStartObject();
        foreach (var (key, value) in _values)
        {
            w.WritePropertyName(key);
            WriteValue(w, value);
        }
        w.WriteEndObject();
    }

    private static void WriteValue(Utf8JsonWriter w, object? value)
    {
        switch (value)
        {
            case null: w.WriteNullValue(); break;
            case string s: w.WriteStringValue(s); break;
            case bool b: w.WriteBooleanValue(b); break;
            case int i: w.WriteNumberValue(i); break;
            case long l: w.WriteNumberValue(l); break;
            case DateTimeOffset t: w.WriteStringValue(Rfc3339(t)); break;
            case LedgerJson o: o.Write(w); break;
            case IEnumerable<string> list:
                w.WriteStartArray();
                foreach (var s in list)
                    w.WriteStringValue(s);
                w.WriteEndArray();
                break;
            default: throw new ArgumentException($"ledger data cannot hold a {value.GetType().Name}");
        }
    }

    public static string Rfc3339(DateTimeOffset t) => t.ToUniversalTime().ToString("yyyy-MM-dd'T'HH:mm:ss.FFFFFF'Z'", CultureInfo.InvariantCulture);
}
