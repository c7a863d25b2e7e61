using System.Text.Json;
using Writ.Policy.Ast;
using Writ.Policy.Authorization;
using Writ.Policy.Evaluation;
using Writ.Policy.Schema;

namespace Writ.Policy.Json;

/// <summary>
/// Cedar's JSON formats for values, entities and contexts. Without a schema, values use the explicit escapes
/// (<c>{"__entity": {"type", "id"}}</c>, <c>{"__extn": {"fn", "arg"|"args"}}</c>); with a schema, the declared
/// attribute types direct the parse (strings become ipaddr/decimal/datetime/duration, objects become entity refs),
/// and the schema's action entities are added to the store. All failures are returned as one-line errors.
/// </summary>
public static class CedarJson
{
    private static readonly JsonDocumentOptions DocOptions = new() { MaxDepth = 128, AllowTrailingCommas = false };
    private static readonly Request DummyRequest = new(new EntityUid("__cedar::Json", ""), new EntityUid("__cedar::Json", ""), new EntityUid("__cedar::Json", ""));

    /// <summary>Parses an entities array (<c>[{"uid", "attrs", "parents", "tags"}, ...]</c>).</summary>
    public static bool TryParseEntities(string json, CedarSchema? schema, out Entities? entities, out string error)
    {
        ArgumentNullException.ThrowIfNull(json);
        try
        {
            return TryParseEntitiesCore(json, schema, out entities, out error);
        }
        catch (InvalidOperationException)
        {
            entities = null;
            error = InvalidText;
            return false;
        }
    }

    private const string InvalidText = "the JSON contains a string that is not valid Unicode (e.g. a lone surrogate escape); fix the escape";

