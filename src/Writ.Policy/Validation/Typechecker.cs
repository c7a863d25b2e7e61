using Writ.Policy.Ast;
using Writ.Policy.Evaluation;
using Writ.Policy.Extensions;
using Writ.Policy.Schema;

namespace Writ.Policy.Validation;

/// <summary>The result of typechecking one expression (Cedar's TypecheckAnswer).</summary>
internal readonly record struct Ans(bool Ok, VType? Type, Caps Caps)
{
    public static Ans Success(VType? type, Caps? caps = null) => new(true, type, caps ?? Caps.Empty);

    public static Ans Fail(VType? type) => new(false, type, Caps.Empty);

    public Ans AsFail() => new(false, Type, Caps.Empty);

    /// <summary>Continue with this answer's type; a failure stays a failure (with no capabilities).</summary>
    public Ans Then(Func<VType?, Caps, Ans> f) => Ok ? f(Type, Caps) : f(Type, Caps.Empty).AsFail();

    public Ans MapCaps(Func<Caps, Caps> f) => Ok ? this with { Caps = f(Caps) } : this;
}

/// <summary>
/// Strict-mode typechecking of one policy condition in one request environment, following
/// Cedar's validator rule for rule (singleton booleans short-circuit, capabilities from
/// <c>has</c>/<c>hasTag</c> flow through <c>&amp;&amp;</c> and <c>if</c>, strict least upper bounds).
/// </summary>
internal sealed class Typechecker(SchemaView view, RequestEnv env, string policyId, SourceSpan fallback, List<ValidationError> errors)
{
    private const bool Strict = true;

    private static readonly Dictionary<string, ExtFunc> Functions = BuildFunctions();

    private void Error(Expr e, ValidationErrorKind kind, string message)
    {
        var span = e.Span.Line > 0 ? e.Span : fallback;
        var line = SchemaNames.OneLine(message);   // names in messages may hold line breaks; escaped so they stay readable
        if (line.Length > 2000)
            line = string.Concat(line.AsSpan(0, char.IsHighSurrogate(line[1999]) ? 1999 : 2000), "...");   // hostile names must not make messages unbounded
        errors.Add(new ValidationError(policyId, kind, line, span.Line, span.Column));
    }

    public Ans Expect(Caps prior, Expr e, VType expected) => ExpectOneOf(prior, e, [expected]);

    private Ans ExpectOneOf(Caps prior, Expr e, VType[] expected, Func<VType, string?>? help = null)
    {
        return Typecheck(prior, e).Then((t, caps) =>
        {
            if (t is null)
                return Ans.Fail(null);
            if (!expected.Any(x => VTypeOps.IsSubtype(t, x, strict: false)))
            {
                var want = string.Join(" or ", expected.Select(Describe));
                var hint = help?.Invoke(t);
                Error(e, ValidationErrorKind.UnexpectedType, $"expected {want} but this expression has type {Describe(t)}{(hint is null ? "" : "; " + hint)}");
                return Ans.Fail(null);
            }

            return Ans.Success(t, caps);
        });
    }

    private static string Describe(VType t) => t switch
    {
        VEntity { Lub: null } => "an entity",
        VSet { Element: null } => "a set",
        VRecord { Attrs.Count: 0, Open: true } => "a record",
        _ => $"`{t.Display()}`",
    };

    private VType? EuidLiteralType(EntityUid uid)
    {
        if (SchemaView.IsActionType(uid.Type))
            return view.Actions.ContainsKey(new ActionRef(uid.Type, uid.Id)) ? VType.Entity(uid.Type) : null;
        return view.EntityTypes.ContainsKey(uid.Type) ? VType.Entity(uid.Type) : null;
    }

