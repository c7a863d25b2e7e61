using System.Globalization;
using Writ.Policy.Ast;
using Writ.Policy.Evaluation;

namespace Writ.Policy.Syntax;

/// <summary>
/// Recursive-descent parser for Cedar policies. Never throws on bad input: errors are collected with their position,
/// and nesting deeper than <see cref="MaxDepth"/> is rejected so no input can overflow the stack.
/// </summary>
public sealed class Parser
{
    /// <summary>Maximum nesting of expressions (parentheses, sets, records, operators).</summary>
    public const int MaxDepth = 128;

    /// <summary>Maximum height of a condition's expression tree (long operator chains such as <c>a + b + c ...</c>).</summary>
    public const int MaxTreeDepth = 1000;

    private static readonly HashSet<string> ExtensionFunctions = new(StringComparer.Ordinal) { "ip", "decimal", "datetime", "duration" };

    private static readonly Dictionary<string, int> ExtensionMethods = new(StringComparer.Ordinal)
    {
        ["isIpv4"] = 0, ["isIpv6"] = 0, ["isLoopback"] = 0, ["isMulticast"] = 0, ["isInRange"] = 1,
        ["lessThan"] = 1, ["lessThanOrEqual"] = 1, ["greaterThan"] = 1, ["greaterThanOrEqual"] = 1,
        ["offset"] = 1, ["durationSince"] = 1, ["toDate"] = 0, ["toTime"] = 0,
        ["toMilliseconds"] = 0, ["toSeconds"] = 0, ["toMinutes"] = 0, ["toHours"] = 0, ["toDays"] = 0,
    };

    private static readonly HashSet<string> Reserved = new(StringComparer.Ordinal)
    {
        "true", "false", "if", "then", "else", "in", "is", "like", "has", "__cedar",
    };

    private readonly string _text;
    private readonly List<Token> _tokens;
    private readonly List<ParseError> _errors = [];
    private int _pos;
    private int _depth;

    private Parser(string text)
    {
        _text = text;
        _tokens = Lexer.Tokenize(text);
    }

    /// <summary>
    /// Parses zero or more policies. A policy's id is its <c>@id("...")</c> annotation when given, otherwise
    /// <c>policyN</c> with N its position in the text (from 0), as the reference engine numbers them. Ids must be unique.
    /// </summary>
    public static bool TryParsePolicies(string text, out IReadOnlyList<CedarPolicy> policies, out IReadOnlyList<ParseError> errors)
    {
        ArgumentNullException.ThrowIfNull(text);
        var p = new Parser(text);
        var list = new List<CedarPolicy>();
        while (p.Peek.Kind != TokenKind.Eof)
        {
            var before = p._errors.Count;
            var start = p.Peek;
            var policy = p.ParsePolicy("policy" + list.Count.ToString(CultureInfo.InvariantCulture));
            if (policy is not null && p._errors.Count == before)
            {
                if (policy.Annotations.TryGetValue("id", out var explicitId))
                {
                    if (explicitId.Length == 0)
                        p.Error(start, "@id(\"\") is empty; give the policy a non-empty id or remove the annotation");
                    policy = policy.WithId(explicitId);
                }

                list.Add(policy);
            }
            else
            {
                list.Add(null!); // keep numbering stable; the result is discarded anyway
                p.Recover();
            }
        }

        if (p._errors.Count == 0)
        {
            var seen = new Dictionary<string, CedarPolicy>(StringComparer.Ordinal);
            foreach (var policy in list)
            {
                if (!seen.TryAdd(policy.Id, policy))
                {
                    var first = seen[policy.Id];
                    p._errors.Add(new ParseError(
                        $"policy id {policy.Id} is used twice (also at {first.Span.Line}:{first.Span.Column}); give each policy a unique @id", policy.Span));
                }
            }
        }

        errors = p._errors;
        policies = p._errors.Count == 0 ? list : [];
        return p._errors.Count == 0;
    }

    /// <summary>Parses a single expression (the whole text must be one expression).</summary>
    public static bool TryParseExpression(string text, out Expr? expr, out IReadOnlyList<ParseError> errors)
    {
        ArgumentNullException.ThrowIfNull(text);
        var p = new Parser(text);
        var e = p.ParseExpr();
        if (e is not null && ExprWalker.Depth(e) > MaxTreeDepth)
        {
            p.Error(p.Peek, $"the expression is nested deeper than {MaxTreeDepth} operations; split it into simpler expressions");
        }
        else if (e is not null && p.Peek.Kind != TokenKind.Eof) p.Error(p.Peek, "unexpected " + p.Describe(p.Peek) + " after the expression");
        errors = p._errors;
        expr = p._errors.Count == 0 ? e : null;
        return expr is not null;
    }

