using Writ.Policy.Ast;

namespace Writ.Policy.Syntax;

/// <summary>A syntax error: a one-line message and where in the text it was found.</summary>
public sealed record ParseError(string Message, SourceSpan Span)
{
    public int Line => Span.Line;
    public int Column => Span.Column;

    public override string ToString() => $"{Span.Line}:{Span.Column}: {Message}";
}
