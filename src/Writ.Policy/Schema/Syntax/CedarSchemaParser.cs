namespace Writ.Policy.Schema.Syntax;

/// <summary>
/// Recursive-descent parser for the Cedar schema syntax (Cedar 4.5 grammar) producing raw
/// declarations; <see cref="SchemaResolver"/> then resolves names.
/// </summary>
internal sealed class CedarSchemaParser
{
    /// <summary>Deepest nesting of <c>Set&lt;...&gt;</c> and records accepted (bounds recursion on hostile input).</summary>
    internal const int MaxTypeDepth = 64;

    private readonly List<SchemaToken> _tokens;
    private int _p;
    private int _depth;

    private CedarSchemaParser(List<SchemaToken> tokens) => _tokens = tokens;

    public static bool TryParse(string text, out List<RawNamespace>? namespaces, out SchemaError? error)
    {
        namespaces = null;
        if (!SchemaLexer.TryTokenize(text, out var tokens, out error))
            return false;
        try
        {
            namespaces = new CedarSchemaParser(tokens).ParseSchema();
            return true;
        }
        catch (SyntaxError e)
        {
            error = new SchemaError(SchemaNames.OneLine(e.Message), e.Pos.Line, e.Pos.Column);
            return false;
        }
    }

    private SchemaToken Peek => _tokens[_p];

    private SchemaToken PeekAt(int k) => _tokens[Math.Min(_p + k, _tokens.Count - 1)];

    private SchemaToken Next() => _tokens[_p < _tokens.Count - 1 ? _p++ : _p];

    private static SyntaxError Fail(SourcePos pos, string message) => new(pos, message);

    private SyntaxError Unexpected(string expected) =>
        Fail(Peek.Pos, $"expected {expected} but found {Peek.Describe()}; fix the schema syntax here");

    private void Expect(string punct)
    {
        if (!Peek.IsPunct(punct))
            throw Unexpected($"`{punct}`");
        _p++;
    }

    private bool Accept(string punct)
    {
        if (!Peek.IsPunct(punct))
            return false;
        _p++;
        return true;
    }

    private bool AcceptWord(string word)
    {
        if (!Peek.IsIdent(word))
            return false;
        _p++;
        return true;
    }

    private List<RawNamespace> ParseSchema()
    {
        var result = new List<RawNamespace>();
        var empty = new RawNamespace(string.Empty, SourcePos.None);
        while (Peek.Kind != SchemaTokenKind.End)
        {
            var annotations = ParseAnnotations();
            if (Peek.IsIdent("namespace"))
            {
                var pos = Next().Pos;
                var name = ParsePath(out _);
                var ns = new RawNamespace(name, pos);
                foreach (var (k, v) in annotations)
                    ns.Annotations[k] = v;
                Expect("{");
                while (!Accept("}"))
                {
                    if (Peek.Kind == SchemaTokenKind.End)
                        throw Unexpected("`}` to close the namespace");
                    ParseDecl(ns, ParseAnnotations());
                }

                result.Add(ns);
            }
            else
            {
                ParseDecl(empty, annotations);
            }
        }

        if (empty.EntityTypes.Count + empty.Actions.Count + empty.CommonTypes.Count > 0)
            result.Add(empty);
        return result;
    }

    private Dictionary<string, string> ParseAnnotations()
    {
        var annotations = new Dictionary<string, string>(StringComparer.Ordinal);
        while (Peek.IsPunct("@"))
        {
            Next();
            var keyToken = Peek;
            if (keyToken.Kind != SchemaTokenKind.Identifier)
                throw Unexpected("an annotation name after `@`");
            Next();
            var value = string.Empty;
            if (Accept("("))
            {
                if (Peek.Kind != SchemaTokenKind.String)
                    throw Unexpected("a string annotation value");
                value = Next().Text;
                Expect(")");
            }

            if (!annotations.TryAdd(keyToken.Text, value))
                throw Fail(keyToken.Pos, $"annotation `@{keyToken.Text}` appears twice on the same declaration; keep one");
        }

        return annotations;
    }

    private void ParseDecl(RawNamespace ns, Dictionary<string, string> annotations)
    {
        if (AcceptWord("entity"))
            ParseEntity(ns, annotations);
        else if (AcceptWord("action"))
            ParseAction(ns, annotations);
        else if (AcceptWord("type"))
            ParseTypeDecl(ns, annotations);
        else
            throw Unexpected("`entity`, `action`, `type` or `namespace`");
    }

