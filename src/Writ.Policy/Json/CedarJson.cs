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
    /// shaped by, and must conform to, the action's context type (Cedar's request validation).
    /// </summary>
    public static bool TryParseContext(string json, CedarSchema? schema, EntityUid? action, out RecordValue? context, out string error) =>
        TryParseContext(json, schema, action, validate: true, out context, out error);

    /// <summary>
    /// Parses a request context object. With a schema and an action, the action must be declared and the schema shapes
    /// the parse as Cedar's does: strings and <c>{fn, arg}</c> objects become the declared extension values, objects the
    /// declared entity references, declared records must have their required attributes and no undeclared ones, declared
    /// sets must be arrays. With <paramref name="validate"/> (Cedar's <c>validateRequest</c>) every value must also have
    /// its declared type; without it a value of another type is kept as given (<c>{"n": "x"}</c> for a Long <c>n</c>), as
    /// the reference engine decides such requests.
    /// </summary>
    public static bool TryParseContext(string json, CedarSchema? schema, EntityUid? action, bool validate, out RecordValue? context, out string error)
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
            return TryParseContext(doc.RootElement, schema, action, validate, out context, out error);
        }
    }

    /// <summary>Parses a context from an already-parsed JSON element (validated against the schema, as with validateRequest).</summary>
    public static bool TryParseContext(JsonElement element, CedarSchema? schema, EntityUid? action, out RecordValue? context, out string error) =>
        TryParseContext(element, schema, action, validate: true, out context, out error);

    /// <summary>Parses a context from an already-parsed JSON element; <paramref name="validate"/> as in the string overload.</summary>
    public static bool TryParseContext(JsonElement element, CedarSchema? schema, EntityUid? action, bool validate, out RecordValue? context, out string error)
    {
        try
        {
            return TryParseContextCore(element, schema, action, validate, out context, out error);
        }
        catch (InvalidOperationException)
        {
            context = null;
            error = InvalidText;
            return false;
        }
    }

    private static bool TryParseContextCore(JsonElement element, CedarSchema? schema, EntityUid? action, bool validate, out RecordValue? context, out string error)
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

        if (!TryParseValue(element, type, type is null ? "context" : $"the context of {action}", out var v, out error)) return false;
        context = v as RecordValue;
        if (context is null)
        {
            error = "context must be a record, not an entity or extension escape";
            return false;
        }

        if (validate && type is not null && !SchemaConformance.CheckRecord(context.Fields, type, schema!, $"the context of {action}", out error))
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
            if (root.TryGetProperty("context", out var c) && !TryParseContextCore(c, schema, action, validate: true, out context!, out error)) return false;
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
        if (el.ValueKind == JsonValueKind.Object && el.TryGetProperty("__entity", out var inner)) el = inner;
        return TryReadTypeAndId(el, where, out uid, out error);
    }

    private static bool TryReadTypeAndId(JsonElement el, string where, out EntityUid? uid, out string error)
    {
        uid = null;
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

    /// <summary>
    /// Parses one value. <paramref name="expected"/> (a schema type, optional) directs the parse as Cedar's own parser
    /// does, whatever checking follows: an extension type reads a string (or <c>{fn, arg}</c>) with its constructor and
    /// refuses other values, an entity type reads <c>{type, id}</c> and refuses other values, a record type needs an
    /// object with its required attributes and no undeclared ones, a set type needs an array. Whether a primitive value
    /// has its declared type is left to <see cref="SchemaConformance"/>.
    /// </summary>
    private static bool TryParseValue(JsonElement el, SchemaType? expected, string where, out Value value, out string error)
    {
        switch (expected)
        {
            case ExtensionType ext:
                return TryParseExpectedExtension(el, ext, where, out value, out error);
            case EntityRefType:
                return TryParseExpectedEntity(el, where, out value, out error);
            case SetType when el.ValueKind != JsonValueKind.Array:
            case RecordType when el.ValueKind != JsonValueKind.Object:
                value = BoolValue.False;
                error = $"{where}: expected {expected.ToShortCedar()}, got {Kind(el)}; fix the data or the schema";
                return false;
        }

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
                value = Value.Of(el.GetString()!);
                return true;
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
                if (expected is RecordType record) return TryParseRecord(el, record, where, out value, out error);
                // An escape that is not well-formed is an error (a deliberate difference: Cedar reads it as a record, which
                // would hide a typo in an entity reference; see docs/policy-engine.md).
                if (el.TryGetProperty("__entity", out var inner))
                {
                    if (!TryReadTypeAndId(inner, where, out var uid, out error)) return false;
                    value = new EntityValue(uid!);
                    return true;
                }

                if (el.TryGetProperty("__extn", out var extn))
                {
                    if (!IsFnAndArgs(extn))
                    {
                        error = $"{where}: __extn must be {{\"fn\": \"name\", \"arg\": value}} or {{\"fn\": \"name\", \"args\": [values]}}";
                        return false;
                    }

                    return TryParseExtension(extn, where, out value, out error);
                }

                return TryParseRecord(el, null, where, out value, out error);
            }

            default:
                error = $"{where}: null is not a Cedar value; omit the attribute instead";
                return false;
        }
    }

    /// <summary>Where the schema declares an extension type: a string for its constructor, an escape, or a refusal.</summary>
    private static bool TryParseExpectedExtension(JsonElement el, ExtensionType ext, string where, out Value value, out string error)
    {
        if (el.ValueKind == JsonValueKind.String)
        {
            return TryCallExtension(ext.Name == "ipaddr" ? "ip" : ext.Name, [Value.Of(el.GetString()!)], where, out value, out error);
        }

        if (el.ValueKind == JsonValueKind.Object)
        {
            // {"__extn": {"fn", "arg"}} or, schema-directed, the escape's body on its own: {"fn": "ip", "arg": "10.0.0.1"}.
            if (el.TryGetProperty("__extn", out var extn) && IsFnAndArgs(extn)) return TryParseExtension(extn, where, out value, out error);
            if (IsFnAndArgs(el)) return TryParseExtension(el, where, out value, out error);
        }

        // Cedar passes any other value to the type's constructor, which takes only a string.
        value = BoolValue.False;
        error = $"{where}: expected {ext.Name} (a string such as \"{ExampleLiteral(ext.Name)}\" or an __extn escape), got {Kind(el)}; fix the data or the schema";
        return false;
    }

    /// <summary>Where the schema declares an entity type: <c>{"__entity": {type, id}}</c> or <c>{type, id}</c>, nothing else.</summary>
    private static bool TryParseExpectedEntity(JsonElement el, string where, out Value value, out string error)
    {
        value = BoolValue.False;
        JsonElement uidEl = default;
        if (el.ValueKind == JsonValueKind.Object && el.TryGetProperty("__entity", out var inner) && IsTypeAndId(inner)) uidEl = inner;
        else if (IsTypeAndId(el)) uidEl = el;
        else
        {
            error = $"{where}: expected an entity reference {{\"type\": \"...\", \"id\": \"...\"}}, got {Kind(el)}; fix the data or the schema";
            return false;
        }

        if (!TryReadTypeAndId(uidEl, where, out var uid, out error)) return false;
        value = new EntityValue(uid!);
        return true;
    }

    /// <summary>A JSON object read as a record; with a record type, its required attributes must be there and no others.</summary>
    private static bool TryParseRecord(JsonElement el, RecordType? type, string where, out Value value, out string error)
    {
        value = BoolValue.False;
        var fields = new Dictionary<string, Value>(StringComparer.Ordinal);
        foreach (var p in el.EnumerateObject())
        {
            if (type is null && p.Value.ValueKind == JsonValueKind.String && p.NameEquals("__expr"))
            {
                error = $"{where}: the __expr escape is no longer supported; write entities as {{\"__entity\": ...}} and extension values as {{\"__extn\": ...}}";
                return false;
            }

            AttributeDef? ad = null;
            if (type is not null && !type.Attributes.TryGetValue(p.Name, out ad) && !type.AdditionalAttributes)
            {
                error = $"{where}: the record has attribute {EntityUid.Quote(p.Name)}, which the schema does not declare; remove it or declare it";
                return false;
            }

            if (!TryParseValue(p.Value, ad?.Type, where, out var v, out error)) return false;
            if (!fields.TryAdd(p.Name, v))
            {
                error = $"{where}: record key {EntityUid.Quote(p.Name)} is given twice";
                return false;
            }
        }

        if (type is not null)
        {
            foreach (var (name, attr) in type.Attributes)
            {
                if (attr.Required && !fields.ContainsKey(name))
                {
                    error = $"{where}: the record is missing the required attribute {EntityUid.Quote(name)}; add it (the schema declares it as {attr.Type.ToShortCedar()})";
                    return false;
                }
            }
        }

        value = new RecordValue(fields);
        error = "";
        return true;
    }

    private static bool IsTypeAndId(JsonElement e) =>
        e.ValueKind == JsonValueKind.Object
        && e.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String
        && e.TryGetProperty("id", out var id) && id.ValueKind == JsonValueKind.String;

    private static bool IsFnAndArgs(JsonElement e) =>
        e.ValueKind == JsonValueKind.Object
        && e.TryGetProperty("fn", out var fn) && fn.ValueKind == JsonValueKind.String
        && (e.TryGetProperty("arg", out _) || (e.TryGetProperty("args", out var args) && args.ValueKind == JsonValueKind.Array));

    private static string Kind(JsonElement el) => el.ValueKind switch
    {
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        JsonValueKind.Array => "an array",
        JsonValueKind.Object when el.TryGetProperty("__entity", out _) => "an entity",
        JsonValueKind.Object when el.TryGetProperty("__extn", out _) => "an extension value",
        JsonValueKind.Object => "an object",
        _ => "null",
    };

    private static string ExampleLiteral(string ext) => ext switch
    {
        "ipaddr" => "10.0.0.1",
        "decimal" => "1.25",
        "datetime" => "2024-01-01T00:00:00Z",
        "duration" => "1h30m",
        _ => "...",
    };

    private static bool TryParseExtension(JsonElement extn, string where, out Value value, out string error)
    {
        value = BoolValue.False;
        var fnEl = extn.GetProperty("fn");
        var args = new List<Value>();
        if (extn.TryGetProperty("arg", out var arg))
        {
            if (!TryParseValue(arg, null, where, out var v, out error)) return false;
            args.Add(v);
        }
        else
        {
            foreach (var a in extn.GetProperty("args").EnumerateArray())
            {
                if (!TryParseValue(a, null, where, out var v, out error)) return false;
                args.Add(v);
            }
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
