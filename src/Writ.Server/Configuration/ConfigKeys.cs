using System.Globalization;
using System.Text.Json;

namespace Writ.Server.Configuration;

/// <summary>A configuration key: its dotted name (file), the env var and flag derived from it, default and help.</summary>
public sealed record ConfigKey(string Name, string Default, string Help)
{
    /// <summary>
    /// A structured key (a list of objects such as <c>oidc_issuers</c> or <c>k8s_clusters</c>): in the config file its
    /// value is any JSON value, kept as JSON text; from an environment variable or a flag the value is that JSON text.
    /// The component that owns the key parses it (<see cref="ConfigSources.Json"/>).
    /// </summary>
    public bool IsJson { get; init; }

    /// <summary>`ca.key_type` → `WRIT_SERVER_CA_KEY_TYPE` (prefix given by the component).</summary>
    public string EnvVar(string prefix) => prefix + Name.Replace('.', '_').ToUpperInvariant();

    /// <summary>`ca.key_type` → `--ca-key-type`.</summary>
    public string Flag => Name.Replace('.', '-').Replace('_', '-');
}

/// <summary>
/// Collects configuration values from defaults, a JSON file, environment variables and flags (in rising precedence),
/// checks every key is known, and records where each value came from so an error can say which source to fix.
/// </summary>
public sealed class ConfigSources
{
    private readonly IReadOnlyList<ConfigKey> _keys;
    private readonly Dictionary<string, (string Value, string Source)> _values = new(StringComparer.Ordinal);

    public List<string> Errors { get; } = [];

    public ConfigSources(IReadOnlyList<ConfigKey> keys)
    {
        _keys = keys;
        foreach (var k in keys)
        {
            if (k.Default.Length > 0)
            {
                _values[k.Name] = (k.Default, "default");
            }
        }
    }