    public Ans Typecheck(Caps prior, Expr e)
    {
        switch (e)
        {
            case VariableExpr v:
                return v.Variable switch
                {
                    Variable.Principal => Ans.Success(VType.Entity(env.Principal)),
                    Variable.Action => Ans.Success(VType.Entity(env.Action.Id.Type)),
                    Variable.Resource => Ans.Success(VType.Entity(env.Resource)),
                    _ => Ans.Success(env.Action.Context),
                };
            case SlotExpr s:
                var slotType = s.Slot == SlotId.Principal ? env.PrincipalSlot : env.ResourceSlot;
                return Ans.Success(slotType is null ? VType.AnyEntity : VType.Entity(slotType));
            case LiteralExpr lit:
                return lit.Value switch
                {
                    BoolValue b => Ans.Success(VType.Singleton(b.Value)),
                    LongValue => Ans.Success(VType.Long),
                    StringValue => Ans.Success(VType.String),
                    EntityValue ev => EuidLiteralType(ev.Uid) is { } t ? Ans.Success(t) : Ans.Fail(null),
                    _ => Ans.Fail(null),
                };
            case IfExpr ite:
                return TypecheckIf(prior, ite);
            case AndExpr and:
                return TypecheckAnd(prior, and);
            case OrExpr or:
                return TypecheckOr(prior, or);
            case UnaryExpr u:
                return TypecheckUnary(prior, u);
            case BinaryExpr b:
                return TypecheckBinary(prior, b);
            case ExtensionCallExpr call:
                return TypecheckExtension(prior, call);
            case GetAttrExpr g:
                return TypecheckGetAttr(prior, g);
            case HasAttrExpr h:
                return TypecheckHasAttr(prior, h);
            case LikeExpr like:
                return Expect(prior, like.Target, VType.String).Then((_, _) => Ans.Success(VType.AnyBool));
            case IsExpr isExpr:
                return ExpectOneOf(prior, isExpr.Target, [VType.AnyEntity], _ => "`is` only tests entities").Then((t, _) => t switch
                {
                    VEntity { Lub: { } lub } => Ans.Success(
                        !lub.Contains(isExpr.EntityType) ? VType.False
                        : lub.Count == 1 ? VType.True
                        : VType.AnyBool),
                    VEntity => Ans.Success(VType.AnyBool),
                    _ => Ans.Fail(VType.AnyBool),
                });
            case SetExpr set:
                return TypecheckSet(prior, set);
            case RecordExpr rec:
                return TypecheckRecord(prior, rec);
            default:
                throw new InvalidOperationException($"Unexpected expression {e.GetType().Name}.");
        }
    }

    private Ans TypecheckIf(Caps prior, IfExpr e)
    {
        return Expect(prior, e.Condition, VType.AnyBool).Then((testType, testCaps) =>
        {
            if (VType.True.Equals(testType))
            {
                return Typecheck(prior.Union(testCaps), e.Then)
                    .Then((thenType, thenCaps) => Ans.Success(thenType, thenCaps.Union(testCaps)));
            }

            if (VType.False.Equals(testType))
                return Typecheck(prior, e.Else).Then((elseType, elseCaps) => Ans.Success(elseType, elseCaps));

            var ansThen = Typecheck(prior.Union(testCaps), e.Then).MapCaps(c => c.Union(testCaps));
            var ansElse = Typecheck(prior, e.Else);
            return ansThen.Then((thenType, thenCaps) => ansElse.Then((elseType, elseCaps) =>
            {
                var lub = LubOrError(e, [thenType, elseType], "the branches of `if` have incompatible types");
                return lub is null ? Ans.Fail(null) : Ans.Success(lub, elseCaps.Intersect(thenCaps));
            }));
        });
    }

    private Ans TypecheckAnd(Caps prior, AndExpr e)
    {
        return Expect(prior, e.Left, VType.AnyBool).Then((left, leftCaps) =>
        {
            if (VType.False.Equals(left))
                return Ans.Success(left);
            return Expect(prior.Union(leftCaps), e.Right, VType.AnyBool).Then((right, rightCaps) =>
            {
                if (left is null || right is null)
                    return Ans.Fail(VType.AnyBool);
                if (VType.False.Equals(right))
                    return Ans.Success(VType.False);
                if (VType.True.Equals(right))
                    return Ans.Success(left, leftCaps.Union(rightCaps));
                if (VType.True.Equals(left))
                    return Ans.Success(right, rightCaps);
                return Ans.Success(VType.AnyBool, leftCaps.Union(rightCaps));
            });
        });
    }

