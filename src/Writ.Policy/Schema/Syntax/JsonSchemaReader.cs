using System.Text.Json;

namespace Writ.Policy.Schema.Syntax;

/// <summary>
/// Reads Cedar's JSON schema format into raw declarations (<see cref="SchemaResolver"/> then resolves
/// names exactly as for the Cedar syntax). Unknown or duplicate keys are errors, as in Cedar.
/// </summary>
internal sealed class JsonSchemaReader
{
    private readonly List<SchemaError> _errors = [];

    private JsonSchemaReader()
    {
    }

    public static bool TryRead(string json, out List<RawNamespace>? namespaces, out IReadOnlyList<SchemaError> errors)
    {
        namespaces = null;
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(json, new JsonDocumentOptions { MaxDepth = 2 * CedarSchemaParser.MaxTypeDepth + 8 });
        }
        catch (JsonException e)
        {
            var line = e.LineNumber is { } l ? (int)l + 1 : 0;
            var col = e.BytePositionInLine is { } c ? (int)c + 1 : 0;
            errors = [new SchemaError($"the schema is not valid JSON or nests more than {2 * CedarSchemaParser.MaxTypeDepth + 8} levels; fix the JSON", line, col)];
            return false;
        }

        using (doc)
        {
            var reader = new JsonSchemaReader();
            namespaces = reader.ReadSchema(doc.RootElement);
            errors = reader._errors;
            if (reader._errors.Count > 0)
                namespaces = null;
            return namespaces is not null;
        }
    }

    private void Error(string message) => _errors.Add(new SchemaError(SchemaNames.OneLine(message), 0, 0));

    /// <summary>The object's properties, reporting duplicates and keys outside <paramref name="allowed"/>.</summary>
    private List<JsonProperty>? Properties(JsonElement obj, string where, params string[]? allowed)
    {
        if (obj.ValueKind != JsonValueKind.Object)
        {
            Error($"{where} must be a JSON object, not {obj.ValueKind.ToString().ToLowerInvariant()}; fix the schema JSON");
            return null;
        }

        var seen = new HashSet<string>(StringComparer.Ordinal);
        var list = new List<JsonProperty>();
        foreach (var p in obj.EnumerateObject())
        {
            if (!seen.Add(p.Name))
            {
                Error($"{where} has the key \"{p.Name}\" twice; keep one");
                return null;
            }

            if (allowed is { Length: > 0 } && !allowed.Contains(p.Name))
            {
                Error($"{where} has the unknown key \"{p.Name}\"; allowed keys are {string.Join(", ", allowed.Select(a => $"\"{a}\""))}");
                return null;
            }

            list.Add(p);
        }

        return list;
    }

    private string? ReadString(JsonElement e, string where)
    {
        if (e.ValueKind == JsonValueKind.String)
            return e.GetString();
        Error($"{where} must be a JSON string; fix the schema JSON");
        return null;
    }

    private List<string>? ReadStringArray(JsonElement e, string where)
    {
        if (e.ValueKind != JsonValueKind.Array)
        {
            Error($"{where} must be a JSON array of strings; fix the schema JSON");
            return null;
        }

        var list = new List<string>();
        foreach (var item in e.EnumerateArray())
        {
            var s = ReadString(item, $"each element of {where}");
            if (s is null)
                return null;
            list.Add(s);
        }

        return list;
    }

    private Dictionary<string, string> ReadAnnotations(JsonElement? e, string where)
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        if (e is not { } obj)
            return result;
        var props = Properties(obj, $"the annotations of {where}");
        if (props is null)
            return result;
        foreach (var p in props)
        {
            if (!SchemaNames.IsIdentifier(p.Name))
            {
                Error($"annotation name \"{p.Name}\" on {where} is not an identifier; use letters, digits and `_`");
                continue;
            }

            var v = p.Value.ValueKind == JsonValueKind.Null ? string.Empty : ReadString(p.Value, $"annotation \"{p.Name}\" on {where}");
            if (v is not null)
                result[p.Name] = v;
        }

        return result;
    }

    private static JsonElement? Get(List<JsonProperty> props, string name)
    {
        foreach (var p in props)
        {
            if (p.Name == name)
                return p.Value;
        }

        return null;
    }

    private List<RawNamespace>? ReadSchema(JsonElement root)
    {
        var props = Properties(root, "the schema");
        if (props is null)
            return null;
        var result = new List<RawNamespace>();
        foreach (var nsProp in props)
        {
            var nsName = nsProp.Name;
            var where = nsName.Length == 0 ? "the empty namespace" : $"namespace \"{nsName}\"";
            var nsProps = Properties(nsProp.Value, where, "commonTypes", "entityTypes", "actions", "annotations");
            if (nsProps is null)
                continue;
            if (Get(nsProps, "entityTypes") is null || Get(nsProps, "actions") is null)
            {
                Error($"{where} must have both \"entityTypes\" and \"actions\" (use {{}} for none); add the missing key");
                continue;
            }

            var ns = new RawNamespace(nsName, SourcePos.None);
            foreach (var (k, v) in ReadAnnotations(Get(nsProps, "annotations"), where))
                ns.Annotations[k] = v;

            if (Get(nsProps, "commonTypes") is { } commons && Properties(commons, $"\"commonTypes\" of {where}") is { } commonProps)
            {
                foreach (var c in commonProps)
                {
                    var t = ReadType(c.Value, $"common type \"{c.Name}\"", allowRequired: false);
                    if (t is not null)
                        ns.CommonTypes.Add(new RawCommonTypeDecl(new RawName(c.Name, SourcePos.None), t, ReadAnnotationsOf(c.Value, $"common type \"{c.Name}\"")));
                }
            }

            if (Get(nsProps, "entityTypes") is { } entities && Properties(entities, $"\"entityTypes\" of {where}") is { } entityProps)
            {
                foreach (var e in entityProps)
                    ReadEntity(ns, e.Name, e.Value);
            }

            if (Get(nsProps, "actions") is { } actions && Properties(actions, $"\"actions\" of {where}") is { } actionProps)
            {
                foreach (var a in actionProps)
                    ReadAction(ns, a.Name, a.Value);
            }

            result.Add(ns);
        }

        return result;
    }

    private Dictionary<string, string> ReadAnnotationsOf(JsonElement typeObj, string where) =>
        typeObj.ValueKind == JsonValueKind.Object && typeObj.TryGetProperty("annotations", out var a)
            ? ReadAnnotations(a, where)
            : new Dictionary<string, string>(StringComparer.Ordinal);

    private void ReadEntity(RawNamespace ns, string name, JsonElement value)
    {
        var where = $"entity type \"{name}\"";
        var props = Properties(value, where, "memberOfTypes", "shape", "tags", "enum", "annotations");
        if (props is null)
            return;
        var memberOf = new List<RawName>();
        if (Get(props, "memberOfTypes") is { } m)
        {
            var list = ReadStringArray(m, $"\"memberOfTypes\" of {where}");
            if (list is null)
                return;
            memberOf.AddRange(list.Select(s => new RawName(s, SourcePos.None)));
        }

        RawType? shape = null;
        if (Get(props, "shape") is { } sh)
        {
            shape = ReadType(sh, $"the shape of {where}", allowRequired: false);
            if (shape is null)
                return;
        }

        RawType? tags = null;
        if (Get(props, "tags") is { } tg)
        {
            tags = ReadType(tg, $"the tags of {where}", allowRequired: false);
            if (tags is null)
                return;
        }

        List<string>? enumIds = null;
        if (Get(props, "enum") is { } en)
        {
            enumIds = ReadStringArray(en, $"\"enum\" of {where}");
            if (enumIds is null)
                return;
            if (Get(props, "memberOfTypes") is not null || shape is not null || tags is not null)
            {
                Error($"enumerated {where} cannot also have \"memberOfTypes\", \"shape\" or \"tags\"; remove them or drop \"enum\"");
                return;
            }
        }

        ns.EntityTypes.Add(new RawEntityDecl(new RawName(name, SourcePos.None), memberOf, shape, tags, enumIds, ReadAnnotations(Get(props, "annotations"), where)));
    }

    private void ReadAction(RawNamespace ns, string name, JsonElement value)
    {
        var where = $"action \"{name}\"";
        var props = Properties(value, where, "memberOf", "appliesTo", "attributes", "annotations");
        if (props is null)
            return;
        if (Get(props, "attributes") is not null)
        {
            Error($"{where} declares \"attributes\"; action attributes are not supported by Cedar 4; remove them");
            return;
        }

        var parents = new List<RawActionParent>();
        if (Get(props, "memberOf") is { } m)
        {
            if (m.ValueKind != JsonValueKind.Array)
            {
                Error($"\"memberOf\" of {where} must be an array of {{\"id\": ..., \"type\": ...}} objects; fix the schema JSON");
                return;
            }

            foreach (var item in m.EnumerateArray())
            {
                var ip = Properties(item, $"an element of \"memberOf\" of {where}", "id", "type");
                if (ip is null)
                    return;
                var id = Get(ip, "id") is { } idEl ? ReadString(idEl, $"\"id\" in \"memberOf\" of {where}") : null;
                if (id is null)
                {
                    if (Get(ip, "id") is null)
                        Error($"an element of \"memberOf\" of {where} has no \"id\"; add the parent action's id");
                    return;
                }

                string? type = null;
                if (Get(ip, "type") is { } tEl && (type = ReadString(tEl, $"\"type\" in \"memberOf\" of {where}")) is null)
                    return;
                parents.Add(new RawActionParent(type, id, SourcePos.None));
            }
        }

        List<RawName>? principals = null, resources = null;
        RawType? context = null;
        if (Get(props, "appliesTo") is { } applies && applies.ValueKind != JsonValueKind.Null)
        {
            var ap = Properties(applies, $"\"appliesTo\" of {where}", "principalTypes", "resourceTypes", "context");
            if (ap is null)
                return;
            if (Get(ap, "principalTypes") is not { } pt || Get(ap, "resourceTypes") is not { } rt)
            {
                Error($"\"appliesTo\" of {where} must have both \"principalTypes\" and \"resourceTypes\" (use [] for none); add the missing key");
                return;
            }

            var pl = ReadStringArray(pt, $"\"principalTypes\" of {where}");
            var rl = ReadStringArray(rt, $"\"resourceTypes\" of {where}");
            if (pl is null || rl is null)
                return;
            principals = pl.Select(s => new RawName(s, SourcePos.None)).ToList();
            resources = rl.Select(s => new RawName(s, SourcePos.None)).ToList();
            if (Get(ap, "context") is { } ctx)
            {
                context = ReadType(ctx, $"the context of {where}", allowRequired: false);
                if (context is null)
                    return;
            }
        }

        ns.Actions.Add(new RawActionDecl(name, SourcePos.None, parents, principals, resources, context, ReadAnnotations(Get(props, "annotations"), where)));
    }

    private RawType? ReadType(JsonElement e, string where, bool allowRequired)
    {
        var props = Properties(e, where);
        if (props is null)
            return null;
        if (Get(props, "type") is not { } typeEl)
        {
            Error($"{where} has no \"type\" key; add one, e.g. \"type\": \"String\"");
            return null;
        }

        var kind = ReadString(typeEl, $"\"type\" of {where}");
        if (kind is null)
            return null;

        string[] allowed = kind switch
        {
            "Set" => ["type", "element"],
            "Record" => ["type", "attributes", "additionalAttributes"],
            "Entity" or "Extension" or "EntityOrCommon" => ["type", "name"],
            _ => ["type"],
        };
        foreach (var p in props)
        {
            if (!allowed.Contains(p.Name) && p.Name != "annotations" && !(allowRequired && p.Name == "required"))
            {
                Error($"{where} (type \"{kind}\") has the unexpected key \"{p.Name}\"; remove it");
                return null;
            }
        }

        switch (kind)
        {
            case "Long":
                return new RawBuiltinType(LongType.Instance, SourcePos.None);
            case "String":
                return new RawBuiltinType(StringType.Instance, SourcePos.None);
            case "Boolean":
                return new RawBuiltinType(BoolType.Instance, SourcePos.None);
            case "Set":
                if (Get(props, "element") is not { } el)
                {
                    Error($"{where} is a Set without \"element\"; add the element type");
                    return null;
                }

                var element = ReadType(el, $"the element type of {where}", allowRequired: false);
                return element is null ? null : new RawSetType(element, SourcePos.None);
            case "Record":
                return ReadRecord(props, where);
            case "Entity":
            case "Extension":
            case "EntityOrCommon":
                if (Get(props, "name") is not { } nameEl)
                {
                    Error($"{where} (type \"{kind}\") has no \"name\"; add the type name");
                    return null;
                }

                var name = ReadString(nameEl, $"\"name\" of {where}");
                if (name is null)
                    return null;
                if (kind == "Extension")
                {
                    if (ExtensionType.KnownNames.Contains(name))
                        return new RawBuiltinType(new ExtensionType(name), SourcePos.None);
                    Error($"{where} names the unknown extension type \"{name}\"; use one of {string.Join(", ", ExtensionType.KnownNames)}");
                    return null;
                }

                return new RawNamedType(name, kind == "Entity" ? RefKind.Entity : RefKind.CommonOrEntity, SourcePos.None);
            default:
                return new RawNamedType(kind, RefKind.CommonOrEntity, SourcePos.None);
        }
    }

    private RawRecordType? ReadRecord(List<JsonProperty> props, string where)
    {
        var additional = false;
        if (Get(props, "additionalAttributes") is { } add)
        {
            if (add.ValueKind is not (JsonValueKind.True or JsonValueKind.False))
            {
                Error($"\"additionalAttributes\" of {where} must be true or false; fix the schema JSON");
                return null;
            }

            additional = add.GetBoolean();
            if (additional)
            {
                Error($"{where} sets \"additionalAttributes\": true, an experimental Cedar feature Writ does not enable; declare every attribute instead");
                return null;
            }
        }

        var attrs = new List<RawAttribute>();
        if (Get(props, "attributes") is { } attrsEl)
        {
            var aps = Properties(attrsEl, $"\"attributes\" of {where}");
            if (aps is null)
                return null;
            foreach (var a in aps)
            {
                var aWhere = $"attribute \"{a.Name}\" of {where}";
                var t = ReadType(a.Value, aWhere, allowRequired: true);
                if (t is null)
                    return null;
                var required = true;
                if (a.Value.TryGetProperty("required", out var req))
                {
                    if (req.ValueKind is not (JsonValueKind.True or JsonValueKind.False))
                    {
                        Error($"\"required\" of {aWhere} must be true or false; fix the schema JSON");
                        return null;
                    }

                    required = req.GetBoolean();
                }

                attrs.Add(new RawAttribute(a.Name, t, required, ReadAnnotationsOf(a.Value, aWhere), SourcePos.None));
            }
        }

        return new RawRecordType(attrs, additional, SourcePos.None);
    }
}
