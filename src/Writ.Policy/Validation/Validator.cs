using Writ.Policy.Ast;
using Writ.Policy.Evaluation;
using Writ.Policy.Schema;

namespace Writ.Policy.Validation;

/// <summary>
/// Strict-mode policy validation against a schema, as Cedar's <c>validate</c> with
/// <c>ValidationMode::Strict</c>: unknown entity types and actions, enumerated entity ids,
/// action applicability of the scope, and a typecheck of every policy in every request
/// environment (principal type, action, resource type) the schema allows.
/// </summary>
public static class Validator
{
    public static ValidationResult Validate(PolicySet policies, CedarSchema schema)
    {
        ArgumentNullException.ThrowIfNull(policies);
        ArgumentNullException.ThrowIfNull(schema);
        var view = new SchemaView(schema);
        var errors = new List<ValidationError>();
        var warnings = new List<ValidationWarning>();
        foreach (var policy in policies.All)
        {
            var policyErrors = new List<ValidationError>();
            if (policy.TemplateId is not null)
            {
                // A template link: its body was checked with the template (errors are reported once, under the
                // template's id, as Cedar does); the link adds only its slot values and their action application.
                CheckSlotValues(view, policy, policyErrors);
                CheckActionApplication(view, policy, policyErrors);
                errors.AddRange(policyErrors.Distinct());
                continue;
            }

            CheckNames(view, policy, policyErrors);
            CheckActionApplication(view, policy, policyErrors);
            if (Typecheck(view, policy, policyErrors))
                warnings.Add(new ValidationWarning(policy.Id, "this policy can never apply to a request the schema allows (impossible policy); check its scope and conditions", policy.Span.Line, policy.Span.Column));
            errors.AddRange(policyErrors.Select(e => e with { Message = SchemaNames.OneLine(e.Message) }).Distinct());
        }

        return new ValidationResult(errors, warnings);
    }

    /// <summary>Typechecks the policy in every environment; returns true if it is false in all of them (impossible).</summary>
    private static bool Typecheck(SchemaView view, CedarPolicy policy, List<ValidationError> errors)
    {
        var condition = Condition(policy);
        var allFalse = true;
        foreach (var env in view.Envs)
        {
            foreach (var linked in LinkSlots(view, policy, env))
            {
                var tc = new Typechecker(view, linked, policy.Id, policy.Span, errors);
                var ans = tc.Expect(Caps.Empty, condition, VType.AnyBool);
                if (!VType.False.Equals(ans.Type))
                    allFalse = false;
            }
        }

        return allFalse;
    }

    private static IEnumerable<RequestEnv> LinkSlots(SchemaView view, CedarPolicy policy, RequestEnv env)
    {
        foreach (var p in SlotLinks(view, policy.Principal, env.Principal))
        {
            foreach (var r in SlotLinks(view, policy.Resource, env.Resource))
                yield return env with { PrincipalSlot = p, ResourceSlot = r };
        }
    }

    private static IEnumerable<string?> SlotLinks(SchemaView view, ScopeConstraint c, string envType)
    {
        if (c.Slot is null)
            return [null];
        return c.Op switch
        {
            ScopeOp.Eq => [envType],
            ScopeOp.In or ScopeOp.IsIn => view.EntityTypes.Values.Where(t => t.Descendants.Contains(envType)).Select(t => (string?)t.Name).Append(envType),
            _ => view.EntityTypes.Keys,
        };
    }

