using System.Text.Json;
using Writ.Cli.CommandLine;
using Writ.Cli.Commands;
using Writ.Server.Configuration;
using Entry = Writ.Protocol.Agent.Entry;

namespace Writ.Cli.Admin;

/// <summary>
/// The JSON form of registration entries, used by `writ entry create --file` and `--output json`:
/// <c>{"entries":[{"spiffe_id":..., "parent_id":..., "selectors":["unix:uid:1000"], "x509_ttl":"1h", "jwt_ttl":"5m",
/// "dns_names":[...], "hint":..., "admin":false, "expires_at":"2027-01-01T00:00:00Z"}]}</c> (or just the list, or one entry).
/// Unknown keys are refused so a typo never silently drops a constraint.
/// </summary>
public static class EntryFile
{
    private static readonly HashSet<string> Known =
        ["id", "spiffe_id", "parent_id", "selectors", "x509_ttl", "jwt_ttl", "dns_names", "hint", "admin", "expires_at", "revision", "federates_with", "outage_pool"];

    public static List<Entry> Read(string path)
    {
        if (!File.Exists(path))
        {
            throw new UsageException($"entry file '{path}' does not exist");
        }
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(File.ReadAllText(path));
        }
        catch (JsonException e)
        {
            throw new UsageException($"entry file '{path}' is not valid JSON (line {e.LineNumber + 1}): fix the syntax");
        }
        using (doc)
        {
            if (doc.RootElement.ValueKind == JsonValueKind.Object && !doc.RootElement.TryGetProperty("entries", out _))
            {
                return [Parse(doc.RootElement, $"entry file '{path}'")];   // one entry, as `entry show --output json` prints it
            }
            var list = doc.RootElement.ValueKind switch
            {
                JsonValueKind.Array => doc.RootElement,
                JsonValueKind.Object when doc.RootElement.TryGetProperty("entries", out var e) && e.ValueKind == JsonValueKind.Array => e,
                _ => throw new UsageException($"entry file '{path}' must hold an entry, a list of entries or {{\"entries\": [...]}}"),
            };
            var result = new List<Entry>();
            var i = 0;
            foreach (var item in list.EnumerateArray())
            {
                i++;
                result.Add(Parse(item, $"entry file '{path}', entry {i}"));
            }
            if (result.Count == 0)
            {
                throw new UsageException($"entry file '{path}' holds no entries");
            }
            return result;
        }
    }

    private static Entry Parse(JsonElement o, string where)
    {
        if (o.ValueKind != JsonValueKind.Object)
        {
            throw new UsageException($"{where}: must be a JSON object");
        }
        foreach (var p in o.EnumerateObject())
        {
            if (!Known.Contains(p.Name))
            {
                throw new UsageException($"{where}: unknown key '{p.Name}' (known: {string.Join(", ", Known.Order(StringComparer.Ordinal))})");
            }
        }
        var e = new Entry
        {
            SpiffeId = Str(o, "spiffe_id", where) ?? throw new UsageException($"{where}: 'spiffe_id' is required"),
            ParentId = Str(o, "parent_id", where) ?? throw new UsageException($"{where}: 'parent_id' is required"),
            Hint = Str(o, "hint", where) ?? "",
            Id = Str(o, "id", where) ?? "",   // kept for `entry update --file`; `entry create` gets ids from the server
        };
        foreach (var s in StrList(o, "selectors", where))
        {
            e.Selectors.Add(AdminCommands.ParseSelector(s));
        }
        e.DnsNames.AddRange(StrList(o, "dns_names", where));
        e.FederatesWith.AddRange(StrList(o, "federates_with", where));
        e.X509TtlSeconds = Ttl(o, "x509_ttl", where);
        e.JwtTtlSeconds = Ttl(o, "jwt_ttl", where);
        if (o.TryGetProperty("outage_pool", out var pool) && pool.ValueKind != JsonValueKind.Null)
        {
            e.OutagePool = pool.ValueKind == JsonValueKind.Number && pool.TryGetInt32(out var n)
                ? n
                : throw new UsageException($"{where}: 'outage_pool' must be a whole number (0 = off)");
        }
        if (o.TryGetProperty("admin", out var admin))
        {
            e.Admin = admin.ValueKind switch
            {
                JsonValueKind.True => true,
                JsonValueKind.False => false,
                _ => throw new UsageException($"{where}: 'admin' must be true or false"),
            };
        }
        if (Str(o, "expires_at", where) is { } exp)
        {
            e.ExpiresAtUnix = AdminCommands.ParseTime(exp, $"{where}: 'expires_at'");
        }
        return e;
    }

    private static string? Str(JsonElement o, string name, string where) =>
        !o.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null ? null
        : v.ValueKind == JsonValueKind.String ? v.GetString()
        : throw new UsageException($"{where}: '{name}' must be a string");

    private static List<string> StrList(JsonElement o, string name, string where)
    {
        if (!o.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null)
        {
            return [];
        }
        if (v.ValueKind != JsonValueKind.Array || v.EnumerateArray().Any(x => x.ValueKind != JsonValueKind.String))
        {
            throw new UsageException($"{where}: '{name}' must be a list of strings");
        }
        return [.. v.EnumerateArray().Select(x => x.GetString()!)];
    }

    /// <summary>A TTL as a duration string ("1h") or a number of seconds.</summary>
    private static int Ttl(JsonElement o, string name, string where)
    {
        if (!o.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null)
        {
            return 0;
        }
        if (v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out var n) && n >= 0)
        {
            return n;
        }
        if (v.ValueKind == JsonValueKind.String && ConfigSources.TryParseDuration(v.GetString()!, out var d) && d.TotalSeconds <= int.MaxValue)
        {
            return (int)d.TotalSeconds;
        }
        throw new UsageException($"{where}: '{name}' must be a duration like \"1h\" or a number of seconds");
    }

    public static object ToJson(Entry e) => new
    {
        id = e.Id,
        spiffe_id = e.SpiffeId,
        parent_id = e.ParentId,
        selectors = e.Selectors.Select(s => $"{s.Type}:{s.Value}").ToList(),
        x509_ttl = e.X509TtlSeconds,
        jwt_ttl = e.JwtTtlSeconds,
        dns_names = e.DnsNames.ToList(),
        hint = e.Hint,
        admin = e.Admin,
        expires_at = e.ExpiresAtUnix == 0 ? null : Output.Time(e.ExpiresAtUnix),
        revision = e.Revision,
        federates_with = e.FederatesWith.ToList(),
        outage_pool = e.OutagePool,
    };
}