    // ---------------------------------------------------------------- tokens

    private Token Peek => _tokens[_pos];

    private Token PeekAt(int k) => _tokens[Math.Min(_pos + k, _tokens.Count - 1)];

    private Token Advance()
    {
        var t = _tokens[_pos];
        if (_pos < _tokens.Count - 1) _pos++;
        return t;
    }

    private string TextOf(Token t) => _text.Substring(t.Start, t.End - t.Start);

    private bool IsIdent(Token t, string word) =>
        t.Kind == TokenKind.Ident && t.End - t.Start == word.Length && string.CompareOrdinal(_text, t.Start, word, 0, word.Length) == 0;

    private string Describe(Token t) => t.Kind switch
    {
        TokenKind.Eof => "end of input",
        TokenKind.Error when t.End - t.Start > 0 && _text[t.Start] == '"' => "unterminated string",
        _ => "`" + Truncate(TextOf(t)) + "`",
    };

    private static string Truncate(string s) => ErrorText.OneLine(s, 40);

    private void Error(Token at, string message) => _errors.Add(new ParseError(message, at.Span));

    private bool Expect(TokenKind kind, string what)
    {
        if (Peek.Kind == kind)
        {
            Advance();
            return true;
        }

        Error(Peek, $"expected {what} but found {Describe(Peek)}");
        return false;
    }

    private bool ExpectWord(string word)
    {
        if (IsIdent(Peek, word))
        {
            Advance();
            return true;
        }

        Error(Peek, $"expected `{word}` but found {Describe(Peek)}");
        return false;
    }

    private void Recover()
    {
        // Skip to the end of the broken policy: a `;` at brace/paren depth 0, then continue.
        var depth = 0;
        while (Peek.Kind != TokenKind.Eof)
        {
            var t = Advance();
            if (t.Kind is TokenKind.LParen or TokenKind.LBrace or TokenKind.LBracket) depth++;
            else if (t.Kind is TokenKind.RParen or TokenKind.RBrace or TokenKind.RBracket) depth = Math.Max(0, depth - 1);
            else if (t.Kind == TokenKind.Semi && depth == 0) return;
        }
    }

    private static SourceSpan Join(SourceSpan a, SourceSpan b) => new(a.Start, Math.Max(a.End, b.End), a.Line, a.Column);

    private SourceSpan SpanFrom(Token start) => new(start.Start, _tokens[Math.Max(0, _pos - 1)].End, start.Line, start.Column);

    // ---------------------------------------------------------------- policies

