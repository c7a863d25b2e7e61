using Writ.Policy.Ast;

namespace Writ.Policy.Validation;

/// <summary>Structural equality of expressions, ignoring source spans (what capabilities are keyed by).</summary>
internal static class ExprShape
{
    public static bool Same(Expr a, Expr b)
    {
        if (ReferenceEquals(a, b))
            return true;
        switch (a, b)
        {
            case (LiteralExpr x, LiteralExpr y):
                return x.Value.Equals(y.Value);
            case (VariableExpr x, VariableExpr y):
                return x.Variable == y.Variable;
            case (SlotExpr x, SlotExpr y):
                return x.Slot == y.Slot;
            case (IfExpr x, IfExpr y):
                return Same(x.Condition, y.Condition) && Same(x.Then, y.Then) && Same(x.Else, y.Else);
            case (AndExpr x, AndExpr y):
                return Same(x.Left, y.Left) && Same(x.Right, y.Right);
            case (OrExpr x, OrExpr y):
                return Same(x.Left, y.Left) && Same(x.Right, y.Right);
            case (UnaryExpr x, UnaryExpr y):
                return x.Op == y.Op && Same(x.Operand, y.Operand);
            case (BinaryExpr x, BinaryExpr y):
                return x.Op == y.Op && Same(x.Left, y.Left) && Same(x.Right, y.Right);
            case (ExtensionCallExpr x, ExtensionCallExpr y):
                return x.Function == y.Function && x.Arguments.Count == y.Arguments.Count
                    && x.Arguments.Zip(y.Arguments).All(p => Same(p.First, p.Second));
            case (GetAttrExpr x, GetAttrExpr y):
                return x.Attribute == y.Attribute && Same(x.Target, y.Target);
            case (HasAttrExpr x, HasAttrExpr y):
                return x.Attribute == y.Attribute && Same(x.Target, y.Target);
            case (LikeExpr x, LikeExpr y):
                return x.Pattern.Segments.SequenceEqual(y.Pattern.Segments) && Same(x.Target, y.Target);
            case (IsExpr x, IsExpr y):
                return x.EntityType == y.EntityType && Same(x.Target, y.Target);
            case (SetExpr x, SetExpr y):
                return x.Elements.Count == y.Elements.Count && x.Elements.Zip(y.Elements).All(p => Same(p.First, p.Second));
            case (RecordExpr x, RecordExpr y):
                if (x.Fields.Count != y.Fields.Count)
                    return false;
                var ys = y.Fields.ToDictionary(f => f.Key, f => f.Value, StringComparer.Ordinal);
                return x.Fields.All(f => ys.TryGetValue(f.Key, out var v) && Same(f.Value, v));
            default:
                return false;
        }
    }
}

/// <summary>A fact established by a <c>has</c> / <c>hasTag</c> test: attribute (or tag) <c>Key</c> exists on <c>On</c>.</summary>
internal sealed record Capability(Expr On, string? Attribute, Expr? Tag)
{
    public bool Matches(Capability other) =>
        Attribute == other.Attribute
        && (Tag is null ? other.Tag is null : other.Tag is not null && ExprShape.Same(Tag, other.Tag))
        && ExprShape.Same(On, other.On);
}

/// <summary>An immutable set of capabilities.</summary>
internal sealed class Caps
{
    public static readonly Caps Empty = new([]);

    private readonly Capability[] _items;

    private Caps(Capability[] items) => _items = items;

    public static Caps Of(Capability c) => new([c]);

    public bool Contains(Capability c) => _items.Any(i => i.Matches(c));

    public Caps Union(Caps other)
    {
        if (other._items.Length == 0)
            return this;
        if (_items.Length == 0)
            return other;
        var list = new List<Capability>(_items);
        foreach (var c in other._items)
        {
            if (!Contains(c))
                list.Add(c);
        }

        return new Caps([.. list]);
    }

    public Caps Intersect(Caps other)
    {
        if (_items.Length == 0 || other._items.Length == 0)
            return Empty;
        return new Caps(_items.Where(other.Contains).ToArray());
    }
}
