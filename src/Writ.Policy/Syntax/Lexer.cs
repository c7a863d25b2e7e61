namespace Writ.Policy.Syntax;

/// <summary>Splits Cedar text into tokens. Never throws; bad characters become <see cref="TokenKind.Error"/> tokens.</summary>
internal static class Lexer
{
    public static List<Token> Tokenize(string text)
    {
        var tokens = new List<Token>(text.Length / 3 + 4);
        var i = 0;
        var line = 1;
        var lineStart = 0;
        while (true)
        {
            // skip whitespace and comments
            while (i < text.Length)
            {
                var c = text[i];
                if (c == '\n') { i++; line++; lineStart = i; }
                else if (char.IsWhiteSpace(c)) i++; // Unicode white space, as the reference lexer accepts
                else if (c == '/' && i + 1 < text.Length && text[i + 1] == '/')
                {
                    while (i < text.Length && text[i] != '\n') i++;
                }
                else break;
            }

            if (i >= text.Length)
            {
                tokens.Add(new Token(TokenKind.Eof, i, i, line, i - lineStart + 1));
                return tokens;
            }

            var start = i;
            var col = start - lineStart + 1;
            var ch = text[i];
            TokenKind kind;
            if (IsIdentStart(ch))
            {
                i++;
                while (i < text.Length && IsIdentPart(text[i])) i++;
                kind = TokenKind.Ident;
            }
            else if (ch is >= '0' and <= '9')
            {
                i++;
                while (i < text.Length && text[i] is >= '0' and <= '9') i++;
                kind = TokenKind.Int;
            }
            else if (ch == '"')
            {
                i++;
                kind = TokenKind.Error;
                while (i < text.Length)
                {
                    var c = text[i];
                    if (c == '\\') { i += 2; continue; }
                    if (c == '"') { i++; kind = TokenKind.Str; break; }
                    if (c == '\n') { line++; lineStart = i + 1; }
                    i++;
                }

                if (i > text.Length) i = text.Length;
            }
            else
            {
                var next = i + 1 < text.Length ? text[i + 1] : '\0';
                (kind, var len) = ch switch
                {
                    '(' => (TokenKind.LParen, 1),
                    ')' => (TokenKind.RParen, 1),
                    '[' => (TokenKind.LBracket, 1),
                    ']' => (TokenKind.RBracket, 1),
                    '{' => (TokenKind.LBrace, 1),
                    '}' => (TokenKind.RBrace, 1),
                    ',' => (TokenKind.Comma, 1),
                    ';' => (TokenKind.Semi, 1),
                    '.' => (TokenKind.Dot, 1),
                    '@' => (TokenKind.At, 1),
                    '?' => (TokenKind.Question, 1),
                    '+' => (TokenKind.Plus, 1),
                    '-' => (TokenKind.Minus, 1),
                    '*' => (TokenKind.Star, 1),
                    ':' => next == ':' ? (TokenKind.ColonColon, 2) : (TokenKind.Colon, 1),
                    '=' => next == '=' ? (TokenKind.EqEq, 2) : (TokenKind.Assign, 1),
                    '!' => next == '=' ? (TokenKind.NotEq, 2) : (TokenKind.Bang, 1),
                    '<' => next == '=' ? (TokenKind.LtEq, 2) : (TokenKind.Lt, 1),
                    '>' => next == '=' ? (TokenKind.GtEq, 2) : (TokenKind.Gt, 1),
                    '&' => next == '&' ? (TokenKind.AndAnd, 2) : (TokenKind.Error, 1),
                    '|' => next == '|' ? (TokenKind.OrOr, 2) : (TokenKind.Error, 1),
                    _ => (TokenKind.Error, char.IsSurrogatePair(text, i) ? 2 : 1),
                };
                i += len;
            }

            tokens.Add(new Token(kind, start, i, line, col));
        }
    }

    private static bool IsIdentStart(char c) => c is (>= 'a' and <= 'z') or (>= 'A' and <= 'Z') or '_';

    private static bool IsIdentPart(char c) => IsIdentStart(c) || c is >= '0' and <= '9';
}