    private CedarPolicy? ParsePolicy(string id)
    {
        var start = Peek;
        var annotations = new Dictionary<string, string>(StringComparer.Ordinal);
        while (Peek.Kind == TokenKind.At)
        {
            Advance();
            var nameTok = Peek;
            if (nameTok.Kind != TokenKind.Ident)
            {
                Error(nameTok, $"expected an annotation name after `@` but found {Describe(nameTok)}");
                return null;
            }

            Advance();
            var value = "";
            if (Peek.Kind == TokenKind.LParen)
            {
                Advance();
                var strTok = Peek;
                if (strTok.Kind != TokenKind.Str)
                {
                    Error(strTok, $"expected a string as the annotation value but found {Describe(strTok)}");
                    return null;
                }

                Advance();
                if (!TryString(strTok, out value)) return null;
                if (!Expect(TokenKind.RParen, "`)` after the annotation value")) return null;
            }

            var name = TextOf(nameTok);
            if (!annotations.TryAdd(name, value))
            {
                Error(nameTok, $"duplicate annotation @{name}; give each annotation once per policy");
                return null;
            }
        }

        Effect effect;
        if (IsIdent(Peek, "permit")) effect = Effect.Permit;
        else if (IsIdent(Peek, "forbid")) effect = Effect.Forbid;
        else
        {
            Error(Peek, $"expected `permit` or `forbid` but found {Describe(Peek)}");
            return null;
        }

        Advance();
        if (!Expect(TokenKind.LParen, "`(` after the effect")) return null;
        var principal = ParseScope("principal", SlotId.Principal);
        if (principal is null || !Expect(TokenKind.Comma, "`,` after the principal constraint")) return null;
        var action = ParseActionScope();
        if (action is null || !Expect(TokenKind.Comma, "`,` after the action constraint")) return null;
        var resource = ParseScope("resource", SlotId.Resource);
        if (resource is null) return null;
        if (Peek.Kind == TokenKind.Comma && PeekAt(1).Kind == TokenKind.RParen) Advance();   // Cedar allows `resource,)`

        if (!Expect(TokenKind.RParen, "`)` after the resource constraint")) return null;

        var conditions = new List<Condition>();
        while (Peek.Kind == TokenKind.Ident)
        {
            ConditionKind kind;
            if (IsIdent(Peek, "when")) kind = ConditionKind.When;
            else if (IsIdent(Peek, "unless")) kind = ConditionKind.Unless;
            else
            {
                Error(Peek, $"expected `when`, `unless` or `;` but found {Describe(Peek)}");
                return null;
            }

            Advance();
            if (!Expect(TokenKind.LBrace, "`{` to open the condition")) return null;
            if (Peek.Kind == TokenKind.RBrace)
            {
                Error(Peek, "the condition is empty; write an expression between the braces or remove the clause");
                return null;
            }

            var bodyStart = Peek;
            var body = ParseExpr();
            if (body is null) return null;
            if (ExprWalker.Depth(body) > MaxTreeDepth)
            {
                Error(bodyStart, $"the condition is nested deeper than {MaxTreeDepth} operations; split it into simpler expressions");
                return null;
            }

            if (!Expect(TokenKind.RBrace, "`}` to close the condition")) return null;
            conditions.Add(new Condition(kind, body));
        }

        if (!Expect(TokenKind.Semi, "`;` at the end of the policy")) return null;
        return new CedarPolicy(id, effect, principal, action, resource, conditions, annotations, SpanFrom(start));
    }

    private ScopeConstraint? ParseScope(string variable, SlotId slot)
    {
        if (!ExpectWord(variable)) return null;
        var t = Peek;
        if (t.Kind == TokenKind.EqEq || IsIdent(t, "in"))
        {
            Advance();
            if (!ParseScopeTarget(variable, slot, out var uid, out var s)) return null;
            return new ScopeConstraint(t.Kind == TokenKind.EqEq ? ScopeOp.Eq : ScopeOp.In, uid, s);
        }

        if (IsIdent(t, "is"))
        {
            Advance();
            var type = ParsePath(out _);
            if (type is null) return null;
            if (IsIdent(Peek, "in"))
            {
                Advance();
                if (!ParseScopeTarget(variable, slot, out var uid, out var s)) return null;
                return new ScopeConstraint(ScopeOp.IsIn, uid, s, type);
            }

            return new ScopeConstraint(ScopeOp.Is, EntityType: type);
        }

        if (t.Kind is TokenKind.Comma or TokenKind.RParen) return ScopeConstraint.Any;
        Error(t, $"expected `==`, `in`, `is`, `,` or `)` after `{variable}` but found {Describe(t)}");
        return null;
    }

    private bool ParseScopeTarget(string variable, SlotId slot, out EntityUid? uid, out SlotId? slotOut)
    {
        uid = null;
        slotOut = null;
        if (Peek.Kind == TokenKind.Question)
        {
            var q = Advance();
            var name = Peek;
            if (name.Kind == TokenKind.Ident && name.Start == q.End && (IsIdent(name, "principal") || IsIdent(name, "resource")))
            {
                Advance();
                var found = IsIdent(name, "principal") ? SlotId.Principal : SlotId.Resource;
                if (found != slot)
                {
                    Error(q, $"the slot ?{TextOf(name)} cannot be used in the {variable} constraint; use ?{variable}");
                    return false;
                }

                slotOut = found;
                return true;
            }

            Error(q, "expected a template slot `?principal` or `?resource`");
            return false;
        }

        uid = ParseEntityLiteral($"an entity (e.g. Type::\"id\") or ?{variable} in the {variable} constraint");
        return uid is not null;
    }

