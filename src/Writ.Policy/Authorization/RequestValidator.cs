using Writ.Policy.Ast;
using Writ.Policy.Json;
using Writ.Policy.Schema;

namespace Writ.Policy.Authorization;

/// <summary>
/// Checks a request against a schema as Cedar does before authorizing with request validation on: the action is
/// declared, the principal and resource types are ones the action applies to, and the context has the action's
/// context type.
/// </summary>
public static class RequestValidator
{
    public static bool TryValidate(Request request, CedarSchema schema, out string error)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(schema);
        if (!schema.Actions.TryGetValue(new ActionRef(request.Action.Type, request.Action.Id), out var action))
        {
            error = $"the request's action {request.Action} is not declared in the schema";
            return false;
        }

        if (!CheckEntity(request.Principal, "principal", action.PrincipalTypes, schema, out error)) return false;
        if (!CheckEntity(request.Resource, "resource", action.ResourceTypes, schema, out error)) return false;
        if (!SchemaConformance.CheckRecord(request.Context.Fields, action.Context, schema, $"the context of {request.Action}", out error))
        {
            error = "request context does not match the schema: " + error;
            return false;
        }

        error = "";
        return true;
    }

    private static bool CheckEntity(EntityUid uid, string role, IReadOnlyList<string>? allowed, CedarSchema schema, out string error)
    {
        if (!schema.EntityTypes.TryGetValue(uid.Type, out var def))
        {
            error = $"the request's {role} {uid} has type {uid.Type}, which the schema does not declare";
            return false;
        }

        if (def.EnumIds is { } ids && !ids.Contains(uid.Id))
        {
            error = $"the request's {role} {uid} is not one of the enumerated ids of {uid.Type}";
            return false;
        }

        if (allowed is null || !allowed.Contains(uid.Type))
        {
            error = $"the action does not apply to a {role} of type {uid.Type} according to the schema";
            return false;
        }

        error = "";
        return true;
    }
}
