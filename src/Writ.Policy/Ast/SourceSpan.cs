namespace Writ.Policy.Ast;

/// <summary>A range of policy text: character offsets [Start, End) plus the 1-based line and column of Start.</summary>
public readonly record struct SourceSpan(int Start, int End, int Line, int Column)
{
    public static readonly SourceSpan None;

    public override string ToString() => $"{Line}:{Column}";
}