    private Ans TypecheckOr(Caps prior, OrExpr e)
    {
        return Expect(prior, e.Left, VType.AnyBool).Then((left, leftCaps) =>
        {
            if (VType.True.Equals(left))
                return Ans.Success(left, leftCaps);
            return Expect(prior, e.Right, VType.AnyBool).Then((right, rightCaps) =>
            {
                if (left is null || right is null)
                    return Ans.Fail(VType.AnyBool);
                if (VType.True.Equals(right))
                    return Ans.Success(VType.True, rightCaps);
                if (VType.False.Equals(right))
                    return Ans.Success(left, leftCaps);
                if (VType.False.Equals(left))
                    return Ans.Success(right, rightCaps);
                return Ans.Success(VType.AnyBool, rightCaps.Intersect(leftCaps));
            });
        });
    }

    private Ans TypecheckUnary(Caps prior, UnaryExpr e)
    {
        switch (e.Op)
        {
            case UnaryOp.Not:
                return Expect(prior, e.Operand, VType.AnyBool).Then((t, _) => t is null
                    ? Ans.Fail(VType.AnyBool)
                    : Ans.Success(VType.True.Equals(t) ? VType.False : VType.False.Equals(t) ? VType.True : VType.AnyBool));
            case UnaryOp.Neg:
                return Expect(prior, e.Operand, VType.Long).Then((_, _) => Ans.Success(VType.Long));
            default:
                return ExpectOneOf(prior, e.Operand, [VType.AnySet], t => t is VString ? "to test for an empty string compare with `\"\"`" : null)
                    .Then((_, _) => Ans.Success(VType.AnyBool));
        }
    }

    private Ans TypecheckBinary(Caps prior, BinaryExpr e)
    {
        switch (e.Op)
        {
            case BinaryOp.Eq:
                return TypecheckEq(prior, e);
            case BinaryOp.NotEq:
                // Cedar parses `a != b` as `!(a == b)`.
                return TypecheckEq(prior, e).Then((t, _) => t is null
                    ? Ans.Fail(VType.AnyBool)
                    : Ans.Success(VType.True.Equals(t) ? VType.False : VType.False.Equals(t) ? VType.True : VType.AnyBool));
            case BinaryOp.Less or BinaryOp.LessEq or BinaryOp.Greater or BinaryOp.GreaterEq:
                return TypecheckComparison(prior, e);
            case BinaryOp.Add or BinaryOp.Sub or BinaryOp.Mul:
                Func<VType, string?> help = t => t switch
                {
                    VString when e.Op == BinaryOp.Add => "Cedar has no string concatenation",
                    VSet => "Cedar has no set arithmetic; use `contains`, `containsAll` or `containsAny`",
                    _ => null,
                };
                return ExpectOneOf(prior, e.Left, [VType.Long], help)
                    .Then((_, _) => ExpectOneOf(prior, e.Right, [VType.Long], help).Then((_, _) => Ans.Success(VType.Long)));
            case BinaryOp.In:
                return TypecheckIn(prior, e);
            case BinaryOp.Contains:
                return ExpectOneOf(prior, e.Left, [VType.AnySet], SetHelp).Then((setType, _) =>
                    Typecheck(prior, e.Right).Then((elemType, _) => EnforceStrictEquality(
                        e, VType.AnyBool, setType is VSet { Element: { } el } ? el : null, elemType,
                        "the set's elements and the argument of `contains` have incompatible types")));
            case BinaryOp.ContainsAll or BinaryOp.ContainsAny:
                return ExpectOneOf(prior, e.Left, [VType.AnySet], SetHelp).Then((t1, _) =>
                    ExpectOneOf(prior, e.Right, [VType.AnySet], _ => "to test for one element use `contains`").Then((t2, _) => EnforceStrictEquality(
                        e, VType.AnyBool, t1, t2, "the two sets have incompatible element types")));
            case BinaryOp.HasTag:
                return Expect(prior, e.Left, VType.AnyEntity).Then((t1, _) => Expect(prior, e.Right, VType.String).Then((_, _) =>
                {
                    if (t1 is not VEntity kind)
                        return Ans.Fail(null);
                    var cap = new Capability(e.Left, null, e.Right);
                    var type = TagTypes(kind).Count == 0 ? VType.False : prior.Contains(cap) ? VType.True : VType.AnyBool;
                    return Ans.Success(type, Caps.Of(cap));
                }));
            case BinaryOp.GetTag:
                return Expect(prior, e.Left, VType.AnyEntity).Then((t1, _) => Expect(prior, e.Right, VType.String).Then((_, _) =>
                {
                    if (t1 is not VEntity kind)
                        return Ans.Fail(null);
                    if (!prior.Contains(new Capability(e.Left, null, e.Right)))
                    {
                        Error(e, ValidationErrorKind.UnsafeTagAccess, $"this tag may not exist on {Describe(kind)}; guard the access with `{{entity}}.hasTag(...)` first");
                        return Ans.Fail(null);
                    }

                    var tagTypes = TagTypes(kind);
                    if (tagTypes.Count == 0)
                    {
                        Error(e, ValidationErrorKind.NoTagsAllowed, $"entities of type {Describe(kind)} have no tags in the schema; remove the tag access or declare `tags` for the type");
                        return Ans.Fail(null);
                    }

                    var lub = VTypeOps.ReduceLub(tagTypes, Strict);
                    if (lub is null)
                    {
                        Error(e, ValidationErrorKind.IncompatibleTypes, $"the tags of {Describe(kind)} have incompatible types ({string.Join(", ", tagTypes.Select(t => t.Display()))}); narrow the entity type with `is` first");
                        return Ans.Fail(null);
                    }

                    return Ans.Success(lub);
                }));
            default:
                throw new InvalidOperationException($"Unexpected binary operator {e.Op}.");
        }
    }