    /// <summary>An identifier that is not a Cedar keyword (<c>true</c>, <c>in</c>, <c>if</c>, ...).</summary>
    private RawName ParseIdent(string what)
    {
        var t = Peek;
        if (t.Kind != SchemaTokenKind.Identifier)
            throw Unexpected(what);
        if (SchemaNames.PolicyKeywords.Contains(t.Text))
            throw Fail(t.Pos, $"`{t.Text}` is a reserved word and cannot be used as {what}; choose another name or quote it where strings are allowed");
        Next();
        return new RawName(t.Text, t.Pos);
    }

    private string ParsePath(out SourcePos pos)
    {
        var first = ParseIdent("a name");
        pos = first.Pos;
        if (!(Peek.IsPunct("::") && PeekAt(1).Kind == SchemaTokenKind.Identifier))
            return first.Name;
        var name = new System.Text.StringBuilder(first.Name);   // not `+=`: a long path would be quadratic
        while (Peek.IsPunct("::") && PeekAt(1).Kind == SchemaTokenKind.Identifier)
        {
            Next();
            name.Append("::").Append(ParseIdent("a name").Name);
        }

        return name.ToString();
    }

    private RawName ParsePathName()
    {
        var name = ParsePath(out var pos);
        return new RawName(name, pos);
    }

    /// <summary>Name := IDENT | STR.</summary>
    private RawName ParseName(string what)
    {
        if (Peek.Kind == SchemaTokenKind.String)
        {
            var t = Next();
            return new RawName(t.Text, t.Pos);
        }

        return ParseIdent(what);
    }

    private void ParseEntity(RawNamespace ns, Dictionary<string, string> annotations)
    {
        var names = new List<RawName> { ParseIdent("an entity type name") };
        while (Accept(","))
            names.Add(ParseIdent("an entity type name"));

        if (AcceptWord("enum"))
        {
            Expect("[");
            var ids = new List<string>();
            do
            {
                if (Peek.Kind != SchemaTokenKind.String)
                    throw Unexpected("a string entity id in the enum list");
                ids.Add(Next().Text);
            }
            while (Accept(","));
            Expect("]");
            Expect(";");
            foreach (var n in names)
                ns.EntityTypes.Add(new RawEntityDecl(n, [], null, null, ids, annotations));
            return;
        }

        var memberOf = new List<RawName>();
        if (AcceptWord("in"))
            memberOf = ParseEntityTypeList("a parent entity type", out _);

        RawType? shape = null;
        var hasEquals = Accept("=");
        if (Peek.IsPunct("{"))
            shape = ParseRecord();
        else if (hasEquals)
            throw Unexpected("`{` to start the entity's attributes");

        RawType? tags = null;
        if (AcceptWord("tags"))
            tags = ParseType();
        Expect(";");
        foreach (var n in names)
            ns.EntityTypes.Add(new RawEntityDecl(n, memberOf, shape, tags, null, annotations));
    }

    /// <summary>Path | '[' [Path {',' Path}] ']'.</summary>
    private List<RawName> ParseEntityTypeList(string what, out SourcePos pos)
    {
        pos = Peek.Pos;
        if (!Accept("["))
            return [ParsePathName()];
        var list = new List<RawName>();
        if (Accept("]"))
            return list;
        do
        {
            if (Peek.Kind != SchemaTokenKind.Identifier)
                throw Unexpected(what);
            list.Add(ParsePathName());
        }
        while (Accept(","));
        Expect("]");
        return list;
    }