    private ActionConstraint? ParseActionScope()
    {
        if (!ExpectWord("action")) return null;
        var t = Peek;
        if (t.Kind == TokenKind.EqEq)
        {
            Advance();
            var uid = ParseActionUid();
            return uid is null ? null : new ActionConstraint(ActionScopeOp.Eq, [uid]);
        }

        if (IsIdent(t, "in"))
        {
            Advance();
            if (Peek.Kind == TokenKind.LBracket)
            {
                Advance();
                var list = new List<EntityUid>();
                while (Peek.Kind != TokenKind.RBracket)
                {
                    var uid = ParseActionUid();
                    if (uid is null) return null;
                    list.Add(uid);
                    if (Peek.Kind == TokenKind.Comma) Advance();
                    else break;
                }

                if (!Expect(TokenKind.RBracket, "`]` to close the action list")) return null;
                return new ActionConstraint(ActionScopeOp.InSet, list);
            }

            var single = ParseActionUid();
            return single is null ? null : new ActionConstraint(ActionScopeOp.In, [single]);
        }

        if (IsIdent(t, "is"))
        {
            Error(t, "`is` is not allowed in the action constraint; use `action == ...` or `action in ...`");
            return null;
        }

        if (t.Kind is TokenKind.Comma or TokenKind.RParen) return ActionConstraint.Any;
        Error(t, $"expected `==`, `in`, `,` or `)` after `action` but found {Describe(t)}");
        return null;
    }

    private EntityUid? ParseActionUid()
    {
        var start = Peek;
        var uid = ParseEntityLiteral("an action entity such as Action::\"view\"");
        if (uid is null) return null;
        if (uid.Type != "Action" && !uid.Type.EndsWith("::Action", StringComparison.Ordinal))
        {
            Error(start, $"expected an entity of type Action in the action constraint but found {uid}; action entities have type Action or NS::Action");
            return null;
        }

        return uid;
    }

    private EntityUid? ParseEntityLiteral(string what)
    {
        var start = Peek;
        if (start.Kind != TokenKind.Ident)
        {
            Error(start, $"expected {what} but found {Describe(start)}");
            return null;
        }

        var segments = new List<string> { TextOf(Advance()) };
        while (Peek.Kind == TokenKind.ColonColon)
        {
            Advance();
            if (Peek.Kind == TokenKind.Str)
            {
                var s = Advance();
                if (!CheckPath(segments, start)) return null;
                return TryString(s, out var id) ? new EntityUid(string.Join("::", segments), id) : null;
            }

            if (Peek.Kind != TokenKind.Ident)
            {
                Error(Peek, $"expected an identifier or a quoted id after `::` but found {Describe(Peek)}");
                return null;
            }

            segments.Add(TextOf(Advance()));
        }

        Error(start, $"expected {what} but found {Describe(start)}");
        return null;
    }

    private string? ParsePath(out Token start)
    {
        start = Peek;
        if (start.Kind != TokenKind.Ident)
        {
            Error(start, $"expected an entity type name but found {Describe(start)}");
            return null;
        }

        var segments = new List<string> { TextOf(Advance()) };
        while (Peek.Kind == TokenKind.ColonColon && PeekAt(1).Kind == TokenKind.Ident)
        {
            Advance();
            segments.Add(TextOf(Advance()));
        }

        return CheckPath(segments, start) ? string.Join("::", segments) : null;
    }

    /// <summary>Cedar's reserved words cannot be bare attribute names or record keys (a quoted string can).</summary>
    private bool NotReserved(Token t, string what)
    {
        var text = TextOf(t);
        if (!Reserved.Contains(text)) return true;
        Error(t, $"`{text}` is a reserved word and cannot be {what}; quote it, e.g. \"{text}\"");
        return false;
    }

    private bool CheckPath(List<string> segments, Token at)
    {
        foreach (var s in segments)
        {
            if (Reserved.Contains(s))
            {
                Error(at, $"`{s}` is a reserved word and cannot be used in a name");
                return false;
            }
        }

        return true;
    }

    private bool TryString(Token t, out string value)
    {
        var body = _text.AsSpan(t.Start + 1, t.End - t.Start - 2);
        if (Unescaper.TryUnescape(body, pattern: false, out var segs, out var err))
        {
            value = segs[0];
            return true;
        }

        Error(t, err);
        value = "";
        return false;
    }

    // ---------------------------------------------------------------- expressions

    private bool Enter(Token at)
    {
        if (++_depth <= MaxDepth) return true;
        if (_errors.Count == 0 || _errors[^1].Message.StartsWith("expression nesting", StringComparison.Ordinal) is false)
            Error(at, $"expression nesting is deeper than {MaxDepth} levels; simplify the expression");
        return false;
    }

