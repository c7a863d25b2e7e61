namespace Writ.Policy.Schema.Syntax;

/// <summary>
/// Turns the raw (as-written) declarations of both schema syntaxes into a resolved
/// <see cref="CedarSchema"/>, following Cedar's rules: an unqualified name <c>T</c> used in namespace
/// <c>NS</c> means <c>NS::T</c> if that is declared, else <c>T</c> in the empty namespace; at each
/// step a common type wins over an entity type; <c>Bool</c>/<c>Long</c>/<c>String</c> and the
/// extension types are common types of the empty namespace unless the schema declares those names
/// there (then <c>__cedar::Long</c> etc. still reach them). Common types are inlined (cycles are
/// errors); declarations may not shadow empty-namespace declarations (Cedar RFC 70).
/// </summary>
internal sealed class SchemaResolver
{
    private const string CedarNamespace = "__cedar";

    private static readonly Dictionary<string, SchemaType> BuiltinTypes = new(StringComparer.Ordinal)
    {
        ["Bool"] = BoolType.Instance,
        ["Long"] = LongType.Instance,
        ["String"] = StringType.Instance,
        ["ipaddr"] = new ExtensionType("ipaddr"),
        ["decimal"] = new ExtensionType("decimal"),
        ["datetime"] = new ExtensionType("datetime"),
        ["duration"] = new ExtensionType("duration"),
    };

    private readonly List<SchemaError> _errors = [];
    private readonly Dictionary<string, (RawEntityDecl Decl, string Ns)> _entities = new(StringComparer.Ordinal);
    private readonly Dictionary<string, (RawCommonTypeDecl Decl, string Ns)> _commons = new(StringComparer.Ordinal);
    private readonly Dictionary<ActionRef, (RawActionDecl Decl, string Ns)> _actions = [];
    private readonly HashSet<string> _actionTypes = new(StringComparer.Ordinal);
    private readonly Dictionary<string, SchemaType> _builtinAliases = new(StringComparer.Ordinal);
    private readonly Dictionary<string, SchemaType?> _resolvedCommons = new(StringComparer.Ordinal);
    private readonly HashSet<string> _commonsInProgress = new(StringComparer.Ordinal);

    /// <summary>Longest chain of common types defined through each other (bounds recursion on hostile input).</summary>
    internal const int MaxCommonTypeChain = 64;

    private SchemaResolver()
    {
    }

    public static bool TryResolve(IReadOnlyList<RawNamespace> namespaces, out CedarSchema? schema, out IReadOnlyList<SchemaError> errors)
    {
        var r = new SchemaResolver();
        schema = r.Resolve(namespaces);
        errors = r._errors;
        if (r._errors.Count > 0)
            schema = null;
        return schema is not null;
    }

    private void Error(SourcePos pos, string message) => _errors.Add(new SchemaError(SchemaNames.OneLine(message), pos.Line, pos.Column));

    private CedarSchema? Resolve(IReadOnlyList<RawNamespace> namespaces)
    {
        CollectDefinitions(namespaces);
        if (_errors.Count > 0)
            return null;
        CheckShadowing();
        if (_errors.Count > 0)
            return null;

        foreach (var (name, type) in BuiltinTypes)
        {
            if (!_entities.ContainsKey(name) && !_commons.ContainsKey(name))
                _builtinAliases[name] = type;
        }

        foreach (var name in _commons.Keys)
            ResolveCommon(name, _commons[name].Decl.Name.Pos);

        var entityTypes = new List<EntityTypeDef>();
        foreach (var (name, (decl, ns)) in _entities)
        {
            var def = ResolveEntity(name, decl, ns);
            if (def is not null)
                entityTypes.Add(def);
        }

        var actions = new List<ActionDef>();
        foreach (var (id, (decl, ns)) in _actions)
        {
            var def = ResolveAction(id, decl, ns);
            if (def is not null)
                actions.Add(def);
        }

        if (_errors.Count > 0)
            return null;
        CheckActionCycles(actions);
        return _errors.Count > 0 ? null : new CedarSchema(entityTypes, actions);
    }