    private void ParseAction(RawNamespace ns, Dictionary<string, string> annotations)
    {
        var names = new List<RawName> { ParseName("an action name") };
        while (Accept(","))
            names.Add(ParseName("an action name"));

        var parents = new List<RawActionParent>();
        if (AcceptWord("in"))
        {
            if (Accept("["))
            {
                do
                    parents.Add(ParseActionRef());
                while (Accept(","));
                Expect("]");
            }
            else
            {
                parents.Add(ParseActionRef());
            }
        }

        List<RawName>? principals = null, resources = null;
        RawType? context = null;
        if (Peek.IsIdent("appliesTo"))
        {
            var appliesPos = Next().Pos;
            Expect("{");
            bool seenContext = false, any = false;
            while (!Peek.IsPunct("}"))
            {
                any = true;
                var key = Peek;
                if (key.IsIdent("principal") || key.IsIdent("resource"))
                {
                    Next();
                    Expect(":");
                    var list = ParseEntityTypeList($"a {key.Text} entity type", out var listPos);
                    if (list.Count == 0)
                        throw Fail(listPos, $"action `{names[0].Name}` has an empty {key.Text} list in `appliesTo`; list at least one entity type or remove `appliesTo`");
                    if ((key.Text == "principal" ? principals : resources) is not null)
                        throw Fail(key.Pos, $"`{key.Text}` appears twice in the `appliesTo` of action `{names[0].Name}`; declare it once");
                    if (key.Text == "principal")
                        principals = list;
                    else
                        resources = list;
                }
                else if (key.IsIdent("context"))
                {
                    Next();
                    Expect(":");
                    if (seenContext)
                        throw Fail(key.Pos, $"`context` appears twice in the `appliesTo` of action `{names[0].Name}`; declare it once");
                    seenContext = true;
                    if (Peek.IsPunct("{"))
                    {
                        context = ParseRecord();
                    }
                    else
                    {
                        var name = ParsePathName();
                        context = new RawNamedType(name.Name, RefKind.Common, name.Pos);
                    }
                }
                else
                {
                    throw Unexpected("`principal`, `resource` or `context`");
                }

                if (!Accept(","))
                    break;
            }

            Expect("}");
            if (!any)
                throw Fail(appliesPos, $"`appliesTo` of action `{names[0].Name}` is empty; declare `principal` and `resource` or remove `appliesTo`");
            if (principals is null)
                throw Fail(appliesPos, $"`appliesTo` of action `{names[0].Name}` has no `principal`; add `principal: [...]`");
            if (resources is null)
                throw Fail(appliesPos, $"`appliesTo` of action `{names[0].Name}` has no `resource`; add `resource: [...]`");
        }

        if (AcceptWord("attributes"))
        {
            Expect("{");
            Expect("}");
        }

        Expect(";");
        foreach (var n in names)
            ns.Actions.Add(new RawActionDecl(n.Name, n.Pos, parents, principals, resources, context, annotations));
    }

    /// <summary>QualName := Name | Path '::' STR.</summary>
    private RawActionParent ParseActionRef()
    {
        var pos = Peek.Pos;
        if (Peek.Kind == SchemaTokenKind.String)
            return new RawActionParent(null, Next().Text, pos);
        var path = ParsePath(out _);
        if (Accept("::"))
        {
            if (Peek.Kind != SchemaTokenKind.String)
                throw Unexpected("a quoted action id after `::`");
            return new RawActionParent(path, Next().Text, pos);
        }

        if (path.Contains("::", StringComparison.Ordinal))
            throw Fail(pos, $"`{path}` is not an action; write a qualified action as `{path}::\"id\"`");
        return new RawActionParent(null, path, pos);
    }

    private void ParseTypeDecl(RawNamespace ns, Dictionary<string, string> annotations)
    {
        var name = ParseIdent("a common type name");
        Expect("=");
        var type = ParseType();
        Expect(";");
        ns.CommonTypes.Add(new RawCommonTypeDecl(name, type, annotations));
    }

    private RawType ParseType()
    {
        var t = Peek;
        if (++_depth > MaxTypeDepth)
            throw Fail(t.Pos, $"types are nested more than {MaxTypeDepth} levels deep; flatten them with common types");
        try
        {
            return ParseTypeCore(t);
        }
        finally
        {
            _depth--;
        }
    }

    private RawType ParseTypeCore(SchemaToken t)
    {
        if (t.IsIdent("Set") && PeekAt(1).IsPunct("<"))
        {
            Next();
            Next();
            var element = ParseType();
            Expect(">");
            return new RawSetType(element, t.Pos);
        }

        if (t.IsPunct("{"))
            return ParseRecord();
        if (t.Kind != SchemaTokenKind.Identifier)
            throw Unexpected("a type");
        var name = ParsePath(out var pos);
        return new RawNamedType(name, RefKind.CommonOrEntity, pos);
    }

    private RawRecordType ParseRecord()
    {
        var pos = Peek.Pos;
        Expect("{");
        var attrs = new List<RawAttribute>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        while (!Peek.IsPunct("}"))
        {
            var annotations = ParseAnnotations();
            var name = ParseName("an attribute name");
            var required = !Accept("?");
            Expect(":");
            var type = ParseType();
            if (!seen.Add(name.Name))
                throw Fail(name.Pos, $"attribute `{name.Name}` is declared more than once in the same record; declare it once");
            attrs.Add(new RawAttribute(name.Name, type, required, annotations, name.Pos));
            if (!Accept(","))
                break;
        }

        Expect("}");
        return new RawRecordType(attrs, false, pos);
    }

    private sealed class SyntaxError(SourcePos pos, string message) : Exception(message)
    {
        public SourcePos Pos { get; } = pos;
    }
}