    /// <summary>Expr ::= Or | 'if' Expr 'then' Expr 'else' Expr</summary>
    private Expr? ParseExpr()
    {
        var start = Peek;
        if (!Enter(start)) { _depth--; return null; }
        try
        {
            if (IsIdent(start, "if"))
            {
                Advance();
                var c = ParseExpr();
                if (c is null || !ExpectWord("then")) return null;
                var t = ParseExpr();
                if (t is null || !ExpectWord("else")) return null;
                var e = ParseExpr();
                if (e is null) return null;
                return new IfExpr(c, t, e, SpanFrom(start));
            }

            return ParseOr();
        }
        finally
        {
            _depth--;
        }
    }

    private Expr? ParseOr()
    {
        var left = ParseAnd();
        while (left is not null && Peek.Kind == TokenKind.OrOr)
        {
            Advance();
            var right = ParseAnd();
            if (right is null) return null;
            left = new OrExpr(left, right, Join(left.Span, right.Span));
        }

        return left;
    }

    private Expr? ParseAnd()
    {
        var left = ParseRelation();
        while (left is not null && Peek.Kind == TokenKind.AndAnd)
        {
            Advance();
            var right = ParseRelation();
            if (right is null) return null;
            left = new AndExpr(left, right, Join(left.Span, right.Span));
        }

        return left;
    }

    private Expr? ParseRelation()
    {
        var left = ParseAdd();
        if (left is null) return null;
        var t = Peek;
        BinaryOp? op = t.Kind switch
        {
            TokenKind.EqEq => BinaryOp.Eq,
            TokenKind.NotEq => BinaryOp.NotEq,
            TokenKind.Lt => BinaryOp.Less,
            TokenKind.LtEq => BinaryOp.LessEq,
            TokenKind.Gt => BinaryOp.Greater,
            TokenKind.GtEq => BinaryOp.GreaterEq,
            TokenKind.Ident when IsIdent(t, "in") => BinaryOp.In,
            _ => null,
        };
        Expr? result;
        if (op is not null)
        {
            Advance();
            var right = ParseAdd();
            if (right is null) return null;
            result = new BinaryExpr(op.Value, left, right, Join(left.Span, right.Span));
        }
        else if (t.Kind == TokenKind.Assign)
        {
            Error(t, "`=` is not an operator; use `==` to compare");
            return null;
        }
        else if (IsIdent(t, "has"))
        {
            Advance();
            result = ParseHas(left);
        }
        else if (IsIdent(t, "like"))
        {
            Advance();
            var p = Peek;
            if (p.Kind != TokenKind.Str)
            {
                Error(p, $"expected a quoted pattern after `like` but found {Describe(p)}");
                return null;
            }

            Advance();
            if (!Unescaper.TryUnescape(_text.AsSpan(p.Start + 1, p.End - p.Start - 2), pattern: true, out var segs, out var err))
            {
                Error(p, err);
                return null;
            }

            result = new LikeExpr(left, new LikePattern(segs), Join(left.Span, p.Span));
        }
        else if (IsIdent(t, "is"))
        {
            Advance();
            var type = ParsePath(out _);
            if (type is null) return null;
            var isExpr = new IsExpr(left, type, SpanFrom(t) with { Start = left.Span.Start, Line = left.Span.Line, Column = left.Span.Column });
            if (IsIdent(Peek, "in"))
            {
                Advance();
                var right = ParseAdd();
                if (right is null) return null;
                var span = Join(left.Span, right.Span);
                result = new AndExpr(isExpr, new BinaryExpr(BinaryOp.In, left, right, span), span);
            }
            else
            {
                result = isExpr;
            }
        }
        else
        {
            return left;
        }

        if (result is null) return null;
        var n = Peek;
        if (n.Kind is TokenKind.EqEq or TokenKind.NotEq or TokenKind.Lt or TokenKind.LtEq or TokenKind.Gt or TokenKind.GtEq
            || IsIdent(n, "in") || IsIdent(n, "has") || IsIdent(n, "like") || IsIdent(n, "is"))
        {
            Error(n, $"comparison operators cannot be chained ({Describe(n)} after a comparison); add parentheses");
            return null;
        }

        return result;
    }

