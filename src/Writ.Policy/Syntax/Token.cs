using Writ.Policy.Ast;

namespace Writ.Policy.Syntax;

internal enum TokenKind
{
    Eof, Error, Ident, Int, Str,
    LParen, RParen, LBracket, RBracket, LBrace, RBrace,
    Comma, Semi, Dot, ColonColon, Colon, At, Question,
    EqEq, NotEq, Lt, LtEq, Gt, GtEq, AndAnd, OrOr, Bang, Plus, Minus, Star, Assign,
}

internal readonly record struct Token(TokenKind Kind, int Start, int End, int Line, int Column)
{
    public SourceSpan Span => new(Start, End, Line, Column);
}
