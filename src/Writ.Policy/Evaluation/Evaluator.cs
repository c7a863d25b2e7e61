using Writ.Policy.Ast;
using Writ.Policy.Authorization;
using Writ.Policy.Extensions;

namespace Writ.Policy.Evaluation;

/// <summary>
/// Evaluates Cedar expressions for one request. Errors are returned as values (never thrown), with Cedar's
/// short-circuit and error semantics: <c>&amp;&amp;</c>, <c>||</c> and <c>if</c> evaluate only what they need.
/// </summary>
public sealed class Evaluator
{
    private readonly Request _request;
    private readonly Entities _entities;
    private EvaluationError? _error;

    public Evaluator(Request request, Entities entities)
    {
        _request = request ?? throw new ArgumentNullException(nameof(request));
        _entities = entities ?? throw new ArgumentNullException(nameof(entities));
    }

    /// <summary>Evaluates <paramref name="expr"/>; on failure <paramref name="value"/> is null and <paramref name="error"/> says why.</summary>
    public bool TryEvaluate(Expr expr, out Value? value, out EvaluationError? error)
    {
        ArgumentNullException.ThrowIfNull(expr);
        _error = null;
        if (Eval(expr, out var v))
        {
            value = v;
            error = null;
            return true;
        }

        value = null;
        error = _error ?? new EvaluationError(EvaluationErrorKind.TypeError, "evaluation failed", expr.Span);
        return false;
    }

    /// <summary>Convenience: evaluates one expression against a request and entities.</summary>
    public static bool TryEvaluate(Expr expr, Request request, Entities entities, out Value? value, out EvaluationError? error) =>
        new Evaluator(request, entities).TryEvaluate(expr, out value, out error);

    internal EvaluationError? LastError => _error;

    /// <summary>Evaluates a condition that must produce a Bool.</summary>
    internal bool TryEvalBool(Expr expr, out bool result)
    {
        _error = null;
        result = false;
        if (!Eval(expr, out var v)) return false;
        if (v is BoolValue b)
        {
            result = b.Value;
            return true;
        }

        return TypeError(expr, "Bool", v);
    }

    private bool Fail(EvaluationErrorKind kind, string message, Expr at)
    {
        _error = new EvaluationError(kind, Syntax.ErrorText.OneLine(message, 2000), at.Span);   // names and strings in messages may hold line breaks
        return false;
    }

    private bool TypeError(Expr at, string expected, Value got) =>
        Fail(EvaluationErrorKind.TypeError, $"type error: expected {expected} but got {got.TypeName}", at);

