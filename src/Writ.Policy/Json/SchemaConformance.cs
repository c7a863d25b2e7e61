using Writ.Policy.Ast;
using Writ.Policy.Evaluation;
using Writ.Policy.Extensions;
using Writ.Policy.Schema;

namespace Writ.Policy.Json;

/// <summary>Checks that entity data conforms to a schema (declared type, attributes, parents, tags), as Cedar does when entities are loaded with a schema.</summary>
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
            error = $"entity {uid} has type {uid.Type}, which the schema does not declare";
            return false;
        }

        if (def.EnumIds is { } ids && !ids.Contains(uid.Id))
        {
            error = $"entity {uid} is not one of the enumerated ids of {uid.Type}";
            return false;
        }

        if (!CheckRecord(e.Attributes, def.Shape, $"entity {uid}", out error)) return false;
        foreach (var p in e.Parents)
        {
            if (!def.MemberOfTypes.Contains(p.Type))
            {
                error = $"entity {uid} cannot have a parent of type {p.Type} according to the schema";
                return false;
            }
        }

        if (e.Tags.Count > 0)
        {
            if (def.Tags is null)
            {
                error = $"entity {uid} has tags but the schema declares no tags for {uid.Type}";
                return false;
            }

            foreach (var (k, v) in e.Tags)
            {
                if (!Conforms(v, def.Tags))
                {
                    error = $"tag {EntityUid.Quote(k)} of entity {uid} is not of type {def.Tags.ToCedar()}";
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

    internal static bool CheckRecord(IReadOnlyDictionary<string, Value> fields, RecordType type, string where, out string error)
    {
        foreach (var (name, attr) in type.Attributes)
        {
            if (!fields.TryGetValue(name, out var v))
            {
                if (attr.Required)
                {
                    error = $"{where} is missing the required attribute {EntityUid.Quote(name)}";
                    return false;
                }

                continue;
            }

            if (!Conforms(v, attr.Type))
            {
                error = $"attribute {EntityUid.Quote(name)} of {where} is not of type {attr.Type.ToCedar()}";
                return false;
            }
        }

        if (!type.AdditionalAttributes)
        {
            foreach (var name in fields.Keys)
            {
                if (!type.Attributes.ContainsKey(name))
                {
                    error = $"{where} has attribute {EntityUid.Quote(name)}, which the schema does not declare";
                    return false;
                }
            }
        }

        error = "";
        return true;
    }

    private static bool Conforms(Value v, SchemaType t) => t switch
    {
        BoolType => v is BoolValue,
        LongType => v is LongValue,
        StringType => v is StringValue,
        EntityRefType e => v is EntityValue ev && ev.Uid.Type == e.EntityType,
        SetType s => v is SetValue set && set.Items.All(x => Conforms(x, s.Element)),
        RecordType r => v is RecordValue rv && CheckRecord(rv.Fields, r, "record", out _),
        ExtensionType x => x.Name switch
        {
            "ipaddr" => v is IpAddrValue,
            "decimal" => v is DecimalValue,
            "datetime" => v is DatetimeValue,
            "duration" => v is DurationValue,
            _ => false,
        },
        _ => false,
    };
}