    private void CollectDefinitions(IReadOnlyList<RawNamespace> namespaces)
    {
        var seenNamespaces = new HashSet<string>(StringComparer.Ordinal);
        foreach (var ns in namespaces)
        {
            if (!seenNamespaces.Add(ns.Name))
            {
                Error(ns.Pos, $"namespace `{ns.Name}` is declared more than once; merge its declarations into one `namespace {ns.Name} {{ ... }}` block");
                continue;
            }

            if (ns.Name.Length > 0 && !CheckPath(ns.Name, ns.Pos, "namespace name"))
                continue;
            if (ns.Name.Split("::").Contains(CedarNamespace))
            {
                Error(ns.Pos, $"namespace `{ns.Name}` uses the reserved name `__cedar`; choose another namespace name");
                continue;
            }

            foreach (var e in ns.EntityTypes)
            {
                if (!CheckDeclaredName(e.Name, "entity type", commonType: false))
                    continue;
                if (e.Name.Name == "Action")
                {
                    Error(e.Name.Pos, "`Action` cannot be declared as an entity type: it is the type of the namespace's actions; declare actions with `action` or rename the entity type");
                    continue;
                }

                var fq = SchemaNames.Qualify(ns.Name, e.Name.Name);
                if (!_entities.TryAdd(fq, (e, ns.Name)))
                    Error(e.Name.Pos, $"entity type `{fq}` is declared more than once; declare each entity type once");
            }

            foreach (var c in ns.CommonTypes)
            {
                if (!CheckDeclaredName(c.Name, "common type", commonType: true))
                    continue;
                var fq = SchemaNames.Qualify(ns.Name, c.Name.Name);
                if (!_commons.TryAdd(fq, (c, ns.Name)))
                    Error(c.Name.Pos, $"common type `{fq}` is declared more than once; declare each common type once");
            }

            var actionType = SchemaNames.Qualify(ns.Name, "Action");
            foreach (var a in ns.Actions)
            {
                var id = new ActionRef(actionType, a.Name);
                if (!_actions.TryAdd(id, (a, ns.Name)))
                    Error(a.Pos, $"action {id} is declared more than once; declare each action once");
                _actionTypes.Add(actionType);
            }
        }
    }

    private bool CheckDeclaredName(RawName name, string what, bool commonType)
    {
        if (!SchemaNames.IsIdentifier(name.Name))
        {
            Error(name.Pos, $"`{Writ.Policy.Syntax.ErrorText.OneLine(name.Name, 64)}` is not a valid {what} name; use an identifier such as `Photo` (letters, digits, `_`)");
            return false;
        }

        if (name.Name == CedarNamespace || SchemaNames.PolicyKeywords.Contains(name.Name))
        {
            Error(name.Pos, $"`{Writ.Policy.Syntax.ErrorText.OneLine(name.Name, 64)}` is a reserved word and cannot name a {what}; choose another name");
            return false;
        }

        if (commonType && SchemaNames.ReservedTypeNames.Contains(name.Name))
        {
            Error(name.Pos, $"`{Writ.Policy.Syntax.ErrorText.OneLine(name.Name, 64)}` is a reserved type name and cannot name a common type; choose another name");
            return false;
        }

        return true;
    }

    private bool CheckPath(string path, SourcePos pos, string what)
    {
        foreach (var part in path.Split("::"))
        {
            if (!SchemaNames.IsIdentifier(part) || SchemaNames.PolicyKeywords.Contains(part))
            {
                Error(pos, $"`{path}` is not a valid {what}: `{part}` is reserved or not an identifier; use identifiers separated by `::`");
                return false;
            }
        }

        return true;
    }

    private void CheckShadowing()
    {
        var qualifiedByBasename = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var name in _entities.Keys.Concat(_commons.Keys))
        {
            if (name.Contains("::", StringComparison.Ordinal))
                qualifiedByBasename.TryAdd(SchemaNames.Split(name).Basename, name);
        }

        foreach (var (name, (decl, _)) in _entities)
        {
            if (!name.Contains("::", StringComparison.Ordinal) && qualifiedByBasename.TryGetValue(name, out var shadowing))
                Error(decl.Name.Pos, $"the definition of `{shadowing}` illegally shadows the empty-namespace definition of `{name}`; rename one of them");
        }

        foreach (var (name, (decl, _)) in _commons)
        {
            if (!name.Contains("::", StringComparison.Ordinal) && qualifiedByBasename.TryGetValue(name, out var shadowing))
                Error(decl.Name.Pos, $"the definition of `{shadowing}` illegally shadows the empty-namespace definition of `{name}`; rename one of them");
        }

        var qualifiedActions = new Dictionary<string, ActionRef>(StringComparer.Ordinal);
        foreach (var id in _actions.Keys)
        {
            if (id.Type.Contains("::", StringComparison.Ordinal))
                qualifiedActions.TryAdd(id.Id, id);
        }