    private bool Eval(Expr e, out Value v)
    {
        v = BoolValue.False;
        switch (e)
        {
            case LiteralExpr l:
                v = l.Value;
                return true;
            case VariableExpr var:
                v = var.Variable switch
                {
                    Variable.Principal => _request.PrincipalValue,
                    Variable.Action => _request.ActionValue,
                    Variable.Resource => _request.ResourceValue,
                    _ => _request.Context,
                };
                return true;
            case AndExpr a:
            {
                if (!Eval(a.Left, out var l)) return false;
                if (l is not BoolValue lb) return TypeError(a.Left, "Bool", l);
                if (!lb.Value) { v = BoolValue.False; return true; }
                if (!Eval(a.Right, out var r)) return false;
                if (r is not BoolValue) return TypeError(a.Right, "Bool", r);
                v = r;
                return true;
            }

            case OrExpr o:
            {
                if (!Eval(o.Left, out var l)) return false;
                if (l is not BoolValue lb) return TypeError(o.Left, "Bool", l);
                if (lb.Value) { v = BoolValue.True; return true; }
                if (!Eval(o.Right, out var r)) return false;
                if (r is not BoolValue) return TypeError(o.Right, "Bool", r);
                v = r;
                return true;
            }

            case IfExpr i:
            {
                if (!Eval(i.Condition, out var c)) return false;
                if (c is not BoolValue cb) return TypeError(i.Condition, "Bool", c);
                return Eval(cb.Value ? i.Then : i.Else, out v);
            }

            case UnaryExpr u:
                return EvalUnary(u, out v);
            case BinaryExpr b:
                return EvalBinary(b, out v);
            case GetAttrExpr g:
                return EvalGetAttr(g, out v);
            case HasAttrExpr h:
            {
                if (!Eval(h.Target, out var t)) return false;
                switch (t)
                {
                    case EntityValue ev:
                        v = Value.Of(_entities.TryGet(ev.Uid, out var ent) && ent.Attributes.ContainsKey(h.Attribute));
                        return true;
                    case RecordValue rv:
                        v = Value.Of(rv.Fields.ContainsKey(h.Attribute));
                        return true;
                    default:
                        return TypeError(h.Target, "entity or Record", t);
                }
            }

            case LikeExpr like:
            {
                if (!Eval(like.Target, out var t)) return false;
                if (t is not StringValue s) return TypeError(like.Target, "String", t);
                v = Value.Of(like.Pattern.IsMatch(s.Value));
                return true;
            }

            case IsExpr isx:
            {
                if (!Eval(isx.Target, out var t)) return false;
                if (t is not EntityValue ev) return TypeError(isx.Target, "entity", t);
                v = Value.Of(string.Equals(ev.Uid.Type, isx.EntityType, StringComparison.Ordinal));
                return true;
            }

            case SetExpr set:
            {
                if (set.Elements.Count == 0) { v = SetValue.Empty; return true; }
                var items = new Value[set.Elements.Count];
                for (var k = 0; k < items.Length; k++)
                {
                    if (!Eval(set.Elements[k], out items[k])) return false;
                }

                v = new SetValue(items);
                return true;
            }

            case RecordExpr rec:
            {
                var fields = new Dictionary<string, Value>(rec.Fields.Count, StringComparer.Ordinal);
                foreach (var (k, x) in rec.Fields)
                {
                    if (!Eval(x, out var fv)) return false;
                    fields[k] = fv;
                }

                v = new RecordValue(fields);
                return true;
            }

            case ExtensionCallExpr call:
                return EvalExtension(call, out v);
            case SlotExpr slot:
                return Fail(EvaluationErrorKind.UnlinkedSlot, $"template slot ?{slot.Slot.ToString().ToLowerInvariant()} is not linked; link the template before evaluating it", e);
            default:
                return Fail(EvaluationErrorKind.TypeError, "unsupported expression node " + e.GetType().Name, e);
        }
    }

    private bool EvalUnary(UnaryExpr u, out Value v)
    {
        v = BoolValue.False;
        if (!Eval(u.Operand, out var x)) return false;
        switch (u.Op)
        {
            case UnaryOp.Not:
                if (x is not BoolValue b) return TypeError(u.Operand, "Bool", x);
                v = Value.Of(!b.Value);
                return true;
            case UnaryOp.Neg:
                if (x is not LongValue l) return TypeError(u.Operand, "Long", x);
                if (l.Value == long.MinValue) return Fail(EvaluationErrorKind.IntegerOverflow, $"integer overflow: cannot negate {l.Value}", u);
                v = Value.Of(-l.Value);
                return true;
            default:
                if (x is not SetValue s) return TypeError(u.Operand, "Set", x);
                v = Value.Of(s.Count == 0);
                return true;
        }
    }