    public void AddJsonFile(string path)
    {
        if (!File.Exists(path))
        {
            Errors.Add($"config file '{path}' does not exist");
            return;
        }
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(File.ReadAllText(path), new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
        }
        catch (JsonException e)
        {
            Errors.Add($"config file '{path}' is not valid JSON (line {e.LineNumber + 1}): fix the syntax");
            return;
        }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
            {
                Errors.Add($"config file '{path}' must hold a JSON object");
                return;
            }
            Flatten(doc.RootElement, "", path);
        }
    }

    private void Flatten(JsonElement obj, string prefix, string path)
    {
        foreach (var p in obj.EnumerateObject())
        {
            var name = prefix + p.Name;
            if (_keys.FirstOrDefault(k => k.Name == name) is { IsJson: true })
            {
                if (p.Value.ValueKind == JsonValueKind.Null)
                {
                    _values.Remove(name);
                }
                else
                {
                    _values[name] = (p.Value.GetRawText(), $"config file '{path}'");
                }
                continue;
            }
            if (p.Value.ValueKind == JsonValueKind.Object)
            {
                Flatten(p.Value, name + ".", path);
                continue;
            }
            if (_keys.All(k => k.Name != name))
            {
                Errors.Add($"config file '{path}': unknown key '{name}'{Suggest(name)}");
                continue;
            }
            var value = p.Value.ValueKind switch
            {
                JsonValueKind.String => p.Value.GetString()!,
                JsonValueKind.Number or JsonValueKind.True or JsonValueKind.False => p.Value.GetRawText(),
                JsonValueKind.Null => null,
                _ => "\u0000array",
            };
            if (value == "\u0000array")
            {
                Errors.Add($"config file '{path}': key '{name}' must be a string, number or boolean");
                continue;
            }
            if (value is null)
            {
                _values.Remove(name);
            }
            else
            {
                _values[name] = (value, $"config file '{path}'");
            }
        }
    }

    public void AddEnvironment(string prefix, Func<string, string?> getEnv)
    {
        foreach (var k in _keys)
        {
            if (getEnv(k.EnvVar(prefix)) is { Length: > 0 } v)
            {
                _values[k.Name] = (v, $"environment variable {k.EnvVar(prefix)}");
            }
        }
    }

    public void Set(string name, string value, string source) => _values[name] = (value, source);

    public string? Get(string name) => _values.TryGetValue(name, out var v) ? v.Value : null;

    /// <summary>
    /// The parsed JSON of a structured key (<see cref="ConfigKey.IsJson"/>), or null when it is not set; invalid JSON is an
    /// error naming the source.
    /// </summary>
    public JsonElement? Json(string name)
    {
        var v = Get(name);
        if (v is null || v.Length == 0)
        {
            return null;
        }
        try
        {
            using var doc = JsonDocument.Parse(v, new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
            return doc.RootElement.Clone();
        }
        catch (JsonException e)
        {
            Errors.Add($"{Describe(name)} is not valid JSON (line {e.LineNumber + 1}): give a JSON list of objects, as docs/configuration.md shows");
            return null;
        }
    }

    public string SourceOf(string name) => _values.TryGetValue(name, out var v) ? v.Source : "default";

    public string Describe(string name)
    {
        var src = SourceOf(name);
        return src == "default" ? $"'{name}'" : $"'{name}' (from {src})";
    }

    public TimeSpan Duration(string name, TimeSpan min, TimeSpan max)
    {
        var v = Get(name);
        if (v is null || !TryParseDuration(v, out var d))
        {
            Errors.Add($"{Describe(name)} must be a duration like 90s, 15m, 1h or 2h30m, got '{v}'");
            return min;
        }
        if (d < min || d > max)
        {
            Errors.Add($"{Describe(name)} must be between {Format(min)} and {Format(max)}, got {v}");
            return min;
        }
        return d;
    }

    public bool Bool(string name)
    {
        var v = Get(name);
        if (bool.TryParse(v, out var b))
        {
            return b;
        }
        Errors.Add($"{Describe(name)} must be true or false, got '{v}'");
        return false;
    }

    public string OneOf(string name, params string[] allowed)
    {
        var v = Get(name) ?? "";
        if (!allowed.Contains(v, StringComparer.Ordinal))
        {
            Errors.Add($"{Describe(name)} must be one of {string.Join(", ", allowed)}, got '{v}'");
            return allowed[0];
        }
        return v;
    }

    private string Suggest(string name)
    {
        var leaf = name.Split('.')[^1];
        var near = _keys.FirstOrDefault(k => k.Name.EndsWith(leaf, StringComparison.Ordinal) || leaf.Contains(k.Name.Split('.')[^1], StringComparison.Ordinal));
        return near is null ? "" : $" (did you mean '{near.Name}'?)";
    }

    public static string Format(TimeSpan t) =>
        t.TotalDays >= 1 && t.TotalDays == Math.Floor(t.TotalDays) ? $"{t.TotalDays.ToString(CultureInfo.InvariantCulture)}d"
        : t.TotalHours >= 1 && t.TotalHours == Math.Floor(t.TotalHours) ? $"{t.TotalHours.ToString(CultureInfo.InvariantCulture)}h"
        : t.TotalMinutes >= 1 && t.TotalMinutes == Math.Floor(t.TotalMinutes) ? $"{t.TotalMinutes.ToString(CultureInfo.InvariantCulture)}m"
        : $"{t.TotalSeconds.ToString(CultureInfo.InvariantCulture)}s";

    /// <summary>Accepts 90, 90s, 15m, 1h, 2h30m, 7d, 500ms.</summary>
    public static bool TryParseDuration(string text, out TimeSpan value)
    {
        value = TimeSpan.Zero;
        if (string.IsNullOrWhiteSpace(text))
        {
            return false;
        }
        if (long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var secs))
        {
            value = TimeSpan.FromSeconds(secs);
            return true;
        }
        var total = TimeSpan.Zero;
        var i = 0;
        while (i < text.Length)
        {
            var start = i;
            while (i < text.Length && char.IsAsciiDigit(text[i]))
            {
                i++;
            }
            if (start == i || !long.TryParse(text.AsSpan(start, i - start), NumberStyles.None, CultureInfo.InvariantCulture, out var n) || n > 1_000_000_000)
            {
                return false;
            }
            var unitStart = i;
            while (i < text.Length && char.IsAsciiLetter(text[i]))
            {
                i++;
            }
            var unit = text[unitStart..i];
            TimeSpan part;
            switch (unit)
            {
                case "ms": part = TimeSpan.FromMilliseconds(n); break;
                case "s": part = TimeSpan.FromSeconds(n); break;
                case "m": part = TimeSpan.FromMinutes(n); break;
                case "h": part = TimeSpan.FromHours(n); break;
                case "d": part = TimeSpan.FromDays(n); break;
                default: return false;
            }
            total += part;
        }
        value = total;
        return true;
    }
}
