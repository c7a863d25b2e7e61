using Writ.Policy.Ast;
using Writ.Policy.Evaluation;
using Writ.Policy.Schema;

namespace Writ.Policy.Json;

/// <summary>
/// Checks entity and context data against a schema, as Cedar does when it parses them with a schema: declared entity
/// types (and enum ids, also of referenced entities), every required attribute present, no undeclared attributes,
/// values of the declared types, parents of allowed types, tags only where the schema declares them, and actions given
/// in the data exactly as declared.
/// </summary>
internal static class SchemaConformance
{
    public static bool Check(Entity e, CedarSchema schema, out string error)
    {
        var uid = e.Uid;
        if (!schema.EntityTypes.ContainsKey(uid.Type) && schema.IsKnownEntityType(uid.Type))
        {
            if (!schema.Actions.TryGetValue(new ActionRef(uid.Type, uid.Id), out var action))
            {
                error = $"action {uid} is not declared in the schema; declare it or remove it from the entities";
                return false;
            }

            // An action given in the data must match its declaration exactly: all its ancestors, no attributes or tags.
            if (e.Attributes.Count > 0 || e.Tags.Count > 0 || !e.Parents.SetEquals(ActionAncestors(action, schema)))
            {
                error = $"definition of action {uid} does not match its schema declaration; omit it from the entities to use the schema's definition";
                return false;
            }

            error = "";
            return true;
        }

        if (!schema.EntityTypes.TryGetValue(uid.Type, out var def))
        {
            error = $"entity {uid} has type {uid.Type}, which the schema does not declare; declare the type or fix the uid";
            return false;
        }

        if (!CheckEnum(uid, schema, $"entity {uid}", out error)) return false;
        if (!CheckRecord(e.Attributes, def.Shape, schema, $"entity {uid}", out error)) return false;
        foreach (var parent in e.Parents)
        {
            if (!def.MemberOfTypes.Contains(parent.Type, StringComparer.Ordinal))
            {
                error = $"entity {uid} cannot have a parent of type {parent.Type} according to the schema; fix the parents or the schema's `in` list";
                return false;
            }

            if (!CheckEnum(parent, schema, $"parent of {uid}", out error)) return false;
        }

        if (e.Tags.Count > 0)
        {
            if (def.Tags is null)
            {
                error = $"entity {uid} has tags but the schema declares no tags for {uid.Type}; remove the tags or declare `tags T`";
                return false;
            }

            foreach (var (key, value) in e.Tags)
            {
                if (!CheckValue(value, def.Tags, schema, $"tag {EntityUid.Quote(key)} of entity {uid}", out error)) return false;
            }
        }

        error = "";
        return true;
    }

    /// <summary>Checks a record's fields (an entity's attributes, a context) against a record type; <paramref name="where"/> names the record in errors.</summary>
    internal static bool CheckRecord(IReadOnlyDictionary<string, Value> fields, RecordType type, CedarSchema schema, string where, out string error)
    {
        foreach (var (name, attr) in type.Attributes)
        {
            if (!fields.TryGetValue(name, out var value))
            {
                if (attr.Required)
                {
                    error = $"{where} is missing the required attribute {EntityUid.Quote(name)}; add it (the schema declares it as {attr.Type.ToShortCedar()})";
                    return false;
                }

                continue;
            }

            if (!CheckValue(value, attr.Type, schema, $"attribute {EntityUid.Quote(name)} of {where}", out error)) return false;
        }

        if (!type.AdditionalAttributes)
        {
            foreach (var name in fields.Keys)
            {
                if (!type.Attributes.ContainsKey(name))
                {
                    error = $"{where} has attribute {EntityUid.Quote(name)}, which the schema does not declare; remove it or declare it";
                    return false;
                }
            }
        }

        error = "";
        return true;
    }

    private static HashSet<EntityUid> ActionAncestors(ActionDef action, CedarSchema schema)
    {
        var all = new HashSet<EntityUid>();
        var work = new Stack<ActionRef>(action.MemberOf);
        while (work.Count > 0)
        {
            var a = work.Pop();
            if (!all.Add(new EntityUid(a.Type, a.Id))) continue;
            if (schema.Actions.TryGetValue(a, out var parent))
            {
                foreach (var p in parent.MemberOf) work.Push(p);
            }
        }

        return all;
    }

    private static bool CheckEnum(EntityUid uid, CedarSchema schema, string where, out string error)
    {
        if (schema.EntityTypes.TryGetValue(uid.Type, out var def) && def.EnumIds is { } ids && !ids.Contains(uid.Id, StringComparer.Ordinal))
        {
            error = $"{where}: {uid} is not one of the enumerated ids of {uid.Type}; use one of the ids the schema lists";
            return false;
        }

        error = "";
        return true;
    }

    private static bool CheckValue(Value value, SchemaType type, CedarSchema schema, string where, out string error)
    {
        error = "";
        switch (type)
        {
            case BoolType when value is BoolValue:
            case LongType when value is LongValue:
            case StringType when value is StringValue:
                return true;
            case ExtensionType ext when value is ExtensionValue ev && ev.TypeName == ext.Name:
                return true;
            case EntityRefType et when value is EntityValue e && e.Uid.Type == et.EntityType:
                return CheckEnum(e.Uid, schema, where, out error);
            case SetType st when value is SetValue set:
                foreach (var item in set.Items)
                {
                    if (!CheckValue(item, st.Element, schema, where, out error)) return false;
                }

                return true;
            case RecordType rt when value is RecordValue rec:
                return CheckRecord(rec.Fields, rt, schema, where, out error);
            default:
                error = $"{where} is not of type {type.ToShortCedar()} (it is {Describe(value)}); fix the data or the schema";
                return false;
        }
    }

    private static string Describe(Value v) => v switch
    {
        BoolValue => "a Bool",
        LongValue => "a Long",
        StringValue => "a String",
        EntityValue e => "an entity of type " + e.Uid.Type,
        SetValue => "a set",
        RecordValue => "a record",
        ExtensionValue x => "a " + x.TypeName,
        _ => "another value",
    };
}