    private Expr? ParseHas(Expr target)
    {
        var attrs = new List<string>();
        var t = Peek;
        if (t.Kind == TokenKind.Str)
        {
            Advance();
            if (!TryString(t, out var s)) return null;
            attrs.Add(s);
        }
        else if (t.Kind == TokenKind.Ident)
        {
            if (!NotReserved(t, "an attribute name after `has`")) return null;
            Advance();
            attrs.Add(TextOf(t));
            while (Peek.Kind == TokenKind.Dot && PeekAt(1).Kind == TokenKind.Ident)
            {
                Advance();
                if (!NotReserved(Peek, "an attribute name in a `has` path")) return null;
                attrs.Add(TextOf(Advance()));
                if (attrs.Count > MaxDepth)
                {
                    Error(t, $"the `has` path is longer than {MaxDepth} attributes; shorten it");
                    return null;
                }
            }
        }
        else
        {
            Error(t, $"expected an attribute name after `has` but found {Describe(t)}");
            return null;
        }

        var span = SpanFrom(t) with { Start = target.Span.Start, Line = target.Span.Line, Column = target.Span.Column };
        Expr result = new HasAttrExpr(target, attrs[0], span);
        Expr prefix = target;
        for (var i = 1; i < attrs.Count; i++)
        {
            prefix = new GetAttrExpr(prefix, attrs[i - 1], span);
            result = new AndExpr(result, new HasAttrExpr(prefix, attrs[i], span), span);
        }

        return result;
    }

    private Expr? ParseAdd()
    {
        var left = ParseMult();
        while (left is not null && Peek.Kind is TokenKind.Plus or TokenKind.Minus)
        {
            var op = Advance().Kind == TokenKind.Plus ? BinaryOp.Add : BinaryOp.Sub;
            var right = ParseMult();
            if (right is null) return null;
            left = new BinaryExpr(op, left, right, Join(left.Span, right.Span));
        }

        return left;
    }

    private Expr? ParseMult()
    {
        var left = ParseUnary();
        while (left is not null && Peek.Kind == TokenKind.Star)
        {
            Advance();
            var right = ParseUnary();
            if (right is null) return null;
            left = new BinaryExpr(BinaryOp.Mul, left, right, Join(left.Span, right.Span));
        }

        return left;
    }

    private Expr? ParseUnary()
    {
        var start = Peek;
        if (start.Kind is not (TokenKind.Bang or TokenKind.Minus)) return ParseMember();
        var ops = new List<Token>();
        while (Peek.Kind == start.Kind) ops.Add(Advance());
        if (Peek.Kind is TokenKind.Bang or TokenKind.Minus)
        {
            Error(Peek, $"unexpected {Describe(Peek)} after {Describe(start)}; `!` and `-` cannot be mixed in one prefix, use parentheses, e.g. `!(-x)`");
            return null;
        }

        if (ops.Count > 4)
        {
            Error(start, $"too many occurrences of {Describe(start)} in a row (at most 4); use parentheses");
            return null;
        }

        Expr? operand;
        var last = ops.Count;
        if (ops[^1].Kind == TokenKind.Minus && Peek.Kind == TokenKind.Int && PeekAt(1).Kind is not (TokenKind.Dot or TokenKind.LBracket))
        {
            // `-N` is a negative literal (so that i64::MIN can be written). With an accessor, `-N.a` is `-(N.a)`, as in
            // Cedar (so `-9223372036854775808["a"]` is out of range).
            var intTok = Advance();
            if (!ulong.TryParse(_text.AsSpan(intTok.Start, intTok.End - intTok.Start), NumberStyles.None, CultureInfo.InvariantCulture, out var u)
                || u > 9223372036854775808UL)
            {
                Error(intTok, "integer literal is out of range for a 64-bit Long");
                return null;
            }

            var lit = new LiteralExpr(Value.Of(u == 9223372036854775808UL ? long.MinValue : -(long)u), SpanFrom(ops[^1]));
            operand = ParseAccessors(lit);
            last--;
        }
        else
        {
            operand = ParseMember();
        }

        if (operand is null) return null;
        for (var i = last - 1; i >= 0; i--)
        {
            var span = Join(ops[i].Span, operand.Span);
            operand = new UnaryExpr(ops[i].Kind == TokenKind.Bang ? UnaryOp.Not : UnaryOp.Neg, operand, span);
        }

        return operand;
    }

    private Expr? ParseMember()
    {
        var primary = ParsePrimary();
        return primary is null ? null : ParseAccessors(primary);
    }

