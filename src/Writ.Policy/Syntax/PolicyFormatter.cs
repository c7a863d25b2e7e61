using System.Text;
using Writ.Policy.Ast;
using Writ.Policy.Evaluation;

namespace Writ.Policy.Syntax;

/// <summary>
/// Prints policies and expressions as Cedar text that parses back to the same AST (parentheses are added only where
/// precedence needs them). Desugared forms print as what they mean (<c>e is T in x</c> as <c>e is T &amp;&amp; e in x</c>).
/// </summary>
public static class PolicyFormatter
{
    private const int LvlIf = 0, LvlOr = 1, LvlAnd = 2, LvlRel = 3, LvlAdd = 4, LvlMul = 5, LvlUnary = 6, LvlMember = 7;

    private static readonly HashSet<string> Reserved = new(StringComparer.Ordinal)
    {
        "true", "false", "if", "then", "else", "in", "is", "like", "has", "__cedar",
    };

    /// <summary>Formats every policy and template of the set, separated by blank lines.</summary>
    public static string Format(PolicySet set)
    {
        ArgumentNullException.ThrowIfNull(set);
        return string.Join("\n\n", set.All.Where(p => p.TemplateId is null).Select(Format)) + "\n";
    }

    public static string Format(CedarPolicy policy)
    {
        ArgumentNullException.ThrowIfNull(policy);
        var sb = new StringBuilder();
        foreach (var (k, v) in policy.Annotations) sb.Append('@').Append(k).Append('(').Append(EntityUid.Quote(v)).Append(")\n");
        sb.Append(policy.Effect == Effect.Permit ? "permit" : "forbid").Append(" (\n  ");
        Scope(sb, "principal", policy.Principal);
        sb.Append(",\n  action");
        switch (policy.Action.Op)
        {
            case ActionScopeOp.Eq: sb.Append(" == ").Append(policy.Action.Entities[0]); break;
            case ActionScopeOp.In: sb.Append(" in ").Append(policy.Action.Entities[0]); break;
            case ActionScopeOp.InSet: sb.Append(" in [").Append(string.Join(", ", policy.Action.Entities)).Append(']'); break;
        }

        sb.Append(",\n  ");
        Scope(sb, "resource", policy.Resource);
        sb.Append("\n)");
        foreach (var c in policy.Conditions)
        {
            var keyword = c.Kind == ConditionKind.When ? "when" : "unless";
            var oneLine = new StringBuilder();
            Write(oneLine, c.Body, LvlIf);
            if (keyword.Length + oneLine.Length + 6 <= MaxLine || Operands(c.Body) is not { Count: > 1 } operands)
            {
                sb.Append('\n').Append(keyword).Append(" { ").Append(oneLine).Append(" }");
                continue;
            }
            // Too long for one line: one operand of the top-level && (or ||) chain per line.
            var op = c.Body is AndExpr ? " &&" : " ||";
            sb.Append('\n').Append(keyword).Append(" {");
            for (var i = 0; i < operands.Count; i++)
            {
                sb.Append("\n  ");
                Write(sb, operands[i], c.Body is AndExpr ? LvlRel : LvlAnd);
                if (i < operands.Count - 1) sb.Append(op);
            }
            sb.Append("\n}");
        }

        sb.Append(';');
        return sb.ToString();
    }

    /// <summary>A condition longer than this is printed one operand of its top-level chain per line.</summary>
    private const int MaxLine = 80;

    /// <summary>The operands of a top-level chain of one operator (a &amp;&amp; b &amp;&amp; c), left to right; null for anything else.</summary>
    private static List<Expr>? Operands(Expr body)
    {
        if (body is not (AndExpr or OrExpr))
        {
            return null;
        }
        var list = new List<Expr>();
        var e = body;
        while (true)
        {
            switch (e)
            {
                case AndExpr a when body is AndExpr:
                    list.Add(a.Right);
                    e = a.Left;
                    continue;
                case OrExpr o when body is OrExpr:
                    list.Add(o.Right);
                    e = o.Left;
                    continue;
            }
            list.Add(e);
            list.Reverse();
            return list;
        }
    }