    /// <summary>The policy as one condition, built as Cedar does: principal &amp;&amp; (action &amp;&amp; (resource &amp;&amp; body)).</summary>
    internal static Expr Condition(CedarPolicy policy)
    {
        Expr True() => new LiteralExpr(Value.Of(true));
        Expr Scope(ScopeConstraint c, Variable v)
        {
            var var = new VariableExpr(v);
            Expr Target() => c.Slot is { } slot ? new SlotExpr(slot) : new LiteralExpr(Value.Of(c.Entity!));
            return c.Op switch
            {
                ScopeOp.Any => True(),
                ScopeOp.Eq => new BinaryExpr(BinaryOp.Eq, var, Target()),
                ScopeOp.In => new BinaryExpr(BinaryOp.In, var, Target()),
                ScopeOp.Is => new IsExpr(var, c.EntityType!),
                _ => new AndExpr(new IsExpr(var, c.EntityType!), new BinaryExpr(BinaryOp.In, new VariableExpr(v), Target())),
            };
        }

        var action = policy.Action.Op switch
        {
            ActionScopeOp.Any => True(),
            ActionScopeOp.Eq => new BinaryExpr(BinaryOp.Eq, new VariableExpr(Variable.Action), new LiteralExpr(Value.Of(policy.Action.Entities[0]))),
            _ => new BinaryExpr(BinaryOp.In, new VariableExpr(Variable.Action), new SetExpr(policy.Action.Entities.Select(u => (Expr)new LiteralExpr(Value.Of(u))).ToList())),
        };

        Expr? body = null;
        for (var i = policy.Conditions.Count - 1; i >= 0; i--)
        {
            var c = policy.Conditions[i];
            var e = c.Kind == ConditionKind.When ? c.Body : new UnaryExpr(UnaryOp.Not, c.Body, c.Body.Span);
            body = body is null ? e : new AndExpr(e, body);
        }

        return new AndExpr(
            Scope(policy.Principal, Variable.Principal),
            new AndExpr(action, new AndExpr(Scope(policy.Resource, Variable.Resource), body ?? True())));
    }

    private static IEnumerable<Expr> BodyExprs(CedarPolicy policy)
    {
        var stack = new Stack<Expr>(policy.Conditions.Select(c => c.Body).Reverse());
        while (stack.Count > 0)
        {
            var e = stack.Pop();
            yield return e;
            foreach (var child in ExprWalker.Children(e).Reverse())
                stack.Push(child);
        }
    }

    /// <summary>Entity uids written in the policy, with where they were written.</summary>
    private static IEnumerable<(EntityUid Uid, SourceSpan Span)> Euids(CedarPolicy policy)
    {
        if (policy.Principal.Entity is { } p)
            yield return (p, policy.Span);
        foreach (var a in policy.Action.Entities)
            yield return (a, policy.Span);
        if (policy.Resource.Entity is { } r)
            yield return (r, policy.Span);
        foreach (var e in BodyExprs(policy))
        {
            if (e is LiteralExpr { Value: EntityValue ev })
                yield return (ev.Uid, e.Span);
        }
    }

    private static IEnumerable<(string Type, SourceSpan Span)> EntityTypeNames(CedarPolicy policy)
    {
        foreach (var c in new[] { policy.Principal, policy.Resource })
        {
            if (c.EntityType is { } t)
                yield return (t, policy.Span);
            if (c.Entity is { } u)
                yield return (u.Type, policy.Span);
        }

        foreach (var a in policy.Action.Entities)
            yield return (a.Type, policy.Span);
        foreach (var e in BodyExprs(policy))
        {
            if (e is LiteralExpr { Value: EntityValue ev })
                yield return (ev.Uid.Type, e.Span);
            else if (e is IsExpr isExpr)
                yield return (isExpr.EntityType, e.Span);
        }
    }