    private static string? SetHelp(VType t) => t switch
    {
        VEntity => "to test entity membership use `in`",
        VRecord => "to test for an attribute use `has`",
        VString => "to match strings use `like`",
        _ => null,
    };

    private List<VType> TagTypes(VEntity kind)
    {
        var names = kind.Lub is null ? view.EntityTypes.Keys : (IEnumerable<string>)kind.Lub;
        var result = new List<VType>();
        foreach (var n in names)
        {
            if (view.EntityTypes.TryGetValue(n, out var info) && info.Tags is { } t && !result.Contains(t))
                result.Add(t);
        }

        return result;
    }

    private Expr ReplaceActionVar(Expr e) =>
        e is VariableExpr { Variable: Variable.Action }
            ? new LiteralExpr(Value.Of(new EntityUid(env.Action.Id.Type, env.Action.Id.Id)), e.Span)
            : e;

    private Ans TypecheckEq(Caps prior, BinaryExpr e)
    {
        var lhs = Typecheck(prior, e.Left);
        var rhs = Typecheck(prior, e.Right);
        return lhs.Then((lt, _) => rhs.Then((rt, _) =>
        {
            VType typeOfEq;
            if (lt is not null && rt is not null && VTypeOps.AreDisjoint(lt, rt))
                typeOfEq = VType.False;
            else if (ReplaceActionVar(e.Left) is LiteralExpr ll && ReplaceActionVar(e.Right) is LiteralExpr rl)
                typeOfEq = VType.Singleton(ll.Value.Equals(rl.Value));
            else
                typeOfEq = VType.AnyBool;
            return EnforceStrictEquality(e, typeOfEq, lt, rt, "the two sides of `==` have incompatible types");
        }));
    }

    private Ans EnforceStrictEquality(Expr e, VType annotated, VType? lhs, VType? rhs, string what)
    {
        if (annotated is VBool { Kind: not BoolKind.Any })
            return Ans.Success(annotated);
        if (lhs is not null && rhs is not null && VTypeOps.Lub(lhs, rhs, Strict) is null)
        {
            Error(e, ValidationErrorKind.IncompatibleTypes, $"{what} (`{lhs.Display()}` and `{rhs.Display()}`); compare values of the same type");
            return Ans.Fail(annotated);
        }

        return Ans.Success(annotated);
    }

    private static bool IsComparable(VType t) => t is VLong || t is VExt { Name: "datetime" or "duration" };

