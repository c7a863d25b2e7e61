using Writ.Policy.Ast;
using Writ.Policy.Evaluation;
using Writ.Policy.Schema;

namespace Writ.Policy.Json;

/// <summary>
/// Checks entity and context data against a schema, as Cedar does when it parses them with a schema: declared entity
/// types (and enum ids), every required attribute present, no undeclared attributes, values of the declared types,
/// parents of allowed types and tags only where the schema declares them.
/// </summary>
internal static class SchemaConformance
{
    public static bool TryCheckEntity(Entity entity, CedarSchema schema, out string error)
    {
        var uid = entity.Uid;
        if (schema.ActionEntityTypes.Contains(uid.Type))
        {
            if (!schema.Actions.ContainsKey(new ActionRef(uid.Type, uid.Id)))
            {
                error = $"entity {uid} is an action the schema does not declare; declare it in the schema or remove it from the data";
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

        if (!TryCheckEnum(uid, schema, $"entity {uid}", out error)) return false;
        if (!TryCheckRecord(entity.Attributes, def.Shape, schema, $"entity {uid}", out error)) return false;
        foreach (var parent in entity.Parents)
        {
            if (!def.MemberOfTypes.Contains(parent.Type, StringComparer.Ordinal))
            {
                error = $"entity {uid} has parent {parent}, but the schema does not let {uid.Type} be a member of {parent.Type}; fix the parents or the schema's `in` list";
                return false;
            }

            if (!TryCheckEnum(parent, schema, $"parent of {uid}", out error)) return false;
        }

        if (entity.Tags.Count > 0)
        {
            if (def.Tags is null)
            {
                error = $"entity {uid} has tags, but the schema declares no tags for {uid.Type}; remove the tags or declare `tags T`";
                return false;
            }

            foreach (var (key, value) in entity.Tags)
            {
                if (!TryCheckValue(value, def.Tags, schema, $"tag {EntityUid.Quote(key)} of {uid}", out error)) return false;
            }
        }

        error = "";
        return true;
    }

    public static bool TryCheckContext(RecordValue context, RecordType type, CedarSchema schema, EntityUid action, out string error) =>
        TryCheckRecord(context.Fields, type, schema, $"context of {action}", out error);

    private static bool TryCheckEnum(EntityUid uid, CedarSchema schema, string where, out string error)
    {
        if (schema.EntityTypes.TryGetValue(uid.Type, out var def) && def.EnumIds is { } ids && !ids.Contains(uid.Id, StringComparer.Ordinal))
        {
            error = $"{where}: {uid} is not one of the ids the schema allows for enumerated type {uid.Type}; use one of them";
            return false;
        }

        error = "";
        return true;
    }

    private static bool TryCheckRecord(IReadOnlyDictionary<string, Value> fields, RecordType type, CedarSchema schema, string where, out string error)
    {
        foreach (var (name, attr) in type.Attributes)
        {
            if (attr.Required && !fields.ContainsKey(name))
            {
                error = $"{where}: required attribute {EntityUid.Quote(name)} is missing; add it (the schema declares it as {attr.Type.ToCedar()})";
                return false;
            }
        }

        foreach (var (name, value) in fields)
        {
            if (!type.Attributes.TryGetValue(name, out var attr))
            {
                if (type.AdditionalAttributes) continue;
                error = $"{where}: attribute {EntityUid.Quote(name)} is not declared in the schema; remove it or declare it";
                return false;
            }

            if (!TryCheckValue(value, attr.Type, schema, $"{where}, attribute {EntityUid.Quote(name)}", out error)) return false;
        }

        error = "";
        return true;
    }

    private static bool TryCheckValue(Value value, SchemaType type, CedarSchema schema, string where, out string error)
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
                return TryCheckEnum(e.Uid, schema, where, out error);
            case SetType st when value is SetValue set:
                foreach (var item in set.Items)
                {
                    if (!TryCheckValue(item, st.Element, schema, where, out error)) return false;
                }

                return true;
            case RecordType rt when value is RecordValue rec:
                return TryCheckRecord(rec.Fields, rt, schema, where, out error);
            default:
                error = $"{where}: expected a value of type {type.ToCedar()} but got {Describe(value)}; fix the data or the schema";
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
