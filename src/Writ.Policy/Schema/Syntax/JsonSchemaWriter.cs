using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace Writ.Policy.Schema.Syntax;

/// <summary>
/// Writes a resolved schema in Cedar's JSON schema format. Common types are already inlined, so
/// entity references are written as <c>{"type": "Entity", "name": ...}</c> with the fully-qualified
/// name (unambiguous: Cedar forbids a namespaced name shadowing an empty-namespace one).
/// </summary>
internal static class JsonSchemaWriter
{
    public static string Write(CedarSchema schema)
    {
        var namespaces = new SortedDictionary<string, (List<EntityTypeDef> Entities, List<ActionDef> Actions)>(StringComparer.Ordinal);
        (List<EntityTypeDef>, List<ActionDef>) Ns(string name)
        {
            if (!namespaces.TryGetValue(name, out var v))
                namespaces[name] = v = ([], []);
            return v;
        }

        foreach (var e in schema.EntityTypes.Values)
            Ns(SchemaNames.Split(e.Name).Namespace).Item1.Add(e);
        foreach (var a in schema.Actions.Values)
            Ns(SchemaNames.Split(a.Id.Type).Namespace).Item2.Add(a);

        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            foreach (var (ns, (entities, actions)) in namespaces)
            {
                w.WriteStartObject(ns);
                w.WriteStartObject("entityTypes");
                foreach (var e in entities.OrderBy(e => e.Name, StringComparer.Ordinal))
                {
                    w.WriteStartObject(SchemaNames.Split(e.Name).Basename);
                    if (e.EnumIds is not null)
                    {
                        WriteStrings(w, "enum", e.EnumIds);
                    }
                    else
                    {
                        if (e.MemberOfTypes.Count > 0)
                            WriteStrings(w, "memberOfTypes", e.MemberOfTypes);
                        w.WritePropertyName("shape");
                        WriteType(w, e.Shape);
                        if (e.Tags is not null)
                        {
                            w.WritePropertyName("tags");
                            WriteType(w, e.Tags);
                        }
                    }

                    WriteAnnotations(w, e.Annotations);
                    w.WriteEndObject();
                }

                w.WriteEndObject();
                w.WriteStartObject("actions");
                foreach (var a in actions.OrderBy(a => a.Id.Id, StringComparer.Ordinal))
                {
                    w.WriteStartObject(a.Id.Id);
                    if (a.MemberOf.Count > 0)
                    {
                        w.WriteStartArray("memberOf");
                        foreach (var p in a.MemberOf)
                        {
                            w.WriteStartObject();
                            w.WriteString("id", p.Id);
                            w.WriteString("type", p.Type);
                            w.WriteEndObject();
                        }

                        w.WriteEndArray();
                    }

                    if (a.PrincipalTypes is not null || a.ResourceTypes is not null)
                    {
                        w.WriteStartObject("appliesTo");
                        WriteStrings(w, "principalTypes", a.PrincipalTypes ?? []);
                        WriteStrings(w, "resourceTypes", a.ResourceTypes ?? []);
                        w.WritePropertyName("context");
                        WriteType(w, a.Context);
                        w.WriteEndObject();
                    }

                    WriteAnnotations(w, a.Annotations);
                    w.WriteEndObject();
                }

                w.WriteEndObject();
                w.WriteEndObject();
            }

            w.WriteEndObject();
        }

        return Encoding.UTF8.GetString(buffer.ToArray());
    }

    private static void WriteStrings(Utf8JsonWriter w, string name, IEnumerable<string> values)
    {
        w.WriteStartArray(name);
        foreach (var v in values)
            w.WriteStringValue(v);
        w.WriteEndArray();
    }

    private static void WriteAnnotations(Utf8JsonWriter w, IReadOnlyDictionary<string, string> annotations)
    {
        if (annotations.Count == 0)
            return;
        w.WriteStartObject("annotations");
        foreach (var (k, v) in annotations.OrderBy(a => a.Key, StringComparer.Ordinal))
            w.WriteString(k, v);
        w.WriteEndObject();
    }

    private static void WriteType(Utf8JsonWriter w, SchemaType type, AttributeDef? attr = null)
    {
        w.WriteStartObject();
        switch (type)
        {
            case BoolType:
                w.WriteString("type", "Boolean");
                break;
            case LongType:
                w.WriteString("type", "Long");
                break;
            case StringType:
                w.WriteString("type", "String");
                break;
            case SetType s:
                w.WriteString("type", "Set");
                w.WritePropertyName("element");
                WriteType(w, s.Element);
                break;
            case EntityRefType e:
                w.WriteString("type", "Entity");
                w.WriteString("name", e.EntityType);
                break;
            case ExtensionType x:
                w.WriteString("type", "Extension");
                w.WriteString("name", x.Name);
                break;
            case RecordType r:
                w.WriteString("type", "Record");
                w.WriteStartObject("attributes");
                foreach (var (name, a) in r.Attributes.OrderBy(a => a.Key, StringComparer.Ordinal))
                {
                    w.WritePropertyName(name);
                    WriteType(w, a.Type, a);
                }

                w.WriteEndObject();
                if (r.AdditionalAttributes)
                    w.WriteBoolean("additionalAttributes", true);
                break;
            default:
                throw new InvalidOperationException($"Unexpected schema type {type.GetType().Name}.");
        }

        if (attr is not null)
        {
            if (!attr.Required)
                w.WriteBoolean("required", false);
            WriteAnnotations(w, attr.Annotations);
        }

        w.WriteEndObject();
    }
}