    private Ans TypecheckComparison(Caps prior, BinaryExpr e)
    {
        return Typecheck(prior, e.Left).Then((t1, _) => Typecheck(prior, e.Right).Then((t2, _) =>
        {
            const string Expected = "`Long`, `datetime` or `duration`";
            switch (t1, t2)
            {
                case (VNever, VNever):
                    return Ans.Fail(VType.AnyBool);
                case (VNever, { } other):
                    if (IsComparable(other))
                        return Ans.Success(VType.AnyBool);
                    Error(e.Right, ValidationErrorKind.UnexpectedType, $"expected {Expected} but this expression has type `{other.Display()}`");
                    return Ans.Fail(VType.AnyBool);
                case ({ } other, VNever):
                    if (IsComparable(other))
                        return Ans.Success(VType.AnyBool);
                    Error(e.Left, ValidationErrorKind.UnexpectedType, $"expected {Expected} but this expression has type `{other.Display()}`");
                    return Ans.Fail(VType.AnyBool);
                case ({ } a, { } b) when a.Equals(b) && IsComparable(a):
                    return Ans.Success(VType.AnyBool);
                case (VLong, { } other):
                    Error(e.Right, ValidationErrorKind.UnexpectedType, $"expected `Long` but this expression has type `{other.Display()}`");
                    return Ans.Fail(VType.AnyBool);
                case ({ } other, VLong):
                    Error(e.Left, ValidationErrorKind.UnexpectedType, $"expected `Long` but this expression has type `{other.Display()}`");
                    return Ans.Fail(VType.AnyBool);
                case ({ } a, { } b) when IsComparable(a):
                    Error(e.Right, ValidationErrorKind.UnexpectedType, $"expected `{a.Display()}` but this expression has type `{b.Display()}`");
                    return Ans.Fail(VType.AnyBool);
                case ({ } a, { } b) when IsComparable(b):
                    Error(e.Left, ValidationErrorKind.UnexpectedType, $"expected `{b.Display()}` but this expression has type `{a.Display()}`");
                    return Ans.Fail(VType.AnyBool);
                case ({ } a, { } b):
                    Error(e.Left, ValidationErrorKind.UnexpectedType, $"expected {Expected} but this expression has type `{a.Display()}`");
                    Error(e.Right, ValidationErrorKind.UnexpectedType, $"expected {Expected} but this expression has type `{b.Display()}`");
                    return Ans.Fail(VType.AnyBool);
                default:
                    return Ans.Fail(VType.AnyBool);
            }
        }));
    }

    private EntityUid? EuidOrAction(Expr e) => ReplaceActionVar(e) is LiteralExpr { Value: EntityValue ev } ? ev.Uid : null;

    private List<EntityUid>? EuidsOrActions(Expr e)
    {
        if (EuidOrAction(e) is { } single)
            return [single];
        if (e is not SetExpr set)
            return null;
        var list = new List<EntityUid>();
        foreach (var x in set.Elements)
        {
            if (EuidOrAction(x) is not { } u)
                return null;
            list.Add(u);
        }

        return list;
    }

    private Ans TypecheckIn(Caps prior, BinaryExpr e)
    {
        var lhs = ExpectOneOf(prior, e.Left, [VType.AnyEntity], _ => "to test set membership use `contains`");
        var rhs = ExpectOneOf(prior, e.Right, [new VSet(VType.AnyEntity), VType.AnyEntity], t => t switch
        {
            VSet => "to test set membership use `contains`",
            VString => "to match strings use `like`",
            _ => null,
        });
        var bothOk = lhs.Ok && rhs.Ok;
        return lhs.Then((lt, _) => rhs.Then((rt, _) =>
        {
            if (!bothOk)
                return Ans.Fail(VType.AnyBool);
            var lhsEuid = EuidOrAction(e.Left);
            var rhsEuids = EuidsOrActions(e.Right);
            if (lhsEuid is not null && rhsEuids is not null && SchemaView.IsActionType(lhsEuid.Type))
            {
                var rhsActions = rhsEuids.Where(u => SchemaView.IsActionType(u.Type)).ToList();
                if (rhsActions.Count == 0)
                    return Ans.Success(VType.False);
                var within = view.ActionsInSet(rhsActions.Select(u => new ActionRef(u.Type, u.Id)));
                return within is null
                    ? Ans.Fail(VType.AnyBool)
                    : Ans.Success(VType.Singleton(within.Contains(new ActionRef(lhsEuid.Type, lhsEuid.Id))));
            }

            var lhsLub = lt is VEntity { Lub: { } l } ? l : null;
            var rhsLub = rt switch
            {
                VEntity { Lub: { } r } => r,
                VSet { Element: VEntity { Lub: { } r } } => r,
                _ => null,
            };
            if (lhsLub is not null && rhsLub is not null && !AnyDescendant(lhsLub, rhsLub))
                return Ans.Success(VType.False);
            return Ans.Success(VType.AnyBool);
        }));
    }

