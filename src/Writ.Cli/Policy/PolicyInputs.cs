using System.Text.Json;
using Writ.Policy.Ast;
using Writ.Policy.Evaluation;
using Writ.Policy.Json;
using Writ.Policy.Schema;
using Writ.Policy.Syntax;

namespace Writ.Cli.Policy;

/// <summary>
/// Reads the inputs of the `writ policy` commands (policy, schema, entity and context files, entity uids) into the
/// engine's types. Every failure is one line naming the file (and line:col when the text has one) and what to fix.
/// </summary>
public static class PolicyInputs
{
    /// <summary>Largest input file read (policies, schemas, entities, test files): 64 MiB.</summary>
    public const long MaxFileBytes = 64L * 1024 * 1024;

    public static bool TryReadText(string path, string what, out string text, out string error)
    {
        text = "";
        try
        {
            var info = new FileInfo(path);
            if (Directory.Exists(path))
            {
                error = $"{what} {path} is a directory; give a file";
                return false;
            }
            if (!info.Exists)
            {
                error = $"{what} {path} does not exist; check the path";
                return false;
            }
            if (info.Length > MaxFileBytes)
            {
                error = $"{what} {path} is larger than {MaxFileBytes / (1024 * 1024)} MiB; split it";
                return false;
            }
            text = File.ReadAllText(path);
            error = "";
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException or System.Security.SecurityException)
        {
            error = $"cannot read {what} {path}: {OneLine(e.Message)}";
            return false;
        }
    }

    /// <summary>True when the file is in Cedar's JSON policy format (by extension, else by content).</summary>
    public static bool LooksLikeJson(string path, string text) =>
        path.EndsWith(".json", StringComparison.OrdinalIgnoreCase)
        || (!path.EndsWith(".cedar", StringComparison.OrdinalIgnoreCase)
            && !path.EndsWith(".cedarschema", StringComparison.OrdinalIgnoreCase)
            && text.TrimStart().StartsWith('{'));

    /// <summary>
    /// Parses a policy file: Cedar text (ids policy0, policy1, ... in text order) or, for `.json`, Cedar's JSON policy
    /// set format. Errors are `file:line:col: message`, one per entry of <paramref name="errors"/>.
    /// </summary>
    public static bool TryParsePolicies(string path, string text, out PolicySet? set, out IReadOnlyList<string> errors)
    {
        if (LooksLikeJson(path, text))
        {
            if (PolicyJson.TryParsePolicySet(text, out set, out var error))
            {
                errors = [];
                return true;
            }
            errors = [$"{path}: {OneLine(error)}"];
            return false;
        }
        if (PolicySet.TryParse(text, out set, out var parseErrors))
        {
            errors = [];
            return true;
        }
        errors = parseErrors.Count == 0
            ? [$"{path}: the policies do not parse; check the Cedar syntax"]
            : parseErrors.Select(e => $"{path}:{e.Line}:{e.Column}: {OneLine(e.Message)}").ToList();
        return false;
    }

    public static bool TryLoadPolicies(string path, out PolicySet? set, out IReadOnlyList<string> errors)
    {
        set = null;
        if (!TryReadText(path, "policy file", out var text, out var error))
        {
            errors = [error];
            return false;
        }
        return TryParsePolicies(path, text, out set, out errors);
    }

    /// <summary>Parses a schema in the Cedar syntax, or the JSON syntax for `.json` files or text starting with `{`.</summary>
    public static bool TryLoadSchema(string path, out CedarSchema? schema, out IReadOnlyList<string> errors)
    {
        schema = null;
        if (!TryReadText(path, "schema", out var text, out var error))
        {
            errors = [error];
            return false;
        }
        var json = LooksLikeJson(path, text);
        var ok = json ? CedarSchema.TryParseJson(text, out schema, out var schemaErrors) : CedarSchema.TryParseCedar(text, out schema, out schemaErrors);
        if (ok)
        {
            errors = [];
            return true;
        }
        errors = schemaErrors.Count == 0
            ? [$"{path}: the schema does not parse; check its {(json ? "JSON" : "Cedar")} syntax"]
            : schemaErrors.Select(e => e.Line > 0 ? $"{path}:{e.Line}:{e.Column}: {OneLine(e.Message)}" : $"{path}: {OneLine(e.Message)}").ToList();
        return false;
    }

    /// <summary>Parses an entities file (Cedar's entities JSON), shaped by the schema when one is given.</summary>
    public static bool TryLoadEntities(string path, CedarSchema? schema, out Entities? entities, out string error)
    {
        entities = null;
        if (!TryReadText(path, "entities file", out var text, out error))
        {
            return false;
        }
        if (CedarJson.TryParseEntities(text, schema, out entities, out var e))
        {
            return true;
        }
        error = $"{path}: {OneLine(e)}";
        return false;
    }

