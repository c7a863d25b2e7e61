using Writ.Policy.Evaluation;

namespace Writ.Policy.Ast;

/// <summary>The four request variables.</summary>
public enum Variable { Principal, Action, Resource, Context }

/// <summary>Template slots.</summary>
public enum SlotId { Principal, Resource }

public enum UnaryOp { Not, Neg, IsEmpty }

public enum BinaryOp
{
    Eq, NotEq, Less, LessEq, Greater, GreaterEq,
    Add, Sub, Mul,
    In, Contains, ContainsAll, ContainsAny, GetTag, HasTag,
}

/// <summary>A Cedar expression. Nodes are immutable; every node carries the span of text it came from.</summary>
public abstract class Expr
{
    protected Expr(SourceSpan span) => Span = span;

    public SourceSpan Span { get; }
}

/// <summary>A literal: Bool, Long, String or entity uid.</summary>
public sealed class LiteralExpr(Value value, SourceSpan span = default) : Expr(span)
{
    public Value Value { get; } = value;
}

public sealed class VariableExpr(Variable variable, SourceSpan span = default) : Expr(span)
{
    public Variable Variable { get; } = variable;
}

/// <summary><c>?principal</c> or <c>?resource</c> (templates only).</summary>
public sealed class SlotExpr(SlotId slot, SourceSpan span = default) : Expr(span)
{
    public SlotId Slot { get; } = slot;
}

public sealed class IfExpr(Expr condition, Expr then, Expr @else, SourceSpan span = default) : Expr(span)
{
    public Expr Condition { get; } = condition;
    public Expr Then { get; } = then;
    public Expr Else { get; } = @else;
}

public sealed class AndExpr(Expr left, Expr right, SourceSpan span = default) : Expr(span)
{
    public Expr Left { get; } = left;
    public Expr Right { get; } = right;
}

public sealed class OrExpr(Expr left, Expr right, SourceSpan span = default) : Expr(span)
{
    public Expr Left { get; } = left;
    public Expr Right { get; } = right;
}

public sealed class UnaryExpr(UnaryOp op, Expr operand, SourceSpan span = default) : Expr(span)
{
    public UnaryOp Op { get; } = op;
    public Expr Operand { get; } = operand;
}

/// <summary>Binary operators and the built-in two-argument methods (<c>contains</c>, <c>getTag</c>, ...; Left is the receiver).</summary>
public sealed class BinaryExpr(BinaryOp op, Expr left, Expr right, SourceSpan span = default) : Expr(span)
{
    public BinaryOp Op { get; } = op;
    public Expr Left { get; } = left;
    public Expr Right { get; } = right;
}

/// <summary>
/// An extension function call, e.g. <c>ip("10.0.0.1")</c>, or an extension method call, e.g. <c>a.lessThan(b)</c>
/// (<see cref="IsMethod"/>; the receiver is <c>Arguments[0]</c>).
/// </summary>
public sealed class ExtensionCallExpr(string function, IReadOnlyList<Expr> arguments, bool isMethod, SourceSpan span = default) : Expr(span)
{
    public string Function { get; } = function;
    public IReadOnlyList<Expr> Arguments { get; } = arguments;
    public bool IsMethod { get; } = isMethod;

    /// <summary>
    /// Evaluation cache for constructor calls on literals (e.g. <c>ip("10.0.0.0/8")</c>): the result never changes, so
    /// it is computed once. Holds a Value or an EvaluationError; benign races only recompute the same result.
    /// </summary>
    internal object? ConstantResult { get; set; }

    internal bool HasOnlyLiteralArguments { get; } = !isMethod && arguments.All(a => a is LiteralExpr);
}

/// <summary><c>e.attr</c> or <c>e["attr"]</c>.</summary>
public sealed class GetAttrExpr(Expr target, string attribute, SourceSpan span = default) : Expr(span)
{
    public Expr Target { get; } = target;
    public string Attribute { get; } = attribute;
}

/// <summary><c>e has attr</c>. A dotted path <c>e has a.b</c> is parsed as <c>e has a &amp;&amp; e.a has b</c>, as Cedar does.</summary>
public sealed class HasAttrExpr(Expr target, string attribute, SourceSpan span = default) : Expr(span)
{
    public Expr Target { get; } = target;
    public string Attribute { get; } = attribute;
}

public sealed class LikeExpr(Expr target, LikePattern pattern, SourceSpan span = default) : Expr(span)
{
    public Expr Target { get; } = target;
    public LikePattern Pattern { get; } = pattern;
}

/// <summary><c>e is T</c>. <c>e is T in x</c> is parsed as <c>e is T &amp;&amp; e in x</c>.</summary>
public sealed class IsExpr(Expr target, string entityType, SourceSpan span = default) : Expr(span)
{
    public Expr Target { get; } = target;
    public string EntityType { get; } = entityType;
}

public sealed class SetExpr(IReadOnlyList<Expr> elements, SourceSpan span = default) : Expr(span)
{
    public IReadOnlyList<Expr> Elements { get; } = elements;
}

/// <summary>A record literal; keys are unique (duplicates are a parse error).</summary>
public sealed class RecordExpr(IReadOnlyList<KeyValuePair<string, Expr>> fields, SourceSpan span = default) : Expr(span)
{
    public IReadOnlyList<KeyValuePair<string, Expr>> Fields { get; } = fields;
}
