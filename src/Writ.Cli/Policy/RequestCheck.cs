using Writ.Policy.Ast;
using Writ.Policy.Schema;

namespace Writ.Cli.Policy;

/// <summary>
/// Request validation against a schema, as Cedar does it before authorizing: the action is declared, and the
/// principal and resource types are among the ones the action applies to (enumerated types: a declared id).
/// The context's shape is checked when it is parsed against the schema.
/// </summary>
public static class RequestCheck
{
    public static bool TryCheck(CedarSchema schema, EntityUid principal, EntityUid action, EntityUid resource, out string error)
    {
        ArgumentNullException.ThrowIfNull(schema);
        ArgumentNullException.ThrowIfNull(principal);
        ArgumentNullException.ThrowIfNull(action);
        ArgumentNullException.ThrowIfNull(resource);
        if (!schema.Actions.TryGetValue(new ActionRef(action.Type, action.Id), out var def))
        {
            error = $"action {action} is not declared in the schema; declare it or fix the action";
            return false;
        }
        return TryCheckSide("principal", principal, def.PrincipalTypes, def, schema, out error)
            && TryCheckSide("resource", resource, def.ResourceTypes, def, schema, out error);
    }

    private static bool TryCheckSide(string side, EntityUid uid, IReadOnlyList<string>? allowed, ActionDef def, CedarSchema schema, out string error)
    {
        if (allowed is null || !allowed.Contains(uid.Type, StringComparer.Ordinal))
        {
            var list = allowed is null || allowed.Count == 0 ? "none (the action has no appliesTo)" : string.Join(", ", allowed);
            error = $"{side} type {uid.Type} is not one the action {def.Id} applies to (allowed: {list}); fix the {side} or the schema's appliesTo";
            return false;
        }
        if (schema.EntityTypes.TryGetValue(uid.Type, out var type) && type.EnumIds is { } ids && !ids.Contains(uid.Id, StringComparer.Ordinal))
        {
            error = $"{side} {uid} is not one of the enumerated ids of {uid.Type}; use one of: {string.Join(", ", ids)}";
            return false;
        }
        error = "";
        return true;
    }
}