    /// <summary>Parses an entity uid written the Cedar way: <c>User::"alice"</c>, <c>Ns::Workload::"web"</c>.</summary>
    public static bool TryParseEntityUid(string text, out EntityUid? uid, out string error)
    {
        uid = null;
        if (Parser.TryParseExpression(text, out var expr, out _) && expr is LiteralExpr { Value: EntityValue ev })
        {
            uid = ev.Uid;
            error = "";
            return true;
        }
        error = $"'{Shorten(text)}' is not an entity uid; write it as Type::\"id\", e.g. User::\"alice\" (quote it for the shell)";
        return false;
    }

    /// <summary>Reads a JSON entity uid (<c>{"type": "User", "id": "alice"}</c>, or the <c>__entity</c> escape).</summary>
    public static bool TryReadEntityUid(JsonElement element, string where, out EntityUid? uid, out string error)
    {
        if (CedarJson.TryParseEntityUid(element, where, out uid, out error))
        {
            return true;
        }
        error = OneLine(error);
        return false;
    }

    /// <summary>Reads a file of template links (a JSON array, or an object with a templateLinks array) and adds them.</summary>
    public static bool TryLoadLinks(string path, PolicySet set, out PolicySet? linked, out string error)
    {
        linked = null;
        if (!TryReadText(path, "links file", out var text, out error))
        {
            return false;
        }
        try
        {
            using var doc = JsonDocument.Parse(text, new JsonDocumentOptions { MaxDepth = 64 });
            var root = doc.RootElement;
            if (root.ValueKind == JsonValueKind.Object && root.TryGetProperty("templateLinks", out var inner))
            {
                root = inner;
            }
            if (TryApplyLinks(root, set, out linked, out var e))
            {
                return true;
            }
            error = $"{path}: {OneLine(e)}";
            return false;
        }
        catch (JsonException e)
        {
            error = $"{path}: not valid JSON: {OneLine(e.Message)}";
            return false;
        }
        catch (InvalidOperationException)
        {
            error = $"{path}: a value of the wrong JSON type; each link is {{\"templateId\", \"newId\", \"values\": {{\"?principal\": {{\"type\", \"id\"}}}}}}";
            return false;
        }
    }

    /// <summary>
    /// Adds template links given as a JSON array of <c>{"templateId", "newId", "values": {"?principal": uid, "?resource": uid}}</c>
    /// (the <c>templateLinks</c> of Cedar's JSON policy format).
    /// </summary>
    public static bool TryApplyLinks(JsonElement links, PolicySet set, out PolicySet? linked, out string error)
    {
        ArgumentNullException.ThrowIfNull(set);
        linked = set;
        if (links.ValueKind != JsonValueKind.Array)
        {
            error = "template links must be a JSON array of {templateId, newId, values}";
            return false;
        }
        foreach (var link in links.EnumerateArray())
        {
            if (link.ValueKind != JsonValueKind.Object
                || !link.TryGetProperty("templateId", out var tid) || tid.ValueKind != JsonValueKind.String
                || !link.TryGetProperty("newId", out var nid) || nid.ValueKind != JsonValueKind.String
                || !link.TryGetProperty("values", out var vals) || vals.ValueKind != JsonValueKind.Object)
            {
                error = "each template link needs templateId, newId and values";
                return false;
            }
            var values = new Dictionary<SlotId, EntityUid>();
            foreach (var v in vals.EnumerateObject())
            {
                SlotId slot;
                if (v.Name == "?principal")
                {
                    slot = SlotId.Principal;
                }
                else if (v.Name == "?resource")
                {
                    slot = SlotId.Resource;
                }
                else
                {
                    error = $"unknown slot {v.Name} in a template link; use ?principal or ?resource";
                    return false;
                }
                if (!TryReadEntityUid(v.Value, v.Name, out var uid, out error))
                {
                    return false;
                }
                values[slot] = uid!;
            }
            if (!linked!.TryLink(tid.GetString()!, nid.GetString()!, values, out linked, out error))
            {
                return false;
            }
        }
        error = "";
        return true;
    }

    /// <summary>One line, no control characters (nothing in a message can move the cursor or recolour a terminal).</summary>
    public static string OneLine(string s)
    {
        var line = s.ReplaceLineEndings(" ").Trim();
        if (line.Any(char.IsControl))
        {
            line = string.Concat(line.Select(c => char.IsControl(c) ? '?' : c));
        }
        return line.Length > 400 ? line[..400] + "…" : line;
    }

    private static string Shorten(string s)
    {
        var t = OneLine(s);
        return t.Length > 80 ? t[..80] + "…" : t;
    }
}