    private Expr? ParseAccessors(Expr target)
    {
        while (true)
        {
            var t = Peek;
            if (t.Kind == TokenKind.Dot)
            {
                Advance();
                var name = Peek;
                if (name.Kind != TokenKind.Ident)
                {
                    Error(name, $"expected an attribute or method name after `.` but found {Describe(name)}");
                    return null;
                }

                Advance();
                var n = TextOf(name);
                if (Reserved.Contains(n))
                {
                    Error(name, $"`{n}` is a reserved word and cannot follow `.`; write [\"{n}\"] to read an attribute of that name");
                    return null;
                }

                if (Peek.Kind == TokenKind.LParen)
                {
                    var lp = Advance();
                    var args = ParseArgs(lp);
                    if (args is null) return null;
                    var call = MakeMethod(target, name, n, args);
                    if (call is null) return null;
                    target = call;
                }
                else
                {
                    target = new GetAttrExpr(target, n, Join(target.Span, name.Span));
                }
            }
            else if (t.Kind == TokenKind.LBracket)
            {
                Advance();
                var s = Peek;
                if (s.Kind != TokenKind.Str)
                {
                    Error(s, $"expected a quoted attribute name inside `[...]` but found {Describe(s)}");
                    return null;
                }

                Advance();
                if (!TryString(s, out var attr)) return null;
                if (!Expect(TokenKind.RBracket, "`]` after the attribute name")) return null;
                target = new GetAttrExpr(target, attr, SpanFrom(t) with { Start = target.Span.Start, Line = target.Span.Line, Column = target.Span.Column });
            }
            else
            {
                return target;
            }
        }
    }

    private Expr? MakeMethod(Expr receiver, Token nameTok, string name, List<Expr> args)
    {
        var span = SpanFrom(nameTok) with { Start = receiver.Span.Start, Line = receiver.Span.Line, Column = receiver.Span.Column };
        int arity;
        switch (name)
        {
            case "contains": case "containsAll": case "containsAny": case "getTag": case "hasTag": arity = 1; break;
            case "isEmpty": arity = 0; break;
            default:
                if (!ExtensionMethods.TryGetValue(name, out arity))
                {
                    Error(nameTok, $"`{name}` is not a Cedar method; check the spelling");
                    return null;
                }

                break;
        }

        if (args.Count != arity && !ExtensionMethods.ContainsKey(name))
        {
            Error(nameTok, $"method `{name}` takes {arity} argument{(arity == 1 ? "" : "s")} but was given {args.Count}");
            return null;
        }

        return name switch
        {
            "contains" => new BinaryExpr(BinaryOp.Contains, receiver, args[0], span),
            "containsAll" => new BinaryExpr(BinaryOp.ContainsAll, receiver, args[0], span),
            "containsAny" => new BinaryExpr(BinaryOp.ContainsAny, receiver, args[0], span),
            "getTag" => new BinaryExpr(BinaryOp.GetTag, receiver, args[0], span),
            "hasTag" => new BinaryExpr(BinaryOp.HasTag, receiver, args[0], span),
            "isEmpty" => new UnaryExpr(UnaryOp.IsEmpty, receiver, span),
            _ => new ExtensionCallExpr(name, [receiver, .. args], isMethod: true, span),
        };
    }

    private List<Expr>? ParseArgs(Token open)
    {
        var args = new List<Expr>();
        if (Peek.Kind == TokenKind.RParen)
        {
            Advance();
            return args;
        }

        while (true)
        {
            var e = ParseExpr();
            if (e is null) return null;
            args.Add(e);
            if (Peek.Kind == TokenKind.Comma)
            {
                Advance();
                if (Peek.Kind != TokenKind.RParen) continue;   // Cedar allows one trailing comma: f(a, b,)
            }

            if (Peek.Kind == TokenKind.RParen)
            {
                Advance();
                return args;
            }

            Error(Peek, $"expected `,` or `)` in the argument list opened at {open.Line}:{open.Column} but found {Describe(Peek)}");
            return null;
        }
    }

