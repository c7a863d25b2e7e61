using Writ.Policy.Ast;
using Writ.Policy.Evaluation;

namespace Writ.Policy.Authorization;

/// <summary>
/// Cedar authorization: deny by default, any satisfied forbid overrides every permit, and a policy that errors is
/// skipped and reported in <see cref="Response.Errors"/>.
/// </summary>
public static class Authorizer
{
    public static Response IsAuthorized(Request request, PolicySet policies, Entities entities)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(policies);
        ArgumentNullException.ThrowIfNull(entities);
        var index = policies.Index;
        var evaluator = new Evaluator(request, entities);
        List<CedarPolicy>? permits = null;
        List<CedarPolicy>? forbids = null;
        List<PolicyError>? errors = null;
        foreach (var i in index.Candidates(request, entities))
        {
            var p = index.Policies[i];
            if (!ScopeMatches(p, request, entities)) continue;
            var satisfied = true;
            EvaluationError? error = null;
            foreach (var c in p.Conditions)
            {
                if (!evaluator.TryEvalBool(c.Body, out var b))
                {
                    error = evaluator.LastError;
                    break;
                }

                if (b != (c.Kind == ConditionKind.When))
                {
                    satisfied = false;
                    break;
                }
            }

            if (error is not null)
            {
                (errors ??= []).Add(new PolicyError(p.Id, error));
                continue;
            }

            if (!satisfied) continue;
            if (p.Effect == Effect.Permit) (permits ??= []).Add(p);
            else (forbids ??= []).Add(p);
        }

        var allow = forbids is null && permits is not null;
        var determining = (allow ? permits : forbids) ?? [];
        var reasons = new HashSet<string>(StringComparer.Ordinal);
        foreach (var p in determining) reasons.Add(p.Id);
        return new Response(allow ? Decision.Allow : Decision.Deny, reasons, (IReadOnlyList<PolicyError>?)errors ?? [])
        {
            DeterminingPolicies = determining,
        };
    }

    /// <summary>True if the request falls within the policy's principal, action and resource constraints.</summary>
    public static bool ScopeMatches(CedarPolicy policy, Request request, Entities entities)
    {
        ArgumentNullException.ThrowIfNull(policy);
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(entities);
        return Matches(policy.Principal, request.Principal, entities)
            && MatchesAction(policy.Action, request.Action, entities)
            && Matches(policy.Resource, request.Resource, entities);
    }

    private static bool Matches(ScopeConstraint c, EntityUid uid, Entities entities)
    {
        switch (c.Op)
        {
            case ScopeOp.Any:
                return true;
            case ScopeOp.Eq:
                return c.Entity is not null && uid.Equals(c.Entity);
            case ScopeOp.In:
                return c.Entity is not null && IsIn(uid, c.Entity, entities);
            case ScopeOp.Is:
                return string.Equals(uid.Type, c.EntityType, StringComparison.Ordinal);
            default:
                return string.Equals(uid.Type, c.EntityType, StringComparison.Ordinal) && c.Entity is not null && IsIn(uid, c.Entity, entities);
        }
    }

    private static bool MatchesAction(ActionConstraint c, EntityUid action, Entities entities)
    {
        switch (c.Op)
        {
            case ActionScopeOp.Any:
                return true;
            case ActionScopeOp.Eq:
                return action.Equals(c.Entities[0]);
            default:
                foreach (var e in c.Entities)
                {
                    if (IsIn(action, e, entities)) return true;
                }

                return false;
        }
    }

    private static bool IsIn(EntityUid uid, EntityUid ancestor, Entities entities) =>
        uid.Equals(ancestor) || (entities.TryGet(uid, out var e) && e.Ancestors.Contains(ancestor));
}