    public static string Format(Expr expr)
    {
        ArgumentNullException.ThrowIfNull(expr);
        var sb = new StringBuilder();
        Write(sb, expr, LvlIf);
        return sb.ToString();
    }

    private static void Scope(StringBuilder sb, string name, ScopeConstraint c)
    {
        sb.Append(name);
        var target = c.Slot is { } s ? "?" + CedarPolicy.SlotName(s) : c.Entity?.ToString();
        switch (c.Op)
        {
            case ScopeOp.Eq: sb.Append(" == ").Append(target); break;
            case ScopeOp.In: sb.Append(" in ").Append(target); break;
            case ScopeOp.Is: sb.Append(" is ").Append(c.EntityType); break;
            case ScopeOp.IsIn: sb.Append(" is ").Append(c.EntityType).Append(" in ").Append(target); break;
        }
    }

    private static int Level(Expr e) => e switch
    {
        IfExpr => LvlIf,
        OrExpr => LvlOr,
        AndExpr => LvlAnd,
        BinaryExpr b => b.Op switch
        {
            BinaryOp.Add or BinaryOp.Sub => LvlAdd,
            BinaryOp.Mul => LvlMul,
            BinaryOp.Contains or BinaryOp.ContainsAll or BinaryOp.ContainsAny or BinaryOp.GetTag or BinaryOp.HasTag => LvlMember,
            _ => LvlRel,
        },
        HasAttrExpr or LikeExpr or IsExpr => LvlRel,
        UnaryExpr u => u.Op == UnaryOp.IsEmpty ? LvlMember : LvlUnary,
        LiteralExpr { Value: LongValue { Value: < 0 } } => LvlUnary,
        _ => LvlMember,
    };

    private static void Write(StringBuilder sb, Expr e, int min)
    {
        var paren = Level(e) < min;
        if (paren) sb.Append('(');
        switch (e)
        {
            case LiteralExpr l:
                sb.Append(l.Value.ToString());
                break;
            case VariableExpr v:
                sb.Append(v.Variable.ToString().ToLowerInvariant());
                break;
            case SlotExpr s:
                sb.Append('?').Append(CedarPolicy.SlotName(s.Slot));
                break;
            case IfExpr i:
                sb.Append("if ");
                Write(sb, i.Condition, LvlIf);
                sb.Append(" then ");
                Write(sb, i.Then, LvlIf);
                sb.Append(" else ");
                Write(sb, i.Else, LvlIf);
                break;
            case OrExpr o:
                Write(sb, o.Left, LvlOr);
                sb.Append(" || ");
                Write(sb, o.Right, LvlAnd);
                break;
            case AndExpr a:
                Write(sb, a.Left, LvlAnd);
                sb.Append(" && ");
                Write(sb, a.Right, LvlRel);
                break;
            case UnaryExpr u when u.Op == UnaryOp.IsEmpty:
                Write(sb, u.Operand, LvlMember);
                sb.Append(".isEmpty()");
                break;
            case UnaryExpr u:
                sb.Append(u.Op == UnaryOp.Not ? "!" : "-");
                // a literal under unary minus is parenthesized so that it is not read as a negative literal
                var needsParens = u.Operand is UnaryExpr { Op: not UnaryOp.IsEmpty } || (u.Op == UnaryOp.Neg && u.Operand is LiteralExpr { Value: LongValue });
                Write(sb, u.Operand, needsParens ? LvlMember + 1 : LvlMember);
                break;
            case BinaryExpr b:
                WriteBinary(sb, b);
                break;
            case GetAttrExpr g:
                Write(sb, g.Target, LvlMember);
                if (IsIdent(g.Attribute)) sb.Append('.').Append(g.Attribute);
                else sb.Append('[').Append(EntityUid.Quote(g.Attribute)).Append(']');
                break;
            case HasAttrExpr h:
                Write(sb, h.Target, LvlAdd);
                sb.Append(" has ").Append(IsIdent(h.Attribute) ? h.Attribute : EntityUid.Quote(h.Attribute));
                break;
            case LikeExpr like:
                Write(sb, like.Target, LvlAdd);
                sb.Append(" like \"").Append(like.Pattern).Append('"');
                break;
            case IsExpr isx:
                Write(sb, isx.Target, LvlAdd);
                sb.Append(" is ").Append(isx.EntityType);
                break;
            case SetExpr set:
                sb.Append('[');
                for (var k = 0; k < set.Elements.Count; k++)
                {
                    if (k > 0) sb.Append(", ");
                    Write(sb, set.Elements[k], LvlIf);
                }

                sb.Append(']');
                break;
            case RecordExpr rec:
                sb.Append('{');
                for (var k = 0; k < rec.Fields.Count; k++)
                {
                    if (k > 0) sb.Append(", ");
                    sb.Append(EntityUid.Quote(rec.Fields[k].Key)).Append(": ");
                    Write(sb, rec.Fields[k].Value, LvlIf);
                }

                sb.Append('}');
                break;
            case ExtensionCallExpr call when call.IsMethod && call.Arguments.Count > 0:
                Write(sb, call.Arguments[0], LvlMember);
                sb.Append('.').Append(call.Function).Append('(');
                Args(sb, call.Arguments.Skip(1));
                sb.Append(')');
                break;
            case ExtensionCallExpr call:
                sb.Append(call.Function).Append('(');
                Args(sb, call.Arguments);
                sb.Append(')');
                break;
            default:
                throw new InvalidOperationException("unknown expression node " + e.GetType().Name);
        }

        if (paren) sb.Append(')');
    }