    private bool EvalBinary(BinaryExpr b, out Value v)
    {
        v = BoolValue.False;
        if (!Eval(b.Left, out var l)) return false;
        if (!Eval(b.Right, out var r)) return false;
        switch (b.Op)
        {
            case BinaryOp.Eq:
                v = Value.Of(l.Equals(r));
                return true;
            case BinaryOp.NotEq:
                v = Value.Of(!l.Equals(r));
                return true;
            case BinaryOp.Less:
            case BinaryOp.LessEq:
            case BinaryOp.Greater:
            case BinaryOp.GreaterEq:
            {
                int cmp;
                if (l is LongValue ll && r is LongValue rl)
                {
                    cmp = ll.Value.CompareTo(rl.Value);
                }
                else if (l is ExtensionValue le && r is ExtensionValue re && le.SupportsComparison && re.SupportsComparison && le.GetType() == re.GetType())
                {
                    cmp = le.CompareTo(re);
                }
                else if (l is LongValue) return TypeError(b.Right, "Long", r);
                else if (r is LongValue) return TypeError(b.Left, "Long", l);
                else if (l is ExtensionValue le2 && le2.SupportsComparison) return TypeError(b.Right, le2.TypeName, r);
                else if (r is ExtensionValue re2 && re2.SupportsComparison) return TypeError(b.Left, re2.TypeName, l);
                else return TypeError(b.Left, "Long, datetime or duration", l);

                v = Value.Of(b.Op switch
                {
                    BinaryOp.Less => cmp < 0,
                    BinaryOp.LessEq => cmp <= 0,
                    BinaryOp.Greater => cmp > 0,
                    _ => cmp >= 0,
                });
                return true;
            }

            case BinaryOp.Add:
            case BinaryOp.Sub:
            case BinaryOp.Mul:
            {
                if (l is not LongValue x) return TypeError(b.Left, "Long", l);
                if (r is not LongValue y) return TypeError(b.Right, "Long", r);
                long result;
                bool ok;
                switch (b.Op)
                {
                    case BinaryOp.Add:
                        result = unchecked(x.Value + y.Value);
                        ok = ((x.Value ^ result) & (y.Value ^ result)) >= 0;
                        break;
                    case BinaryOp.Sub:
                        result = unchecked(x.Value - y.Value);
                        ok = ((x.Value ^ y.Value) & (x.Value ^ result)) >= 0;
                        break;
                    default:
                        var wide = (Int128)x.Value * y.Value;
                        ok = wide >= long.MinValue && wide <= long.MaxValue;
                        result = (long)wide;
                        break;
                }

                if (!ok)
                {
                    var sym = b.Op == BinaryOp.Add ? "+" : b.Op == BinaryOp.Sub ? "-" : "*";
                    return Fail(EvaluationErrorKind.IntegerOverflow, $"integer overflow: {x.Value} {sym} {y.Value} does not fit in a 64-bit Long", b);
                }

                v = Value.Of(result);
                return true;
            }

            case BinaryOp.In:
                return EvalIn(b, l, r, out v);
            case BinaryOp.Contains:
                if (l is not SetValue cs) return TypeError(b.Left, "Set", l);
                v = Value.Of(cs.Contains(r));
                return true;
            case BinaryOp.ContainsAll:
            case BinaryOp.ContainsAny:
            {
                if (l is not SetValue ls) return TypeError(b.Left, "Set", l);
                if (r is not SetValue rs) return TypeError(b.Right, "Set", r);
                if (b.Op == BinaryOp.ContainsAll)
                {
                    var all = true;
                    foreach (var item in rs.Items)
                    {
                        if (!ls.Contains(item)) { all = false; break; }
                    }

                    v = Value.Of(all);
                }
                else
                {
                    var any = false;
                    foreach (var item in rs.Items)
                    {
                        if (ls.Contains(item)) { any = true; break; }
                    }

                    v = Value.Of(any);
                }

                return true;
            }

            case BinaryOp.GetTag:
            case BinaryOp.HasTag:
            {
                if (l is not EntityValue ev) return TypeError(b.Left, "entity", l);
                if (r is not StringValue tag) return TypeError(b.Right, "String", r);
                var found = _entities.TryGet(ev.Uid, out var ent);
                if (b.Op == BinaryOp.HasTag)
                {
                    v = Value.Of(found && ent.Tags.ContainsKey(tag.Value));
                    return true;
                }

                if (!found) return Fail(EvaluationErrorKind.EntityDoesNotExist, $"entity {ev.Uid} does not exist", b.Left);
                if (!ent.Tags.TryGetValue(tag.Value, out v!))
                    return Fail(EvaluationErrorKind.TagDoesNotExist, $"entity {ev.Uid} has no tag {EntityUid.Quote(tag.Value)}; check with hasTag first", b);
                return true;
            }

            default:
                return Fail(EvaluationErrorKind.TypeError, "unsupported operator " + b.Op, b);
        }
    }

