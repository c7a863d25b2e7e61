using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using Writ.Server.Storage;

namespace Writ.Server.Ledger;

/// <summary>
/// The export format: one JSON object per line per ledger record, with every field the hash covers, exactly as stored
/// (<c>data_json</c> is the stored text as a JSON string, <c>decision_id</c> is null when absent) and the hashes in
/// lower-case hex. <c>at</c> is the RFC 3339 form of <c>at_unix_micros</c> for people; only the latter is hashed.
/// </summary>
public static class LedgerExport
{
    private static readonly JsonWriterOptions Options = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static string ToLine(LedgerEvent e)
    {
        ArgumentNullException.ThrowIfNull(e);
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, Options))
        {
            w.WriteStartObject();
            w.WriteNumber("seq", e.Seq);
            w.WriteNumber("at_unix_micros", LedgerHash.ToMicros(e.At));
            w.WriteString("at", LedgerJson.Rfc3339(e.At));
            w.WriteString("kind", e.Kind);
            w.WriteString("actor", e.Actor);
            w.WriteString("subject", e.Subject);
            if (e.DecisionId is null)
                w.WriteNull("decision_id");
            else
                w.WriteString("decision_id", e.DecisionId);
            w.WriteString("data_json", e.DataJson);
            w.WriteString("prev_hash", Convert.ToHexStringLower(e.PrevHash));
            w.WriteString("hash", Convert.ToHexStringLower(e.Hash));
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(buffer.ToArray());
    }

    /// <summary>Reads one exported line; the error names the field that is missing or malformed.</summary>
    public static bool TryParseLine(string line, out LedgerEvent? e, out string error)
    {
        e = null;
        error = "";
        try
        {
            using var doc = JsonDocument.Parse(line);
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                error = "not a JSON object";
                return false;
            }
            if (!TryLong(root, "seq", out var seq, out error) || !TryLong(root, "at_unix_micros", out var at, out error)
                || !TryString(root, "kind", out var kind, out error) || !TryString(root, "actor", out var actor, out error)
                || !TryString(root, "subject", out var subject, out error) || !TryString(root, "data_json", out var data, out error)
                || !TryHex(root, "prev_hash", out var prev, out error) || !TryHex(root, "hash", out var hash, out error))
                return false;
            string? decision = null;
            if (root.TryGetProperty("decision_id", out var d) && d.ValueKind != JsonValueKind.Null)
            {
                if (d.ValueKind != JsonValueKind.String)
                {
                    error = "decision_id must be a string or null";
                    return false;
                }
                decision = d.GetString();
            }
            e = new LedgerEvent
            {
                Seq = seq,
                At = DateTimeOffset.UnixEpoch.AddTicks(checked(at * 10)),
                Kind = kind,
                Actor = actor,
                Subject = subject,
                DecisionId = decision,
                DataJson = data,
                PrevHash = prev,
                Hash = hash,
            };
            return true;
        }
        catch (JsonException ex)
        {
            error = "not valid JSON (" + ex.Message.Split('\n')[0].Trim() + ")";
            return false;
        }
        catch (Exception ex) when (ex is OverflowException or ArgumentOutOfRangeException)
        {
            error = "at_unix_micros is out of range";
            return false;
        }
    }

    private static bool TryLong(JsonElement root, string name, out long value, out string error)
    {
        value = 0;
        error = "";
        if (root.TryGetProperty(name, out var p) && p.ValueKind == JsonValueKind.Number && p.TryGetInt64(out value))
            return true;
        error = $"{name} is missing or not an integer";
        return false;
    }

    private static bool TryString(JsonElement root, string name, out string value, out string error)
    {
        value = "";
        error = "";
        if (root.TryGetProperty(name, out var p) && p.ValueKind == JsonValueKind.String)
        {
            value = p.GetString()!;
            return true;
        }
        error = $"{name} is missing or not a string";
        return false;
    }

    private static bool TryHex(JsonElement root, string name, out byte[] value, out string error)
    {
        value = [];
        if (!TryString(root, name, out var text, out error))
            return false;
        try
        {
            value = Convert.FromHexString(text);
            return true;
        }
        catch (FormatException)
        {
            error = $"{name} is not hex";
            return false;
        }
    }

}