    private static void CheckNames(SchemaView view, CedarPolicy policy, List<ValidationError> errors)
    {
        foreach (var (type, span) in EntityTypeNames(policy))
        {
            if (!view.IsKnownEntityType(type))
                errors.Add(new ValidationError(policy.Id, ValidationErrorKind.UnrecognizedEntityType, $"entity type `{type}` is not declared in the schema; declare it or fix the name", span.Line, span.Column));
        }

        foreach (var (uid, span) in Euids(policy))
        {
            if (SchemaView.IsActionType(uid.Type))
            {
                if (!view.Actions.ContainsKey(new ActionRef(uid.Type, uid.Id)))
                    errors.Add(new ValidationError(policy.Id, ValidationErrorKind.UnrecognizedActionId, $"action {uid} is not declared in the schema; declare it or fix the name", span.Line, span.Column));
            }
            else if (view.EntityTypes.TryGetValue(uid.Type, out var info) && info.EnumIds is { } ids && !ids.Contains(uid.Id))
            {
                errors.Add(new ValidationError(policy.Id, ValidationErrorKind.InvalidEnumEntity, $"{uid} is not one of the ids the schema allows for enumerated type `{uid.Type}` ({string.Join(", ", ids.Select(EntityUid.Quote))}); use one of them", span.Line, span.Column));
            }
        }
    }

    private static void CheckSlotValues(SchemaView view, CedarPolicy link, List<ValidationError> errors)
    {
        foreach (var uid in link.SlotValues?.Values ?? [])
        {
            if (!view.IsKnownEntityType(uid.Type))
            {
                errors.Add(new ValidationError(link.Id, ValidationErrorKind.UnrecognizedEntityType, $"the link binds a slot to {uid}, whose type `{uid.Type}` is not declared in the schema; link an entity of a declared type", link.Span.Line, link.Span.Column));
            }
            else if (view.EntityTypes.TryGetValue(uid.Type, out var info) && info.EnumIds is { } ids && !ids.Contains(uid.Id))
            {
                errors.Add(new ValidationError(link.Id, ValidationErrorKind.InvalidEnumEntity, $"the link binds a slot to {uid}, which is not one of the ids the schema allows for enumerated type `{uid.Type}`; use one of them", link.Span.Line, link.Span.Column));
            }
        }
    }

    private static void CheckActionApplication(SchemaView view, CedarPolicy policy, List<ValidationError> errors)
    {
        IEnumerable<SchemaView.ActionInfo> actions = policy.Action.Op switch
        {
            ActionScopeOp.Any => view.Actions.Values,
            ActionScopeOp.Eq => view.Actions.TryGetValue(ToRef(policy.Action.Entities[0]), out var a) ? [a] : [],
            _ => (view.ActionsInSet(policy.Action.Entities.Select(ToRef)) ?? []).Select(r => view.Actions[r]),
        };
        var principals = TypesSatisfying(view, policy.Principal);
        var resources = TypesSatisfying(view, policy.Resource);
        if (!actions.Any(a => a.Principals.Any(principals.Contains) && a.Resources.Any(resources.Contains)))
        {
            errors.Add(new ValidationError(policy.Id, ValidationErrorKind.InvalidActionApplication,
                "no action in this policy's scope applies to the principal and resource types its scope allows; fix the scope or the actions' `appliesTo` in the schema",
                policy.Span.Line, policy.Span.Column));
        }
    }

    private static ActionRef ToRef(EntityUid u) => new(u.Type, u.Id);

    private static HashSet<string> TypesSatisfying(SchemaView view, ScopeConstraint c)
    {
        IEnumerable<string> types = c.Op switch
        {
            ScopeOp.Any => view.EntityTypes.Keys,
            ScopeOp.Eq or ScopeOp.In when c.Slot is not null => view.EntityTypes.Keys,
            ScopeOp.Eq => [c.Entity!.Type],
            ScopeOp.In => view.EntityTypesIn(c.Entity!.Type),
            ScopeOp.Is => view.IsKnownEntityType(c.EntityType!) ? [c.EntityType!] : [],
            _ when c.Slot is not null => view.IsKnownEntityType(c.EntityType!) ? [c.EntityType!] : [],
            _ => view.EntityTypesIn(c.Entity!.Type).Where(t => t == c.EntityType),
        };
        return new HashSet<string>(types, StringComparer.Ordinal);
    }
}