    private bool EvalIn(BinaryExpr b, Value l, Value r, out Value v)
    {
        v = BoolValue.False;
        if (l is not EntityValue le) return TypeError(b.Left, "entity", l);
        var ancestors = _entities.TryGet(le.Uid, out var ent) ? ent.Ancestors : null;
        switch (r)
        {
            case EntityValue re:
                v = Value.Of(le.Uid.Equals(re.Uid) || (ancestors is not null && ancestors.Contains(re.Uid)));
                return true;
            case SetValue rs:
            {
                foreach (var item in rs.Items)
                {
                    if (item is not EntityValue) return TypeError(b.Right, "set of entities", item);
                }

                foreach (var item in rs.Items)
                {
                    var u = ((EntityValue)item).Uid;
                    if (le.Uid.Equals(u) || (ancestors is not null && ancestors.Contains(u)))
                    {
                        v = BoolValue.True;
                        return true;
                    }
                }

                return true;
            }

            default:
                return TypeError(b.Right, "entity or set of entities", r);
        }
    }

    private bool EvalGetAttr(GetAttrExpr g, out Value v)
    {
        v = BoolValue.False;
        if (!Eval(g.Target, out var t)) return false;
        switch (t)
        {
            case EntityValue ev:
                if (!_entities.TryGet(ev.Uid, out var ent))
                    return Fail(EvaluationErrorKind.EntityDoesNotExist, $"entity {ev.Uid} does not exist", g.Target);
                if (!ent.Attributes.TryGetValue(g.Attribute, out v!))
                    return Fail(EvaluationErrorKind.AttributeDoesNotExist, $"entity {ev.Uid} has no attribute {EntityUid.Quote(g.Attribute)}; check with `has` first", g);
                return true;
            case RecordValue rv:
                if (!rv.TryGet(g.Attribute, out v))
                    return Fail(EvaluationErrorKind.AttributeDoesNotExist, $"record has no attribute {EntityUid.Quote(g.Attribute)}; check with `has` first", g);
                return true;
            default:
                return TypeError(g.Target, "entity or Record", t);
        }
    }

    private bool EvalExtension(ExtensionCallExpr call, out Value v)
    {
        if (!call.HasOnlyLiteralArguments) return EvalExtensionCore(call, out v);
        switch (call.ConstantResult)
        {
            case Value cached:
                v = cached;
                return true;
            case EvaluationError cachedError:
                v = BoolValue.False;
                _error = cachedError;
                return false;
        }

        var ok = EvalExtensionCore(call, out v);
        call.ConstantResult = ok ? v : _error;
        return ok;
    }