    private bool AnyDescendant(IEnumerable<string> lhs, IEnumerable<string> rhs) =>
        lhs.Any(l => rhs.Any(r => view.EntityTypesIn(r).Contains(l) || ActionInEntityType(l, r)));

    private bool ActionInEntityType(string lhs, string rhs) =>
        lhs == rhs || view.Actions.Values.Any(a => a.Id.Type == rhs && a.Descendants.Any(d => d.Type == lhs));

    private Ans TypecheckGetAttr(Caps prior, GetAttrExpr e)
    {
        return ExpectOneOf(prior, e.Target, [VType.AnyEntity, VType.AnyRecord]).Then((t, _) =>
        {
            if (t is null)
                return Ans.Fail(null);
            var attr = LookupAttribute(t, e.Attribute);
            if (attr is not null)
            {
                if (attr.Required || prior.Contains(new Capability(e.Target, e.Attribute, null)))
                    return Ans.Success(attr.Type);
                Error(e, ValidationErrorKind.UnsafeOptionalAttributeAccess, $"attribute `{e.Attribute}` of {Describe(t)} is optional; guard the access with `has {e.Attribute}` first");
                return Ans.Fail(attr.Type);
            }

            Error(e, ValidationErrorKind.UnsafeAttributeAccess, $"{Describe(t)} has no attribute `{e.Attribute}` in the schema; check the attribute name or the schema");
            return Ans.Fail(null);
        });
    }

    private Ans TypecheckHasAttr(Caps prior, HasAttrExpr e)
    {
        return ExpectOneOf(prior, e.Target, [VType.AnyEntity, VType.AnyRecord], t => t switch
        {
            VSet => "to test set membership use `contains`",
            VString => "to match strings use `like`",
            _ => null,
        }).Then((t, _) =>
        {
            if (t is null)
                return Ans.Fail(VType.AnyBool);
            var cap = new Capability(e.Target, e.Attribute, null);
            var attr = LookupAttribute(t, e.Attribute);
            if (attr is { Required: true })
                return Ans.Success(t is VRecord || prior.Contains(cap) ? VType.True : VType.AnyBool, Caps.Of(cap));
            if (attr is not null)
                return Ans.Success(prior.Contains(cap) ? VType.True : VType.AnyBool, Caps.Of(cap));
            return Ans.Success(MayHaveAttr(t, e.Attribute) ? VType.AnyBool : VType.False);
        });
    }

    private VAttr? LookupAttribute(VType t, string attr) => t switch
    {
        VRecord r => r.Attrs.GetValueOrDefault(attr),
        VEntity { Lub: { } lub } => view.AttributesOf(lub).Attrs.GetValueOrDefault(attr),
        _ => null,
    };

    private bool MayHaveAttr(VType t, string attr) => t switch
    {
        VNever => true,
        VEntity e when view.HasOpenAttributes(e) => true,
        VEntity { Lub: { } lub } => lub.Any(n => view.EntityTypes.TryGetValue(n, out var info) && info.Shape.Attrs.ContainsKey(attr)),
        VRecord r => r.Open || r.Attrs.ContainsKey(attr),
        _ => false,
    };

    private VType? LubOrError(Expr e, IReadOnlyList<VType?> types, string what)
    {
        if (types.Any(t => t is null))
            return null;
        var lub = VTypeOps.ReduceLub(types!, Strict);
        if (lub is null)
            Error(e, ValidationErrorKind.IncompatibleTypes, $"{what} ({string.Join(", ", types.Select(t => $"`{t!.Display()}`"))}); strict validation needs one common type");
        return lub;
    }

    private Ans TypecheckSet(Caps prior, SetExpr e)
    {
        var answers = e.Elements.Select(x => Typecheck(prior, x)).ToList();
        var anyFailed = answers.Any(a => !a.Ok);
        var lub = LubOrError(e, answers.Select(a => a.Type).ToList(), "the elements of this set have incompatible types");
        Ans result;
        if (e.Elements.Count == 0)
        {
            Error(e, ValidationErrorKind.EmptySetForbidden, "an empty set literal has no element type in strict validation; remove it or compare with a typed attribute instead");
            result = Ans.Fail(null);
        }
        else
        {
            result = lub is null ? Ans.Fail(null) : Ans.Success(new VSet(lub));
        }

        return anyFailed ? result.AsFail() : result;
    }