        foreach (var (id, (decl, _)) in _actions)
        {
            if (!id.Type.Contains("::", StringComparison.Ordinal) && qualifiedActions.TryGetValue(id.Id, out var shadowing))
                Error(decl.Pos, $"the definition of action {shadowing} illegally shadows the empty-namespace action {id}; rename one of them");
        }
    }

    private static IEnumerable<string> Possibilities(string name, string ns)
    {
        if (name.Contains("::", StringComparison.Ordinal) || ns.Length == 0)
            return [name];
        return [ns + "::" + name, name];
    }

    private bool IsEntityOrActionType(string fq) => _entities.ContainsKey(fq) || _actionTypes.Contains(fq);

    /// <summary>Resolves a type reference to a type, or null (error reported).</summary>
    private SchemaType? ResolveName(string name, RefKind kind, string ns, SourcePos pos)
    {
        if (!CheckPath(name, pos, "type name"))
            return null;
        foreach (var p in Possibilities(name, ns))
        {
            if (kind != RefKind.Entity)
            {
                if (_commons.ContainsKey(p))
                    return ResolveCommon(p, pos);
                if (_builtinAliases.TryGetValue(p, out var alias))
                    return alias;
                if (p.StartsWith(CedarNamespace + "::", StringComparison.Ordinal)
                    && BuiltinTypes.TryGetValue(p[(CedarNamespace.Length + 2)..], out var builtin))
                    return builtin;
            }

            if (kind != RefKind.Common && IsEntityOrActionType(p))
                return new EntityRefType(p);
        }

        var what = kind switch
        {
            RefKind.Entity => "an entity type",
            RefKind.Common => "a common type",
            _ => "a common type or an entity type",
        };
        var tried = string.Join(" nor ", Possibilities(name, ns).Select(p => $"`{p}`"));
        Error(pos, $"unknown type `{name}`: {(tried.Contains(" nor ", StringComparison.Ordinal) ? "neither " : string.Empty)}{tried} is declared as {what}; declare it or fix the name");
        return null;
    }

    private SchemaType? ResolveCommon(string fq, SourcePos usePos)
    {
        if (_resolvedCommons.TryGetValue(fq, out var done))
            return done;
        var (decl, ns) = _commons[fq];
        if (!_commonsInProgress.Add(fq))
        {
            Error(usePos, $"common type `{fq}` refers to itself (a cycle of common types); break the cycle");
            _resolvedCommons[fq] = null;
            return null;
        }

        if (_commonsInProgress.Count > MaxCommonTypeChain)
        {
            Error(usePos, $"common type `{fq}` is defined through more than {MaxCommonTypeChain} nested common types; simplify the definitions");
            _commonsInProgress.Remove(fq);
            _resolvedCommons[fq] = null;
            return null;
        }

        var t = CheckDepth(ResolveType(decl.Type, ns), decl.Name.Pos, $"common type `{fq}`");
        _commonsInProgress.Remove(fq);
        if (!_resolvedCommons.ContainsKey(fq))
            _resolvedCommons[fq] = t;
        return _resolvedCommons[fq];
    }

    private readonly Dictionary<SchemaType, int> _depths = new(ReferenceEqualityComparer.Instance);

    /// <summary>Rejects types nested deeper than the parsers accept once common types are expanded.</summary>
    private SchemaType? CheckDepth(SchemaType? t, SourcePos pos, string what)
    {
        if (t is null || Depth(t) <= CedarSchemaParser.MaxTypeDepth)
            return t;
        Error(pos, $"{what} nests types more than {CedarSchemaParser.MaxTypeDepth} levels deep once common types are expanded; flatten it");
        return null;
    }

    private int Depth(SchemaType t)
    {
        if (_depths.TryGetValue(t, out var d))
            return d;
        d = 1 + t switch
        {
            SetType s => Depth(s.Element),
            RecordType r => r.Attributes.Count == 0 ? 0 : r.Attributes.Values.Max(a => Depth(a.Type)),
            _ => 0,
        };
        _depths[t] = d;
        return d;
    }

    private SchemaType? ResolveType(RawType raw, string ns)
    {
        switch (raw)
        {
            case RawBuiltinType b:
                return b.Type;
            case RawNamedType n:
                return ResolveName(n.Name, n.Kind, ns, n.Pos);
            case RawSetType s:
                var element = ResolveType(s.Element, ns);
                return element is null ? null : new SetType(element);
            case RawRecordType r:
                return ResolveRecord(r, ns);
            default:
                throw new InvalidOperationException($"Unexpected raw type {raw.GetType().Name}.");
        }
    }

    private RecordType? ResolveRecord(RawRecordType r, string ns)
    {
        var attrs = new Dictionary<string, AttributeDef>(StringComparer.Ordinal);
        var ok = true;
        foreach (var a in r.Attributes)
        {
            var t = ResolveType(a.Type, ns);
            if (t is null)
            {
                ok = false;
                continue;
            }

            if (!attrs.TryAdd(a.Name, new AttributeDef(t, a.Required, a.Annotations)))
            {
                Error(a.Pos, $"attribute `{a.Name}` is declared more than once in the same record; declare it once");
                ok = false;
            }
        }

        return ok ? new RecordType(attrs, r.AdditionalAttributes) : null;
    }

    private string? ResolveEntityTypeName(RawName name, string ns, string role)
    {
        if (ResolveName(name.Name, RefKind.Entity, ns, name.Pos) is not EntityRefType e)
            return null;
        if (!_entities.ContainsKey(e.EntityType))
        {
            Error(name.Pos, $"`{e.EntityType}` is an action entity type and cannot be used as {role}; use a declared entity type");
            return null;
        }

        return e.EntityType;
    }

    private EntityTypeDef? ResolveEntity(string name, RawEntityDecl decl, string ns)
    {
        var memberOf = new List<string>();
        var ok = true;
        foreach (var m in decl.MemberOf)
        {
            var t = ResolveEntityTypeName(m, ns, "a parent entity type");
            if (t is null)
                ok = false;
            else if (!memberOf.Contains(t))
                memberOf.Add(t);
        }

        var shape = RecordType.Empty;
        if (decl.Shape is not null)
        {
            var t = CheckDepth(ResolveType(decl.Shape, ns), decl.Name.Pos, $"the shape of entity type `{name}`");
            if (t is RecordType r)
            {
                shape = r;
            }
            else
            {
                if (t is not null)
                    Error(decl.Shape.Pos, $"the shape of entity type `{name}` must be a record type, not `{t.ToShortCedar()}`; declare its attributes as `{{ ... }}`");
                ok = false;
            }
        }

        SchemaType? tags = null;
        if (decl.Tags is not null)
        {
            tags = CheckDepth(ResolveType(decl.Tags, ns), decl.Name.Pos, $"the tags of entity type `{name}`");
            ok &= tags is not null;
        }

        if (decl.EnumIds is { Count: 0 })
        {
            Error(decl.Name.Pos, $"enumerated entity type `{name}` has no values; list at least one entity id");
            ok = false;
        }

        return ok ? new EntityTypeDef(name, memberOf, shape, tags, decl.EnumIds, decl.Annotations) : null;
    }

    private ActionDef? ResolveAction(ActionRef id, RawActionDecl decl, string ns)
    {
        var ok = true;
        var memberOf = new List<ActionRef>();
        foreach (var parent in decl.MemberOf)
        {
            ActionRef? found = null;
            foreach (var p in Possibilities(parent.Type ?? "Action", ns))
            {
                var candidate = new ActionRef(p, parent.Id);
                if (_actions.ContainsKey(candidate))
                {
                    found = candidate;
                    break;
                }
            }

            if (found is null)
            {
                var written = parent.Type is null ? SchemaNames.QuoteString(parent.Id) : $"{parent.Type}::{SchemaNames.QuoteString(parent.Id)}";
                Error(parent.Pos, $"action {id} is declared a member of {written}, which is not a declared action; declare that action or fix the name");
                ok = false;
            }
            else if (!memberOf.Contains(found))
            {
                memberOf.Add(found);
            }
        }

        List<string>? ResolveList(IReadOnlyList<RawName>? names, string role)
        {
            if (names is null)
                return null;
            var list = new List<string>();
            foreach (var n in names)
            {
                var t = ResolveEntityTypeName(n, ns, role);
                if (t is null)
                    ok = false;
                else if (!list.Contains(t))
                    list.Add(t);
            }

            return list;
        }

        var principals = ResolveList(decl.PrincipalTypes, "a principal type");
        var resources = ResolveList(decl.ResourceTypes, "a resource type");
        var context = RecordType.Empty;
        if (decl.Context is not null)
        {
            var t = CheckDepth(ResolveType(decl.Context, ns), decl.Pos, $"the context of action {id}");
            if (t is RecordType r)
            {
                context = r;
            }
            else
            {
                if (t is not null)
                    Error(decl.Context.Pos, $"the context of action {id} must be a record type, not `{t.ToShortCedar()}`; declare it as `{{ ... }}`");
                ok = false;
            }
        }

        return ok ? new ActionDef(id, memberOf, principals, resources, context, decl.Annotations) : null;
    }

    private void CheckActionCycles(List<ActionDef> actions)
    {
        var byId = actions.ToDictionary(a => a.Id);
        var state = new Dictionary<ActionRef, int>(); // 1 = visiting, 2 = done
        foreach (var a in actions)
        {
            if (Visit(a.Id))
                return;
        }

        bool Visit(ActionRef id)
        {
            if (state.TryGetValue(id, out var s))
            {
                if (s == 1)
                {
                    var decl = _actions[id].Decl;
                    Error(decl.Pos, $"the action hierarchy has a cycle through action {id}; an action cannot be (transitively) a member of itself");
                    return true;
                }

                return false;
            }

            state[id] = 1;
            foreach (var parent in byId[id].MemberOf)
            {
                if (Visit(parent))
                    return true;
            }

            state[id] = 2;
            return false;
        }
    }
}
