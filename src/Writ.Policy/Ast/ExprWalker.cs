namespace Writ.Policy.Ast;

/// <summary>Helpers that visit expression trees without recursion (safe on any input).</summary>
public static class ExprWalker
{
    /// <summary>The direct sub-expressions of <paramref name="e"/>, in evaluation order.</summary>
    public static IEnumerable<Expr> Children(Expr e)
    {
        ArgumentNullException.ThrowIfNull(e);
        switch (e)
        {
            case IfExpr i: yield return i.Condition; yield return i.Then; yield return i.Else; break;
            case AndExpr a: yield return a.Left; yield return a.Right; break;
            case OrExpr o: yield return o.Left; yield return o.Right; break;
            case UnaryExpr u: yield return u.Operand; break;
            case BinaryExpr b: yield return b.Left; yield return b.Right; break;
            case ExtensionCallExpr c: foreach (var a in c.Arguments) yield return a; break;
            case GetAttrExpr g: yield return g.Target; break;
            case HasAttrExpr h: yield return h.Target; break;
            case LikeExpr l: yield return l.Target; break;
            case IsExpr s: yield return s.Target; break;
            case SetExpr s: foreach (var x in s.Elements) yield return x; break;
            case RecordExpr r: foreach (var f in r.Fields) yield return f.Value; break;
        }
    }

    /// <summary>The height of the tree (a leaf has depth 1), computed iteratively.</summary>
    public static int Depth(Expr root)
    {
        ArgumentNullException.ThrowIfNull(root);
        var max = 0;
        var stack = new Stack<(Expr, int)>();
        stack.Push((root, 1));
        while (stack.Count > 0)
        {
            var (e, d) = stack.Pop();
            if (d > max) max = d;
            foreach (var c in Children(e)) stack.Push((c, d + 1));
        }

        return max;
    }
}