    private static void WriteBinary(StringBuilder sb, BinaryExpr b)
    {
        string? method = b.Op switch
        {
            BinaryOp.Contains => "contains",
            BinaryOp.ContainsAll => "containsAll",
            BinaryOp.ContainsAny => "containsAny",
            BinaryOp.GetTag => "getTag",
            BinaryOp.HasTag => "hasTag",
            _ => null,
        };
        if (method is not null)
        {
            Write(sb, b.Left, LvlMember);
            sb.Append('.').Append(method).Append('(');
            Write(sb, b.Right, LvlIf);
            sb.Append(')');
            return;
        }

        var (op, left, right) = b.Op switch
        {
            BinaryOp.Add => ("+", LvlAdd, LvlMul),
            BinaryOp.Sub => ("-", LvlAdd, LvlMul),
            BinaryOp.Mul => ("*", LvlMul, LvlUnary),
            BinaryOp.Eq => ("==", LvlAdd, LvlAdd),
            BinaryOp.NotEq => ("!=", LvlAdd, LvlAdd),
            BinaryOp.Less => ("<", LvlAdd, LvlAdd),
            BinaryOp.LessEq => ("<=", LvlAdd, LvlAdd),
            BinaryOp.Greater => (">", LvlAdd, LvlAdd),
            BinaryOp.GreaterEq => (">=", LvlAdd, LvlAdd),
            _ => ("in", LvlAdd, LvlAdd),
        };
        Write(sb, b.Left, left);
        sb.Append(' ').Append(op).Append(' ');
        Write(sb, b.Right, right);
    }

    private static void Args(StringBuilder sb, IEnumerable<Expr> args)
    {
        var first = true;
        foreach (var a in args)
        {
            if (!first) sb.Append(", ");
            first = false;
            Write(sb, a, LvlIf);
        }
    }

    private static bool IsIdent(string s)
    {
        if (s.Length == 0 || Reserved.Contains(s) || !(char.IsAsciiLetter(s[0]) || s[0] == '_')) return false;
        foreach (var c in s)
        {
            if (!(char.IsAsciiLetterOrDigit(c) || c == '_')) return false;
        }

        return true;
    }
}