    private bool EvalExtensionCore(ExtensionCallExpr call, out Value v)
    {
        v = BoolValue.False;
        var n = call.Arguments.Count;
        var args = new Value[n];
        for (var i = 0; i < n; i++)
        {
            if (!Eval(call.Arguments[i], out args[i])) return false;
        }

        var expected = call.Function switch
        {
            "ip" or "decimal" or "datetime" or "duration" => 1,
            "isIpv4" or "isIpv6" or "isLoopback" or "isMulticast" or "toDate" or "toTime"
                or "toMilliseconds" or "toSeconds" or "toMinutes" or "toHours" or "toDays" => 1,
            _ => 2,
        };
        if (n != expected)
            return Fail(EvaluationErrorKind.WrongArity, $"wrong number of arguments to `{call.Function}`: expected {expected - (call.IsMethod ? 1 : 0)} but got {n - (call.IsMethod ? 1 : 0)}", call);

        switch (call.Function)
        {
            case "ip":
            {
                if (args[0] is not StringValue s) return TypeError(call.Arguments[0], "String", args[0]);
                if (!IpAddrValue.TryParse(s.Value, out var ip, out var err)) return Fail(EvaluationErrorKind.ExtensionError, err, call);
                v = ip!;
                return true;
            }

            case "decimal":
            {
                if (args[0] is not StringValue s) return TypeError(call.Arguments[0], "String", args[0]);
                if (!DecimalValue.TryParse(s.Value, out var d, out var err)) return Fail(EvaluationErrorKind.ExtensionError, err, call);
                v = d!;
                return true;
            }

            case "datetime":
            {
                if (args[0] is not StringValue s) return TypeError(call.Arguments[0], "String", args[0]);
                if (!DatetimeValue.TryParse(s.Value, out var d, out var err)) return Fail(EvaluationErrorKind.ExtensionError, err, call);
                v = d!;
                return true;
            }

            case "duration":
            {
                if (args[0] is not StringValue s) return TypeError(call.Arguments[0], "String", args[0]);
                if (!DurationValue.TryParse(s.Value, out var d, out var err)) return Fail(EvaluationErrorKind.ExtensionError, err, call);
                v = d!;
                return true;
            }

            case "isIpv4" or "isIpv6" or "isLoopback" or "isMulticast" or "isInRange":
            {
                if (args[0] is not IpAddrValue ip) return TypeError(call.Arguments[0], "ipaddr", args[0]);
                switch (call.Function)
                {
                    case "isIpv4": v = Value.Of(ip.IsIpv4); return true;
                    case "isIpv6": v = Value.Of(ip.IsIpv6); return true;
                    case "isLoopback": v = Value.Of(ip.IsLoopback); return true;
                    case "isMulticast": v = Value.Of(ip.IsMulticast); return true;
                }

                if (args[1] is not IpAddrValue other) return TypeError(call.Arguments[1], "ipaddr", args[1]);
                v = Value.Of(ip.IsInRange(other));
                return true;
            }

            case "lessThan" or "lessThanOrEqual" or "greaterThan" or "greaterThanOrEqual":
            {
                if (args[0] is not DecimalValue x) return TypeError(call.Arguments[0], "decimal", args[0]);
                if (args[1] is not DecimalValue y) return TypeError(call.Arguments[1], "decimal", args[1]);
                v = Value.Of(call.Function switch
                {
                    "lessThan" => x.Scaled < y.Scaled,
                    "lessThanOrEqual" => x.Scaled <= y.Scaled,
                    "greaterThan" => x.Scaled > y.Scaled,
                    _ => x.Scaled >= y.Scaled,
                });
                return true;
            }

            case "offset" or "durationSince" or "toDate" or "toTime":
            {
                if (args[0] is not DatetimeValue dt) return TypeError(call.Arguments[0], "datetime", args[0]);
                switch (call.Function)
                {
                    case "toDate":
                        var date = dt.ToDate();
                        if (date is null) return Fail(EvaluationErrorKind.ExtensionError, "overflow computing toDate", call);
                        v = date;
                        return true;
                    case "toTime":
                        v = dt.ToTime();
                        return true;
                    case "offset":
                    {
                        if (args[1] is not DurationValue d) return TypeError(call.Arguments[1], "duration", args[1]);
                        var r = dt.Offset(d);
                        if (r is null) return Fail(EvaluationErrorKind.ExtensionError, "overflow when adding an offset to a datetime", call);
                        v = r;
                        return true;
                    }

                    default:
                    {
                        if (args[1] is not DatetimeValue other) return TypeError(call.Arguments[1], "datetime", args[1]);
                        var r = dt.DurationSince(other);
                        if (r is null) return Fail(EvaluationErrorKind.ExtensionError, "overflow computing durationSince", call);
                        v = r;
                        return true;
                    }
                }
            }

            case "toMilliseconds" or "toSeconds" or "toMinutes" or "toHours" or "toDays":
            {
                if (args[0] is not DurationValue d) return TypeError(call.Arguments[0], "duration", args[0]);
                v = Value.Of(call.Function switch
                {
                    "toMilliseconds" => d.Milliseconds,
                    "toSeconds" => d.Milliseconds / 1000,
                    "toMinutes" => d.Milliseconds / 60_000,
                    "toHours" => d.Milliseconds / 3_600_000,
                    _ => d.Milliseconds / 86_400_000,
                });
                return true;
            }

            default:
                return Fail(EvaluationErrorKind.ExtensionError, $"`{call.Function}` is not an extension function", call);
        }
    }
}