    private Ans TypecheckRecord(Caps prior, RecordExpr e)
    {
        var answers = e.Fields.Select(f => (f.Key, Ans: Typecheck(prior, f.Value))).ToList();
        var anyFailed = answers.Any(a => !a.Ans.Ok);
        Ans result;
        if (answers.Any(a => a.Ans.Type is null))
        {
            result = Ans.Fail(null);
        }
        else
        {
            var b = System.Collections.Immutable.ImmutableSortedDictionary.CreateBuilder<string, VAttr>(StringComparer.Ordinal);
            foreach (var (k, a) in answers)
                b[k] = new VAttr(a.Type!, true);
            result = Ans.Success(new VRecord(b.ToImmutable(), false));
        }

        return anyFailed ? result.AsFail() : result;
    }

    private Ans TypecheckExtension(Caps prior, ExtensionCallExpr e)
    {
        if (!Functions.TryGetValue(e.Function, out var f))
        {
            Error(e, ValidationErrorKind.UndefinedFunction, $"`{e.Function}` is not a Cedar extension function; check the name");
            foreach (var a in e.Arguments)
                Typecheck(prior, a);
            return Ans.Fail(null);
        }

        var failed = false;
        if (e.Arguments.Count != f.Parameters.Length)
        {
            Error(e, ValidationErrorKind.WrongNumberArguments, $"`{e.Function}` takes {f.Parameters.Length} argument(s) but was given {e.Arguments.Count}; fix the call");
            failed = true;
        }

        if (f.Check is not null && e.Arguments is [LiteralExpr { Value: StringValue s }] && f.Check(s.Value) is { } why)
        {
            Error(e, ValidationErrorKind.FunctionArgumentValidation, $"`{e.Function}(\"{Syntax.ErrorText.OneLine(s.Value, 64)}\")` is not a valid {e.Function} literal: {why}");
            failed = true;
        }

        if (f.Check is not null && !e.Arguments.All(a => a is LiteralExpr))
        {
            Error(e, ValidationErrorKind.NonLiteralExtensionConstructor, $"in strict validation `{e.Function}(...)` must be called on a string literal; write the value as a literal");
            failed = true;
        }

        if (failed)
        {
            foreach (var a in e.Arguments)
                Typecheck(prior, a);
            return Ans.Fail(f.Returns);
        }

        var answers = e.Arguments.Select((a, i) => Expect(prior, a, f.Parameters[i])).ToList();
        return answers.Any(a => !a.Ok) ? Ans.Fail(f.Returns) : Ans.Success(f.Returns);
    }

    private sealed record ExtFunc(VType[] Parameters, VType Returns, Func<string, string?>? Check);

    private static Dictionary<string, ExtFunc> BuildFunctions()
    {
        var ip = new VExt("ipaddr");
        var dec = new VExt("decimal");
        var dt = new VExt("datetime");
        var dur = new VExt("duration");
        var fs = new Dictionary<string, ExtFunc>(StringComparer.Ordinal)
        {
            ["ip"] = new([VType.String], ip, s => IpAddrValue.TryParse(s, out _, out var err) ? null : err),
            ["isInRange"] = new([ip, ip], VType.AnyBool, null),
            ["decimal"] = new([VType.String], dec, s => DecimalValue.TryParse(s, out _, out var err) ? null : err),
            ["datetime"] = new([VType.String], dt, s => DatetimeValue.TryParse(s, out _, out var err) ? null : err),
            ["duration"] = new([VType.String], dur, s => DurationValue.TryParse(s, out _, out var err) ? null : err),
            ["offset"] = new([dt, dur], dt, null),
            ["durationSince"] = new([dt, dt], dur, null),
            ["toDate"] = new([dt], dt, null),
            ["toTime"] = new([dt], dur, null),
        };
        foreach (var n in new[] { "isIpv4", "isIpv6", "isLoopback", "isMulticast" })
            fs[n] = new([ip], VType.AnyBool, null);
        foreach (var n in new[] { "lessThan", "lessThanOrEqual", "greaterThan", "greaterThanOrEqual" })
            fs[n] = new([dec, dec], VType.AnyBool, null);
        foreach (var n in new[] { "toMilliseconds", "toSeconds", "toMinutes", "toHours", "toDays" })
            fs[n] = new([dur], VType.Long, null);
        return fs;
    }
}