    private Expr? ParsePrimary()
    {
        var t = Peek;
        switch (t.Kind)
        {
            case TokenKind.Int:
            {
                Advance();
                if (!long.TryParse(_text.AsSpan(t.Start, t.End - t.Start), NumberStyles.None, CultureInfo.InvariantCulture, out var l))
                {
                    Error(t, "integer literal is out of range for a 64-bit Long");
                    return null;
                }

                return new LiteralExpr(Value.Of(l), t.Span);
            }

            case TokenKind.Str:
            {
                Advance();
                return TryString(t, out var s) ? new LiteralExpr(Value.Of(s), t.Span) : null;
            }

            case TokenKind.LParen:
            {
                Advance();
                var e = ParseExpr();
                if (e is null || !Expect(TokenKind.RParen, $"`)` to close the `(` at {t.Line}:{t.Column}")) return null;
                return e;
            }

            case TokenKind.LBracket:
            {
                if (!Enter(t)) { _depth--; return null; }
                try
                {
                    Advance();
                    var items = new List<Expr>();
                    while (Peek.Kind != TokenKind.RBracket)
                    {
                        var e = ParseExpr();
                        if (e is null) return null;
                        items.Add(e);
                        if (Peek.Kind == TokenKind.Comma) Advance();
                        else break;
                    }

                    if (!Expect(TokenKind.RBracket, $"`]` to close the set opened at {t.Line}:{t.Column}")) return null;
                    return new SetExpr(items, SpanFrom(t));
                }
                finally
                {
                    _depth--;
                }
            }

            case TokenKind.LBrace:
            {
                if (!Enter(t)) { _depth--; return null; }
                try
                {
                    Advance();
                    var fields = new List<KeyValuePair<string, Expr>>();
                    var seen = new HashSet<string>(StringComparer.Ordinal);
                    while (Peek.Kind != TokenKind.RBrace)
                    {
                        var k = Peek;
                        string key;
                        if (k.Kind == TokenKind.Ident)
                        {
                            if (!NotReserved(k, "a record key")) return null;
                            key = TextOf(k);
                        }
                        else if (k.Kind == TokenKind.Str)
                        {
                            if (!TryString(k, out key)) return null;
                        }
                        else
                        {
                            Error(k, $"expected a record key (identifier or quoted string) but found {Describe(k)}");
                            return null;
                        }

                        Advance();
                        if (!Expect(TokenKind.Colon, "`:` after the record key")) return null;
                        var v = ParseExpr();
                        if (v is null) return null;
                        if (!seen.Add(key))
                        {
                            Error(k, $"duplicate key \"{key}\" in record literal; give each key once");
                            return null;
                        }

                        fields.Add(new(key, v));
                        if (Peek.Kind == TokenKind.Comma) Advance();
                        else break;
                    }

                    if (!Expect(TokenKind.RBrace, $"`}}` to close the record opened at {t.Line}:{t.Column}")) return null;
                    return new RecordExpr(fields, SpanFrom(t));
                }
                finally
                {
                    _depth--;
                }
            }

            case TokenKind.Question:
                Error(t, "template slots (?principal, ?resource) may appear only in the policy scope");
                return null;

            case TokenKind.Ident:
                return ParseNamePrimary();

            default:
                Error(t, $"expected an expression but found {Describe(t)}");
                return null;
        }
    }

    private Expr? ParseNamePrimary()
    {
        var start = Peek;
        var first = TextOf(Advance());
        if (first == "true") return new LiteralExpr(BoolValue.True, start.Span);
        if (first == "false") return new LiteralExpr(BoolValue.False, start.Span);
        var segments = new List<string> { first };
        while (Peek.Kind == TokenKind.ColonColon)
        {
            Advance();
            var n = Peek;
            if (n.Kind == TokenKind.Str)
            {
                Advance();
                if (!CheckPath(segments, start)) return null;
                return TryString(n, out var id) ? new LiteralExpr(Value.Of(new EntityUid(string.Join("::", segments), id)), SpanFrom(start)) : null;
            }

            if (n.Kind != TokenKind.Ident)
            {
                Error(n, $"expected an identifier or a quoted id after `::` but found {Describe(n)}");
                return null;
            }

            segments.Add(TextOf(Advance()));
        }

        var name = string.Join("::", segments);
        if (Peek.Kind == TokenKind.LParen)
        {
            var lp = Advance();
            var args = ParseArgs(lp);
            if (args is null) return null;
            if (!ExtensionFunctions.Contains(name))
            {
                Error(start, ExtensionMethods.ContainsKey(name)
                    ? $"`{name}` is a method, not a function; call it as `value.{name}(...)`"
                    : $"`{name}` is not a Cedar function; the functions are ip, decimal, datetime and duration");
                return null;
            }

            return new ExtensionCallExpr(name, args, isMethod: false, SpanFrom(start));
        }

        if (segments.Count == 1)
        {
            switch (first)
            {
                case "principal": return new VariableExpr(Variable.Principal, start.Span);
                case "action": return new VariableExpr(Variable.Action, start.Span);
                case "resource": return new VariableExpr(Variable.Resource, start.Span);
                case "context": return new VariableExpr(Variable.Context, start.Span);
            }
        }

        Error(start, $"unknown name `{name}`; expected principal, action, resource, context, a literal or an entity such as {name}::\"id\"");
        return null;
    }
}