    private static bool TryParseEntitiesCore(string json, CedarSchema? schema, out Entities? entities, out string error)
    {
        entities = null;
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(json, DocOptions);
        }
        catch (JsonException e)
        {
            error = "entities JSON is not valid JSON: " + OneLine(e.Message);
            return false;
        }

        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Array)
            {
                error = "entities JSON must be an array of entity objects";
                return false;
            }

            var list = new List<Entity>();
            var seen = new HashSet<EntityUid>();
            foreach (var el in doc.RootElement.EnumerateArray())
            {
                if (!TryParseEntity(el, schema, out var entity, out error)) return false;
                if (schema is not null && !SchemaConformance.Check(entity!, schema, out error)) return false;
                list.Add(entity!);
                seen.Add(entity!.Uid);
            }

            if (schema is not null)
            {
                foreach (var action in schema.Actions.Values)
                {
                    var uid = new EntityUid(action.Id.Type, action.Id.Id);
                    if (seen.Contains(uid)) continue;
                    list.Add(new Entity(uid, parents: action.MemberOf.Select(m => new EntityUid(m.Type, m.Id))));
                }
            }

            return Entities.TryCreate(list, out entities, out error);
        }
    }

    /// <summary>
    /// Parses a request context object. With a schema and an action, the action must be declared and the context is
    /// shaped by, and must conform to, the action's context type.
    /// </summary>
    public static bool TryParseContext(string json, CedarSchema? schema, EntityUid? action, out RecordValue? context, out string error)
    {
        ArgumentNullException.ThrowIfNull(json);
        context = null;
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(json, DocOptions);
        }
        catch (JsonException e)
        {
            error = "context JSON is not valid JSON: " + OneLine(e.Message);
            return false;
        }

        using (doc)
        {
            return TryParseContext(doc.RootElement, schema, action, out context, out error);
        }
    }

    /// <summary>Parses a context from an already-parsed JSON element.</summary>
    public static bool TryParseContext(JsonElement element, CedarSchema? schema, EntityUid? action, out RecordValue? context, out string error)
    {
        try
        {
            return TryParseContextCore(element, schema, action, out context, out error);
        }
        catch (InvalidOperationException)
        {
            context = null;
            error = InvalidText;
            return false;
        }
    }

    private static bool TryParseContextCore(JsonElement element, CedarSchema? schema, EntityUid? action, out RecordValue? context, out string error)
    {
        context = null;
        if (element.ValueKind != JsonValueKind.Object)
        {
            error = "context must be a JSON object";
            return false;
        }

        RecordType? type = null;
        if (schema is not null && action is not null)
        {
            if (!schema.Actions.TryGetValue(new ActionRef(action.Type, action.Id), out var def))
            {
                error = $"action {action} is not declared in the schema, so its context cannot be read; check the action";
                return false;
            }

            type = def.Context;
        }

        if (!TryParseValue(element, type, "context", out var v, out error)) return false;
        context = v as RecordValue;
        if (context is null)
        {
            error = "context must be a record, not an entity or extension escape";
            return false;
        }

        if (type is not null && !SchemaConformance.CheckRecord(context.Fields, type, schema!, $"the context of {action}", out error))
        {
            context = null;
            return false;
        }

        return true;
    }

    /// <summary>
    /// Parses a request: <c>{"principal": uid, "action": uid, "resource": uid, "context": {...}}</c> (context optional);
    /// with a schema the context is shaped by the action's context type.
    /// </summary>
    public static bool TryParseRequest(string json, CedarSchema? schema, out Request? request, out string error)
    {
        ArgumentNullException.ThrowIfNull(json);
        request = null;
        try
        {
            using var doc = JsonDocument.Parse(json, DocOptions);
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object
                || !root.TryGetProperty("principal", out var p) || !root.TryGetProperty("action", out var a) || !root.TryGetProperty("resource", out var r))
            {
                error = "a request must be a JSON object with principal, action and resource (and optionally context)";
                return false;
            }

            if (!TryParseEntityUidCore(p, "principal", out var principal, out error)
                || !TryParseEntityUidCore(a, "action", out var action, out error)
                || !TryParseEntityUidCore(r, "resource", out var resource, out error)) return false;
            var context = RecordValue.Empty;
            if (root.TryGetProperty("context", out var c) && !TryParseContextCore(c, schema, action, out context!, out error)) return false;
            request = new Request(principal!, action!, resource!, context);
            error = "";
            return true;
        }
        catch (JsonException e)
        {
            error = "request JSON is not valid JSON: " + OneLine(e.Message);
            return false;
        }
        catch (InvalidOperationException)
        {
            error = InvalidText;
            return false;
        }
    }

    /// <summary>Writes entities in Cedar's entities JSON format (explicit <c>__entity</c>/<c>__extn</c> escapes).</summary>
    public static string ToJson(Entities entities)
    {
        ArgumentNullException.ThrowIfNull(entities);
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartArray();
            foreach (var e in entities.All.OrderBy(e => e.Uid.Type, StringComparer.Ordinal).ThenBy(e => e.Uid.Id, StringComparer.Ordinal))
            {
                w.WriteStartObject();
                w.WritePropertyName("uid");
                WriteUid(w, e.Uid);
                w.WriteStartObject("attrs");
                foreach (var (k, v) in e.Attributes)
                {
                    w.WritePropertyName(k);
                    PolicyJson.WriteValue(w, v);
                }

                w.WriteEndObject();
                w.WriteStartArray("parents");
                foreach (var parent in e.Parents) WriteUid(w, parent);
                w.WriteEndArray();
                if (e.Tags.Count > 0)
                {
                    w.WriteStartObject("tags");
                    foreach (var (k, v) in e.Tags)
                    {
                        w.WritePropertyName(k);
                        PolicyJson.WriteValue(w, v);
                    }

                    w.WriteEndObject();
                }

                w.WriteEndObject();
            }

            w.WriteEndArray();
        }

        return System.Text.Encoding.UTF8.GetString(ms.ToArray());

        static void WriteUid(Utf8JsonWriter w, EntityUid uid)
        {
            w.WriteStartObject();
            w.WriteString("type", uid.Type);
            w.WriteString("id", uid.Id);
            w.WriteEndObject();
        }
    }

    /// <summary>Parses one value; <paramref name="expected"/> (optional) is the schema type that directs the parse.</summary>
    public static bool TryParseValue(string json, SchemaType? expected, out Value? value, out string error)
    {
        ArgumentNullException.ThrowIfNull(json);
        value = null;
        try
        {
            using var doc = JsonDocument.Parse(json, DocOptions);
            if (!TryParseValue(doc.RootElement, expected, "value", out var v, out error)) return false;
            value = v;
            return true;
        }
        catch (JsonException e)
        {
            error = "value JSON is not valid JSON: " + OneLine(e.Message);
            return false;
        }
        catch (InvalidOperationException)
        {
            error = InvalidText;
            return false;
        }
    }

    /// <summary>Parses an entity uid, either <c>{"type", "id"}</c> or <c>{"__entity": {"type", "id"}}</c>.</summary>
    public static bool TryParseEntityUid(JsonElement el, string where, out EntityUid? uid, out string error)
    {
        try
        {
            return TryParseEntityUidCore(el, where, out uid, out error);
        }
        catch (InvalidOperationException)
        {
            uid = null;
            error = InvalidText;
            return false;
        }
    }

    private static bool TryParseEntityUidCore(JsonElement el, string where, out EntityUid? uid, out string error)
    {
        uid = null;
        if (el.ValueKind == JsonValueKind.Object && el.TryGetProperty("__entity", out var inner)) el = inner;
        if (el.ValueKind != JsonValueKind.Object
            || !el.TryGetProperty("type", out var t) || t.ValueKind != JsonValueKind.String
            || !el.TryGetProperty("id", out var id) || id.ValueKind != JsonValueKind.String)
        {
            error = $"{where}: expected an entity reference {{\"type\": \"...\", \"id\": \"...\"}}";
            return false;
        }

        var type = t.GetString()!;
        if (!IsValidTypeName(type))
        {
            error = $"{where}: \"{Trim(type)}\" is not a valid entity type name (identifiers separated by ::)";
            return false;
        }

        uid = new EntityUid(type, id.GetString()!);
        error = "";
        return true;
    }

    private static bool TryParseEntity(JsonElement el, CedarSchema? schema, out Entity? entity, out string error)
    {
        entity = null;
        if (el.ValueKind != JsonValueKind.Object)
        {
            error = "each entity must be a JSON object with uid, attrs and parents";
            return false;
        }

        if (!el.TryGetProperty("uid", out var uidEl))
        {
            error = "an entity is missing its \"uid\"";
            return false;
        }

        if (!TryParseEntityUidCore(uidEl, "entity uid", out var uid, out error)) return false;
        EntityTypeDef? def = null;
        schema?.EntityTypes.TryGetValue(uid!.Type, out def);

        var attrs = new Dictionary<string, Value>(StringComparer.Ordinal);
        if (!el.TryGetProperty("attrs", out var attrsEl) || !el.TryGetProperty("parents", out var parentsEl))
        {
            error = $"entity {uid} needs both \"attrs\" and \"parents\" (use {{}} and [] when empty)";
            return false;
        }

        if (attrsEl.ValueKind != JsonValueKind.Object)
        {
            error = $"attrs of {uid} must be a JSON object";
            return false;
        }

        foreach (var p in attrsEl.EnumerateObject())
        {
            AttributeDef? ad = null;
            def?.Shape.Attributes.TryGetValue(p.Name, out ad);
            if (!TryParseValue(p.Value, ad?.Type, $"attribute {EntityUid.Quote(p.Name)} of {uid}", out var v, out error)) return false;
            if (!attrs.TryAdd(p.Name, v))
            {
                error = $"attribute {EntityUid.Quote(p.Name)} of {uid} is given twice";
                return false;
            }
        }

        var parents = new List<EntityUid>();
        if (parentsEl.ValueKind != JsonValueKind.Array)
        {
            error = $"parents of {uid} must be a JSON array of entity references";
            return false;
        }

        foreach (var p in parentsEl.EnumerateArray())
        {
            if (!TryParseEntityUidCore(p, $"parent of {uid}", out var parent, out error)) return false;
            parents.Add(parent!);
        }

        Dictionary<string, Value>? tags = null;
        if (el.TryGetProperty("tags", out var tagsEl) && tagsEl.ValueKind != JsonValueKind.Null)
        {
            if (tagsEl.ValueKind != JsonValueKind.Object)
            {
                error = $"tags of {uid} must be a JSON object";
                return false;
            }

            tags = new Dictionary<string, Value>(StringComparer.Ordinal);
            foreach (var p in tagsEl.EnumerateObject())
            {
                if (!TryParseValue(p.Value, def?.Tags, $"tag {EntityUid.Quote(p.Name)} of {uid}", out var v, out error)) return false;
                if (!tags.TryAdd(p.Name, v))
                {
                    error = $"tag {EntityUid.Quote(p.Name)} of {uid} is given twice";
                    return false;
                }
            }
        }

        entity = new Entity(uid!, attrs, parents, tags);
        error = "";
        return true;
    }

    private static bool TryParseValue(JsonElement el, SchemaType? expected, string where, out Value value, out string error)
    {
        value = BoolValue.False;
        error = "";
        switch (el.ValueKind)
        {
            case JsonValueKind.True:
                value = BoolValue.True;
                return true;
            case JsonValueKind.False:
                value = BoolValue.False;
                return true;
            case JsonValueKind.Number:
                if (!el.TryGetInt64(out var l))
                {
                    error = $"{where}: {Trim(el.GetRawText())} is not a 64-bit integer; Cedar numbers are Longs (use decimal(\"...\") for fractions)";
                    return false;
                }

                value = Value.Of(l);
                return true;
            case JsonValueKind.String:
            {
                var s = el.GetString()!;
                if (expected is ExtensionType ext)
                {
                    var fn = ext.Name == "ipaddr" ? "ip" : ext.Name;
                    return TryCallExtension(fn, [Value.Of(s)], where, out value, out error);
                }

                value = Value.Of(s);
                return true;
            }

            case JsonValueKind.Array:
            {
                var elementType = (expected as SetType)?.Element;
                var items = new List<Value>();
                foreach (var x in el.EnumerateArray())
                {
                    if (!TryParseValue(x, elementType, where, out var v, out error)) return false;
                    items.Add(v);
                }

                value = new SetValue(items);
                return true;
            }

            case JsonValueKind.Object:
            {
                if (el.TryGetProperty("__entity", out _) || (expected is EntityRefType && el.TryGetProperty("type", out _)))
                {
                    if (!TryParseEntityUidCore(el, where, out var uid, out error)) return false;
                    value = new EntityValue(uid!);
                    return true;
                }

                if (el.TryGetProperty("__extn", out var extn))
                    return TryParseExtension(extn, where, out value, out error);

                // Schema-directed, Cedar also takes the escape's body on its own: {"fn": "ip", "arg": "10.0.0.1"}.
                if (expected is ExtensionType && el.TryGetProperty("fn", out _))
                    return TryParseExtension(el, where, out value, out error);

                var record = expected as RecordType;
                var fields = new Dictionary<string, Value>(StringComparer.Ordinal);
                foreach (var p in el.EnumerateObject())
                {
                    AttributeDef? ad = null;
                    record?.Attributes.TryGetValue(p.Name, out ad);
                    if (!TryParseValue(p.Value, ad?.Type, where, out var v, out error)) return false;
                    if (!fields.TryAdd(p.Name, v))
                    {
                        error = $"{where}: record key {EntityUid.Quote(p.Name)} is given twice";
                        return false;
                    }
                }

                value = new RecordValue(fields);
                return true;
            }

            default:
                error = $"{where}: null is not a Cedar value; omit the attribute instead";
                return false;
        }
    }

    private static bool TryParseExtension(JsonElement extn, string where, out Value value, out string error)
    {
        value = BoolValue.False;
        if (extn.ValueKind != JsonValueKind.Object || !extn.TryGetProperty("fn", out var fnEl) || fnEl.ValueKind != JsonValueKind.String)
        {
            error = $"{where}: __extn must be {{\"fn\": \"name\", \"arg\": value}} or {{\"fn\": \"name\", \"args\": [values]}}";
            return false;
        }

        var args = new List<Value>();
        if (extn.TryGetProperty("arg", out var arg))
        {
            if (!TryParseValue(arg, null, where, out var v, out error)) return false;
            args.Add(v);
        }
        else if (extn.TryGetProperty("args", out var argsEl) && argsEl.ValueKind == JsonValueKind.Array)
        {
            foreach (var a in argsEl.EnumerateArray())
            {
                if (!TryParseValue(a, null, where, out var v, out error)) return false;
                args.Add(v);
            }
        }
        else
        {
            error = $"{where}: __extn needs \"arg\" or \"args\"";
            return false;
        }

        return TryCallExtension(fnEl.GetString()!, args, where, out value, out error);
    }

    private static bool TryCallExtension(string fn, List<Value> args, string where, out Value value, out string error)
    {
        value = BoolValue.False;
        var call = new ExtensionCallExpr(fn, args.Select(a => (Expr)new LiteralExpr(a)).ToList(), isMethod: args.Count > 1);
        if (!Evaluator.TryEvaluate(call, DummyRequest, Entities.Empty, out var v, out var err))
        {
            error = $"{where}: {err!.Message}";
            return false;
        }

        value = v!;
        error = "";
        return true;
    }

    private static readonly HashSet<string> ReservedNames = new(StringComparer.Ordinal)
    {
        "true", "false", "if", "then", "else", "in", "is", "like", "has", "__cedar",
    };

    private static bool IsValidTypeName(string s)
    {
        if (s.Length == 0) return false;
        foreach (var part in s.Split("::"))
        {
            if (part.Length == 0 || ReservedNames.Contains(part) || !(char.IsAsciiLetter(part[0]) || part[0] == '_')) return false;
            foreach (var c in part)
            {
                if (!(char.IsAsciiLetterOrDigit(c) || c == '_')) return false;
            }
        }

        return true;
    }

    private static string Trim(string s) => s.Length > 64 ? s[..64] + "..." : s;

    private static string OneLine(string s) => Syntax.ErrorText.OneLine(s);
}
