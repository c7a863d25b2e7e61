using System.Globalization;
using System.Text;
using System.Text.Json;
using Writ.Policy.Ast;

namespace Writ.Policy.Tests.Differential;

/// <summary>A generated Cedar type (drives the schema text, the entity/context JSON and the expression generator).</summary>
internal abstract record GType
{
    public abstract string Key { get; }
}

internal sealed record GPrim(string Name) : GType
{
    public override string Key => Name;
}

internal sealed record GEntity(string Type) : GType
{
    public override string Key => "Entity:" + Type;
}

internal sealed record GSet(GType Element) : GType
{
    public override string Key => "Set<" + Element.Key + ">";
}

internal sealed record GAttr(string Name, GType Type, bool Optional);

internal sealed record GRecord(IReadOnlyList<GAttr> Attrs) : GType
{
    public override string Key => "{" + string.Join(",", Attrs.Select(a => a.Name + (a.Optional ? "?" : "") + ":" + a.Type.Key)) + "}";
}

/// <summary>One policy of a generated case; <see cref="Id"/> is the id both engines use.</summary>
internal sealed record GenPolicy(string Id, string Text, bool IsTemplate);

/// <summary>A template link; a null slot value means the template does not use that slot.</summary>
internal sealed record GenLink(string TemplateId, string NewId, EntityUid? Principal, EntityUid? Resource);

/// <summary>
/// One request. <see cref="ValidateRequest"/> is Cedar's <c>validateRequest</c> (the request is checked against the schema
/// first); <see cref="Mismatched"/> marks a context deliberately built not to match the action's declared context type.
/// </summary>
internal sealed record GenRequest(EntityUid Principal, EntityUid Action, EntityUid Resource, string ContextJson, bool ValidateRequest = false, bool Mismatched = false);

/// <summary>A self-contained differential case: schema (Cedar syntax, or none), policies, links, entities and requests.</summary>
internal sealed record GenCase(
    int Seed,
    string? Schema,
    IReadOnlyList<GenPolicy> Policies,
    IReadOnlyList<GenLink> Links,
    IReadOnlyList<string> Entities,
    IReadOnlyList<GenRequest> Requests)
{
    public string EntitiesJson => "[" + string.Join(",", Entities) + "]";

    public string Describe()
    {
        var sb = new StringBuilder();
        sb.Append("// seed ").Append(Seed).Append('\n');
        sb.Append("// schema:\n").Append(Schema ?? "(none)").Append('\n');
        sb.Append("// policies:\n");
        foreach (var p in Policies) sb.Append("// id ").Append(p.Id).Append('\n').Append(p.Text).Append('\n');
        foreach (var l in Links)
        {
            sb.Append("// link ").Append(l.NewId).Append(" = ").Append(l.TemplateId)
                .Append(l.Principal is null ? "" : " ?principal=" + l.Principal).Append(l.Resource is null ? "" : " ?resource=" + l.Resource).Append('\n');
        }

        sb.Append("// entities:\n").Append(EntitiesJson).Append('\n');
        foreach (var r in Requests) sb.Append("// request: ").Append(r.Principal).Append(", ").Append(r.Action).Append(", ").Append(r.Resource).Append(", context ").Append(r.ContextJson).Append('\n');
        return sb.ToString();
    }
}

/// <summary>
/// Seeded generator of Cedar cases that go beyond the official corpus: entity hierarchies and tags, templates and
/// links, <c>unless</c>, deep nesting, 64-bit overflow, every operator (incl. <c>like</c> with escapes, dotted
/// <c>has</c>, <c>is … in</c>, <c>getTag/hasTag</c>), extension edge cases and errors inside short-circuiting
/// operators. Mostly well-typed against the generated schema; a share of policies is deliberately ill-typed.
/// The same seed always yields the same case.
/// </summary>
internal sealed class CaseGenerator
{
    private static readonly GPrim Long = new("Long");
    private static readonly GPrim Str = new("String");
    private static readonly GPrim Bool = new("Bool");
    private static readonly GPrim Ip = new("ipaddr");
    private static readonly GPrim Dec = new("decimal");
    private static readonly GPrim Dt = new("datetime");
    private static readonly GPrim Dur = new("duration");

    private static readonly long[] LongPool =
    [
        0, 1, -1, 2, 7, 100, -100, 1000, 86_400_000, int.MaxValue, int.MinValue, 4_294_967_296, 3_037_000_499, 3_037_000_500,
        -3_037_000_500, long.MaxValue, long.MaxValue - 1, long.MinValue, long.MinValue + 1, long.MaxValue / 2, long.MinValue / 2,
        4_611_686_018_427_387_904, -4_611_686_018_427_387_904, 9_223_372_036_854_775,
    ];

    private static readonly string[] StrPool =
    [
        "", "a", "alice", "bob", "admin", "*", "a*b", "ünï", "😀", "tab\there", "line\nbreak", "quote\"d", "back\\slash", "x", "abc",
        "ABC", "a\u0000b", "prod", "prod-eu", "spiffe://example.org/ns/prod/sa/api",
    ];

    private static readonly string[] PatternPool =
    [
        "*", "", "a*", "*b", "a*b", "**", "\\*", "*\\**", "a\\*b", "ü*", "😀*", "*\\\\*", "spiffe://example.org/*", "*/sa/*", "prod*",
        "\\u{61}*", "*\\n*", "\\t*", "***a***", "abc", "a",
    ];

    private static readonly string[] IpPool =
    [
        "0.0.0.0", "127.0.0.1", "127.255.255.255", "10.0.0.1", "10.0.0.0/8", "10.0.0.0/32", "10.0.0.0/0", "192.168.1.1/24",
        "192.168.1.255/24", "224.0.0.1", "239.255.255.255", "255.255.255.255/32", "1.2.3.4/33", "1.2.3", "01.2.3.4", "::", "::1",
        "::1/128", "::/0", "::ffff:1.2.3.4", "::ffff:127.0.0.1", "2001:db8::1", "2001:db8::/32", "2001:db8::/129", "fe80::1%eth0",
        "ff02::1", "ff00::/8", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8:9", "::g", "1.2.3.4/-1", "1.2.3.4/", "[::1]", " 1.2.3.4",
        "127.0.0.1/8", "::1:2:3:4:5:6:7", "2001:DB8::A",
    ];

    private static readonly string[] DecPool =
    [
        "0.0", "1.0", "-1.0", "0.1", "0.0001", "-0.0001", "1.2345", "1.23456", "922337203685477.5807", "-922337203685477.5808",
        "922337203685477.5808", "-922337203685477.5809", "1.", ".1", "1", "+1.0", "-0.0", "12.34", "9.9999", "100.0", "1e3",
    ];

    private static readonly string[] DtPool =
    [
        "2024-01-01", "2024-02-29", "2023-02-29", "2024-02-30", "1970-01-01", "1969-12-31T23:59:59Z", "2024-01-01T00:00:00Z",
        "2024-01-01T23:59:59.999Z", "2024-01-01T12:00:00+0100", "2024-01-01T12:00:00-2359", "2024-01-01T12:00:00+2400",
        "9999-12-31T23:59:59.999Z", "0000-01-01", "2024-1-1", "2024-01-01T24:00:00Z", "2024-01-01T00:00:60Z",
        "2024-01-01T00:00:00.1Z", "2024-13-01", "2024-06-15T08:30:00Z",
    ];

    private static readonly string[] DurPool =
    [
        "0ms", "1ms", "-1ms", "1s", "1m", "1h", "1d", "1d2h3m4s5ms", "-1d", "24h", "9223372036854775807ms", "-9223372036854775808ms",
        "9223372036854775808ms", "106751991167d", "106751991168d", "1h1d", "", "1", "1.5h", "2562047788015h", "-2562047788016h",
        "1d-1h", "5m30s",
    ];

    private static readonly string[] UserIds = ["alice", "bob", "", "ünï \"q\"", "svc-api"];
    private static readonly string[] GroupIds = ["g0", "g1", "g2", "admins"];
    private static readonly string[] FolderIds = ["root", "f1", "f2"];
    private static readonly string[] DocIds = ["d0", "d1", "d2", "d3"];
    private static readonly string[] Actions = ["read", "write", "delete", "manage"];

    private readonly Random _rng;
    private readonly int _seed;
    private readonly Dictionary<string, GRecord> _shapes = new(StringComparer.Ordinal);
    private readonly Dictionary<string, GType?> _tags = new(StringComparer.Ordinal);
    private GRecord _context = new([]);
    private readonly List<(string Expr, GType Type)> _paths = [];
    private bool _ill;
    private int _nesting;

    public CaseGenerator(int seed)
    {
        _seed = seed;
        _rng = new Random(seed);
    }

    private bool Chance(double p) => _rng.NextDouble() < p;

    private T Pick<T>(IReadOnlyList<T> items) => items[_rng.Next(items.Count)];

    public GenCase Generate(int policyCount, int requestCount)
    {
        var withSchema = !Chance(0.1);
        BuildModel();
        var schema = withSchema ? SchemaText() : null;
        var policies = new List<GenPolicy>();
        for (var i = 0; i < policyCount; i++)
        {
            var text = Policy(Chance(0.12));
            var template = text.Contains("?principal", StringComparison.Ordinal) || text.Contains("?resource", StringComparison.Ordinal);
            policies.Add(new GenPolicy("p" + i.ToString(CultureInfo.InvariantCulture), text, template));
        }

        var links = new List<GenLink>();
        var n = 0;
        foreach (var t in policies.Where(p => p.IsTemplate))
        {
            var k = _rng.Next(0, 3);
            for (var i = 0; i < k; i++)
            {
                var pr = t.Text.Contains("?principal", StringComparison.Ordinal) ? PrincipalUid() : null;
                var rs = t.Text.Contains("?resource", StringComparison.Ordinal) ? ResourceUid() : null;
                links.Add(new GenLink(t.Id, "link" + (n++).ToString(CultureInfo.InvariantCulture), pr, rs));
            }
        }

        var entities = EntitiesJson();
        var requests = new List<GenRequest>();
        for (var i = 0; i < requestCount; i++) requests.Add(Request());
        var generated = new GenCase(_seed, schema, policies, links, entities, requests);
        return withSchema && Chance(0.25) ? InNamespace(generated, "App") : generated;
    }

    private static readonly System.Text.RegularExpressions.Regex TypeInText =
        new(@"(?<![\w:])(User|Group|Folder|Doc|Color|Action)::|\bis (User|Group|Folder|Doc|Color)\b", System.Text.RegularExpressions.RegexOptions.CultureInvariant);

    private static readonly System.Text.RegularExpressions.Regex TypeInJson =
        new("\"type\":\"(User|Group|Folder|Doc|Color|Action)\"", System.Text.RegularExpressions.RegexOptions.CultureInvariant);

    /// <summary>The same case with every declaration inside <c>namespace ns { … }</c> and every name qualified.</summary>
    private static GenCase InNamespace(GenCase c, string ns)
    {
        string Text(string t) => TypeInText.Replace(t, m => m.Groups[1].Success ? ns + "::" + m.Groups[1].Value + "::" : "is " + ns + "::" + m.Groups[2].Value);
        string Json(string t) => TypeInJson.Replace(t, m => "\"type\":\"" + ns + "::" + m.Groups[1].Value + "\"");
        EntityUid Uid(EntityUid u) => new(ns + "::" + u.Type, u.Id);
        return c with
        {
            Schema = "namespace " + ns + " {\n" + c.Schema + "}\n",
            Policies = c.Policies.Select(p => p with { Text = Text(p.Text) }).ToList(),
            Links = c.Links.Select(l => l with { Principal = l.Principal is null ? null : Uid(l.Principal), Resource = l.Resource is null ? null : Uid(l.Resource) }).ToList(),
            Entities = c.Entities.Select(Json).ToList(),
            Requests = c.Requests.Select(r => r with { Principal = Uid(r.Principal), Action = Uid(r.Action), Resource = Uid(r.Resource), ContextJson = Json(r.ContextJson) }).ToList(),
        };
    }

    // ------------------------------------------------------------------ model and schema

    private GAttr A(string name, GType t, double optional = 0.25) => new(name, t, Chance(optional));

    private void BuildModel()
    {
        var inner = new GRecord([A("x", Long, 0.5), A("y", Str, 0.7)]);
        var profile = new GRecord([A("level", Long), A("nick", Str, 0.6), A("inner", inner, 0.5)]);
        _shapes["Group"] = new GRecord([A("name", Str, 0.1), A("level", Long)]);
        _shapes["User"] = new GRecord(
        [
            A("name", Str, 0.1), A("age", Long), A("addr", Ip), A("score", Dec), A("born", Dt), A("ttl", Dur), A("profile", profile, 0.1),
            A("roles", new GSet(Str)), A("manager", new GEntity("User"), 0.6), A("nick", Str, 0.6),
        ]);
        _shapes["Folder"] = new GRecord([A("name", Str, 0.1), A("owner", new GEntity("User"), 0.2)]);
        _shapes["Doc"] = new GRecord(
        [
            A("owner", new GEntity("User"), 0.1), A("size", Long), A("public", Bool), A("labels", new GSet(Str)), A("nums", new GSet(Long)),
            A("readers", new GSet(new GEntity("User")), 0.3), A("meta", new GRecord([A("a", Long, 0.3), A("b", Str, 0.5)]), 0.3),
        ]);
        _tags["Group"] = null;
        _tags["Folder"] = null;
        _tags["User"] = Chance(0.85) ? Str : null;
        _tags["Doc"] = Chance(0.85) ? Long : Pick<GType>([Str, new GSet(Str)]);
        _context = new GRecord(
        [
            A("n", Long, 0.1), A("s", Str, 0.1), A("flag", Bool, 0.1), A("ip", Ip), A("d", Dec), A("t", Dt), A("dur", Dur),
            A("nums", new GSet(Long)), A("rec", new GRecord([A("a", Long, 0.2), A("b", Str, 0.6)]), 0.2), A("opt", Long, 0.9),
            A("who", new GEntity("User"), 0.4),
        ]);
        _paths.Clear();
        AddPaths("principal", _shapes["User"], 0);
        AddPaths("resource", _shapes["Doc"], 0);
        AddPaths("resource", _shapes["Folder"], 0);
        AddPaths("context", _context, 0);
        _paths.Add(("principal", new GEntity("User")));
        _paths.Add(("resource", new GEntity("Doc")));
    }

    private void AddPaths(string prefix, GRecord rec, int depth)
    {
        foreach (var a in rec.Attrs)
        {
            var e = prefix + "." + a.Name;
            _paths.Add((e, a.Type));
            if (depth < 2 && a.Type is GRecord r) AddPaths(e, r, depth + 1);
            if (depth < 1 && a.Type is GEntity { Type: "User" } && prefix != "principal") AddPaths(e, _shapes["User"], depth + 1);
        }
    }

    private static string TypeText(GType t) => t switch
    {
        GPrim p => p.Name,
        GEntity e => e.Type,
        GSet s => "Set<" + TypeText(s.Element) + ">",
        GRecord r => "{ " + string.Join(", ", r.Attrs.Select(a => "\"" + a.Name + "\"" + (a.Optional ? "?" : "") + ": " + TypeText(a.Type))) + " }",
        _ => throw new InvalidOperationException("unknown type"),
    };

    private string SchemaText()
    {
        var sb = new StringBuilder();
        sb.Append("entity Group in [Group] ").Append(TypeText(_shapes["Group"])).Append(";\n");
        sb.Append("entity User in [Group] ").Append(TypeText(_shapes["User"]));
        if (_tags["User"] is { } ut) sb.Append(" tags ").Append(TypeText(ut));
        sb.Append(";\n");
        sb.Append("entity Folder in [Folder] ").Append(TypeText(_shapes["Folder"])).Append(";\n");
        sb.Append("entity Doc in [Folder] ").Append(TypeText(_shapes["Doc"]));
        if (_tags["Doc"] is { } dt) sb.Append(" tags ").Append(TypeText(dt));
        sb.Append(";\n");
        sb.Append("entity Color enum [\"red\", \"green\"];\n");
        sb.Append("type Ctx = ").Append(TypeText(_context)).Append(";\n");
        sb.Append("action read, write appliesTo { principal: [User], resource: [Doc, Folder], context: Ctx };\n");
        sb.Append("action \"delete\" in [write] appliesTo { principal: [User], resource: [Doc], context: Ctx };\n");
        sb.Append("action manage appliesTo { principal: [User, Group], resource: [Folder], context: {} };\n");
        return sb.ToString();
    }

    // ------------------------------------------------------------------ entities, requests, JSON values

    private EntityUid PrincipalUid() => Chance(0.15) ? new EntityUid("Group", Pick(GroupIds)) : new EntityUid("User", Chance(0.05) ? "ghost" : Pick(UserIds));

    private EntityUid ResourceUid() => Chance(0.3) ? new EntityUid("Folder", Pick(FolderIds)) : new EntityUid("Doc", Chance(0.05) ? "ghost" : Pick(DocIds));

    private static string UidJson(EntityUid u) => "{\"type\":" + JsonSerializer.Serialize(u.Type) + ",\"id\":" + JsonSerializer.Serialize(u.Id) + "}";

    private List<string> EntitiesJson()
    {
        var list = new List<string>();
        var cycle = Chance(0.02) ? _rng.Next(GroupIds.Length) : -1;
        for (var i = 0; i < GroupIds.Length; i++)
        {
            // Parents point "down the list" (a DAG); rarely one points back (a cycle, which Cedar rejects).
            var parents = new List<EntityUid>();
            foreach (var g in GroupIds)
            {
                var j = Array.IndexOf(GroupIds, g);
                if ((j > i && Chance(0.4)) || (i == cycle && j <= i)) parents.Add(new EntityUid("Group", g));
            }

            list.Add(EntityJson(new EntityUid("Group", GroupIds[i]), _shapes["Group"], parents, null));
        }

        foreach (var u in UserIds)
        {
            var parents = GroupIds.Where(_ => Chance(0.35)).Select(g => new EntityUid("Group", g)).ToList();
            list.Add(EntityJson(new EntityUid("User", u), _shapes["User"], parents, _tags["User"]));
        }

        for (var i = 0; i < FolderIds.Length; i++)
        {
            var parents = i == 0 ? [] : new List<EntityUid> { new("Folder", FolderIds[_rng.Next(i)]) };
            list.Add(EntityJson(new EntityUid("Folder", FolderIds[i]), _shapes["Folder"], parents, null));
        }

        foreach (var d in DocIds)
        {
            var parents = FolderIds.Where(_ => Chance(0.4)).Select(f => new EntityUid("Folder", f)).ToList();
            list.Add(EntityJson(new EntityUid("Doc", d), _shapes["Doc"], parents, _tags["Doc"]));
        }

        return list;
    }

    private string EntityJson(EntityUid uid, GRecord shape, List<EntityUid> parents, GType? tagType)
    {
        var sb = new StringBuilder();
        sb.Append("{\"uid\":").Append(UidJson(uid)).Append(",\"attrs\":").Append(RecordJson(shape, 0));
        sb.Append(",\"parents\":[").Append(string.Join(",", parents.Select(UidJson))).Append(']');
        if (tagType is not null && Chance(0.8))
        {
            var keys = new[] { "k", "env", "", "team" }.Where(_ => Chance(0.5)).ToList();
            sb.Append(",\"tags\":{").Append(string.Join(",", keys.Select(k => JsonSerializer.Serialize(k) + ":" + ValueJson(tagType, 1)))).Append('}');
        }

        sb.Append('}');
        return sb.ToString();
    }

    private string RecordJson(GRecord r, int depth)
    {
        var parts = new List<string>();
        foreach (var a in r.Attrs)
        {
            if (a.Optional && Chance(0.35)) continue;
            parts.Add(JsonSerializer.Serialize(a.Name) + ":" + ValueJson(a.Type, depth + 1));
        }

        return "{" + string.Join(",", parts) + "}";
    }

    private string ValueJson(GType t, int depth) => t switch
    {
        GPrim { Name: "Long" } => Pick(LongPool).ToString(CultureInfo.InvariantCulture),
        GPrim { Name: "String" } => JsonSerializer.Serialize(Pick(StrPool)),
        GPrim { Name: "Bool" } => Chance(0.5) ? "true" : "false",
        GPrim p => ExtJson(p.Name),
        GEntity e => EntityRefJson(e.Type == "User" ? new EntityUid("User", Chance(0.05) ? "ghost" : Pick(UserIds)) : new EntityUid(e.Type, "x")),
        GSet s => "[" + string.Join(",", Enumerable.Range(0, _rng.Next(0, 4)).Select(_ => ValueJson(s.Element, depth + 1))) + "]",
        GRecord r => RecordJson(r, depth),
        _ => throw new InvalidOperationException("unknown type"),
    };

    /// <summary>The escape form, the implicit <c>{fn, arg}</c> form or (schema-directed) a bare string; rarely a bad literal.</summary>
    private string ExtJson(string ext)
    {
        var fn = ext == "ipaddr" ? "ip" : ext;
        var literal = JsonSerializer.Serialize(Chance(0.002) ? "not-a-" + ext : ValidExtLiteral(ext));
        return _rng.Next(10) switch
        {
            0 => "{\"fn\":\"" + fn + "\",\"arg\":" + literal + "}",
            1 => literal,
            2 => "{\"__extn\":{\"fn\":\"" + fn + "\",\"args\":[" + literal + "]}}",
            _ => "{\"__extn\":{\"fn\":\"" + fn + "\",\"arg\":" + literal + "}}",
        };
    }

    /// <summary>The escape form, or (schema-directed) the bare <c>{type, id}</c> form.</summary>
    private string EntityRefJson(EntityUid u) => Chance(0.25) ? UidJson(u) : "{\"__entity\":" + UidJson(u) + "}";

    /// <summary>Entity data must parse in both engines (or the whole case is only an entity-parsing comparison).</summary>
    private string ValidExtLiteral(string ext) => ext switch
    {
        "ipaddr" => Pick(["10.0.0.1", "127.0.0.1", "::1", "192.168.0.0/16", "2001:db8::/32", "224.0.0.1"]),
        "decimal" => Pick(["0.0", "1.5", "-2.25", "922337203685477.5807", "-922337203685477.5808", "0.0001"]),
        "datetime" => Pick(["2024-01-01", "1970-01-01T00:00:00Z", "2024-06-15T08:30:00.123+0200", "9999-12-31T23:59:59.999Z"]),
        _ => Pick(["1h", "-1d", "0ms", "9223372036854775807ms", "-9223372036854775808ms", "1d2h3m4s5ms"]),
    };

    private GenRequest Request()
    {
        var action = Pick(Actions);
        EntityUid principal;
        EntityUid resource;
        if (action == "manage")
        {
            principal = Chance(0.5) ? new EntityUid("Group", Pick(GroupIds)) : new EntityUid("User", Pick(UserIds));
            resource = new EntityUid("Folder", Pick(FolderIds));
        }
        else
        {
            principal = new EntityUid("User", Chance(0.05) ? "ghost" : Pick(UserIds));
            resource = action == "delete" || Chance(0.7) ? new EntityUid("Doc", Chance(0.05) ? "ghost" : Pick(DocIds)) : new EntityUid("Folder", Pick(FolderIds));
        }

        if (Chance(0.12)) return MismatchedRequest(principal, action, resource);
        var context = action == "manage" ? "{}" : RecordJson(_context, 0);
        return new GenRequest(principal, new EntityUid("Action", action), resource, context);
    }

    // ------------------------------------------------------------------ contexts that do not match the declared type

    /// <summary>
    /// A request (mostly with <c>validateRequest: false</c>) whose context does not match the action's declared context
    /// type: a required attribute missing, an undeclared one, a value of another type (extension values as plain or bad
    /// strings, entities as strings, sets as scalars, escape bodies without their escape), the nested record broken the same ways, or
    /// another action's context. The reference engine refuses some of these and decides the others.
    /// </summary>
    private GenRequest MismatchedRequest(EntityUid principal, string action, EntityUid resource)
    {
        var type = action == "manage" ? new GRecord([]) : _context;
        var fields = type.Attrs.Where(a => !a.Optional || Chance(0.5)).Select(a => (a.Name, Json: ValueJson(a.Type, 1))).ToList();
        for (var n = _rng.Next(1, 3); n > 0; n--)
        {
            switch (_rng.Next(10))
            {
                case 0 when fields.Count > 0:
                    fields.RemoveAt(_rng.Next(fields.Count));
                    break;
                case 1:
                    // (never a key twice: the bridge hands the reference a JS object, where the last of two keys wins; and
                    // not __entity/__extn, which without a schema would make a malformed escape, a deliberate difference)
                    var name = Pick(["extra", "N", "rec2", "A", "who2", "__cedar"]);
                    fields.RemoveAll(f => f.Name == name);
                    fields.Add((name, WrongValueJson(null)));
                    break;
                case 2 when type.Attrs.Any(a => a.Type is GRecord):
                    var rec = type.Attrs.First(a => a.Type is GRecord);
                    fields.RemoveAll(f => f.Name == rec.Name);
                    fields.Add((rec.Name, MismatchedRecordJson((GRecord)rec.Type)));
                    break;
                case 3:
                    // another action's context: Ctx for `manage` (which declares none), nothing or a stranger's for the others
                    fields = action == "manage"
                        ? _context.Attrs.Select(a => (a.Name, Json: ValueJson(a.Type, 1))).ToList()
                        : Chance(0.5) ? [] : [("A", Pick(["\"\"", "true", "1"]))];
                    break;
                default:
                    // mostly a primitive attribute: a value of another type there is decided (the policies may error on it)
                    var primitive = type.Attrs.Where(a => a.Type is GPrim { Name: "Long" or "String" or "Bool" }).ToList();
                    var attr = Chance(0.6) && primitive.Count > 0 ? Pick(primitive) : Pick(type.Attrs.Count > 0 ? type.Attrs : [new GAttr("n", Long, false)]);
                    fields.RemoveAll(f => f.Name == attr.Name);
                    fields.Add((attr.Name, WrongValueJson(attr.Type)));
                    break;
            }
        }

        var json = "{" + string.Join(",", fields.Select(f => JsonSerializer.Serialize(f.Name) + ":" + f.Json)) + "}";
        return new GenRequest(principal, new EntityUid("Action", action), resource, json, ValidateRequest: Chance(0.15), Mismatched: true);
    }

    private string MismatchedRecordJson(GRecord r)
    {
        var fields = r.Attrs.Select(a => (a.Name, Json: ValueJson(a.Type, 2))).ToList();
        switch (_rng.Next(4))
        {
            case 0:
                fields.RemoveAt(0);
                break;
            case 1:
                fields.Add(("z", WrongValueJson(null)));
                break;
            case 2:
                var i = _rng.Next(fields.Count);
                fields[i] = (fields[i].Name, WrongValueJson(r.Attrs[i].Type));
                break;
            default:
                return WrongValueJson(r);
        }

        return "{" + string.Join(",", fields.Select(f => JsonSerializer.Serialize(f.Name) + ":" + f.Json)) + "}";
    }

    /// <summary>A value that is (mostly) not of type <paramref name="t"/>: another type, a string where an extension or an entity is declared, an escape's body on its own.</summary>
    private string WrongValueJson(GType? t)
    {
        string Str(string s) => JsonSerializer.Serialize(s);
        return _rng.Next(14) switch
        {
            0 => Pick(LongPool).ToString(CultureInfo.InvariantCulture),
            1 => Str(Pick(StrPool)),
            2 => Chance(0.5) ? "true" : "false",
            3 => Str(ValidExtLiteral(Pick(["ipaddr", "decimal", "datetime", "duration"]))),
            4 => Str(Pick([Pick(IpPool), Pick(DecPool), Pick(DtPool), Pick(DurPool)])),
            5 => ExtJson(Pick(["ipaddr", "decimal", "datetime", "duration"])),
            6 => Str("User::" + EntityUid.Quote(Pick(UserIds))),
            7 => EntityRefJson(new EntityUid(Pick(["User", "Group", "Doc"]), Pick(UserIds))),
            8 => "[" + string.Join(",", Enumerable.Range(0, _rng.Next(0, 3)).Select(_ => Pick(["1", "\"a\"", "true", "\"10.0.0.1\""]))) + "]",
            9 => Pick(["{}", "{\"a\":1}", "{\"a\":\"x\",\"b\":\"y\"}", "{\"a\":1,\"z\":true}"]),
            // (not malformed __entity/__extn escapes: Writ refuses those on purpose where Cedar reads a record)
            10 => Pick(["{\"fn\":\"ip\",\"arg\":\"10.0.0.1\"}", "{\"fn\":\"decimal\",\"arg\":\"1.5\"}", "{\"type\":\"User\",\"id\":\"alice\"}"]),
            11 when t is GSet s => "[" + WrongValueJson(s.Element) + "]",
            12 when t is not null => ValueJson(t, 2),   // sometimes the right type after all
            _ => Str(Pick(StrPool)),
        };
    }

    // ------------------------------------------------------------------ policies

    private string Policy(bool template)
    {
        _ill = Chance(0.12);
        var sb = new StringBuilder();
        if (Chance(0.2)) sb.Append("@id(").Append(EntityUid.Quote("rule " + _rng.Next(100))).Append(")\n");
        if (Chance(0.05)) sb.Append("@advice\n");
        sb.Append(Chance(0.6) ? "permit" : "forbid").Append(" (\n  ");
        sb.Append(PrincipalScope(template)).Append(",\n  ").Append(ActionScope()).Append(",\n  ").Append(ResourceScope(template)).Append("\n)");
        var conditions = _rng.Next(0, 4);
        for (var i = 0; i < conditions; i++)
        {
            sb.Append(Chance(0.7) ? "\nwhen { " : "\nunless { ");
            _nesting = 0;
            sb.Append(BoolExpr(_rng.Next(1, 5))).Append(" }");
        }

        sb.Append(';');
        return sb.ToString();
    }

    private string PrincipalScope(bool template)
    {
        if (template && Chance(0.7))
        {
            return Pick(["principal == ?principal", "principal in ?principal", "principal is User in ?principal"]);
        }

        return _rng.Next(6) switch
        {
            0 or 1 => "principal",
            2 => "principal == " + PrincipalUid(),
            3 => "principal in " + new EntityUid("Group", Pick(GroupIds)),
            4 => "principal is " + Pick(["User", "Group"]),
            _ => "principal is User in " + new EntityUid("Group", Pick(GroupIds)),
        };
    }

    private string ResourceScope(bool template)
    {
        if (template && Chance(0.6))
        {
            return Pick(["resource == ?resource", "resource in ?resource", "resource is Doc in ?resource"]);
        }

        return _rng.Next(6) switch
        {
            0 or 1 => "resource",
            2 => "resource == " + ResourceUid(),
            3 => "resource in " + new EntityUid("Folder", Pick(FolderIds)),
            4 => "resource is " + Pick(["Doc", "Folder"]),
            _ => "resource is Doc in " + new EntityUid("Folder", Pick(FolderIds)),
        };
    }

    private string ActionScope() => _rng.Next(5) switch
    {
        0 or 1 => "action",
        2 => "action == Action::" + EntityUid.Quote(Pick(Actions)),
        3 => "action in Action::\"write\"",
        _ => "action in [" + string.Join(", ", Actions.Where(_ => Chance(0.5)).Select(a => "Action::" + EntityUid.Quote(a))) + "]",
    };

    private static string LongLit(long v) => v.ToString(CultureInfo.InvariantCulture);

    /// <summary>An operand of the wanted type, or (in an ill-typed policy) sometimes of any type.</summary>
    private string Of(GType t, int d)
    {
        if (_ill && Chance(0.2)) t = Pick<GType>([Long, Str, Bool, Ip, Dec, Dt, Dur, new GEntity("User"), new GSet(Long)]);
        return Expr(t, d);
    }

    private string Expr(GType t, int d) => t switch
    {
        GPrim { Name: "Bool" } => BoolExpr(d),
        GPrim { Name: "Long" } => LongExpr(d),
        GPrim { Name: "String" } => StrExpr(d),
        GPrim { Name: "ipaddr" } => IpExpr(d),
        GPrim { Name: "decimal" } => DecExpr(d),
        GPrim { Name: "datetime" } => DtExpr(d),
        GPrim { Name: "duration" } => DurExpr(d),
        GEntity => EntExpr(d),
        GSet s => SetExpr(s.Element, d),
        GRecord r => RecordExpr(r, d),
        _ => throw new InvalidOperationException("unknown type"),
    };

    private string? PathOf(GType t)
    {
        var key = t.Key;
        var matches = _paths.Where(p => p.Type.Key == key || (t is GRecord && p.Type is GRecord)).ToList();
        return matches.Count == 0 ? null : Pick(matches).Expr;
    }

    private string Leaf(GType t, string literal) => Chance(0.45) && PathOf(t) is { } p ? p : literal;

    private string IfThen(GType t, int d) => "(if " + Of(Bool, d - 1) + " then " + Of(t, d - 1) + " else " + Of(t, d - 1) + ")";

    private string BoolExpr(int d)
    {
        if (d <= 0)
        {
            return _rng.Next(8) switch
            {
                0 => "true",
                1 => "false",
                2 => "principal has " + Pick(["nick", "manager", "profile.nick", "profile.inner.x", "profile.inner", "\"age\"", "zzz"]),
                3 => "context has " + Pick(["opt", "rec.b", "rec.a", "who", "nope", "rec.b.c"]),
                4 => "resource has " + Pick(["meta.a", "meta.b", "readers", "owner", "size"]),
                5 => Pick(["principal", "resource"]) + ".hasTag(" + StrExpr(0) + ")",
                _ => Leaf(Bool, "true"),
            };
        }

        if (Chance(0.02) && _nesting < 1)
        {
            // Deep nesting that stays below both engines' limits (cedar-wasm overflows its stack somewhat above 60).
            _nesting++;
            var k = _rng.Next(10, 40);
            return _rng.Next(3) switch
            {
                0 => new string('(', k) + BoolExpr(d - 1) + new string(')', k),
                1 => string.Concat(Enumerable.Repeat("!(", k)) + BoolExpr(d - 1) + new string(')', k),
                _ => string.Concat(Enumerable.Repeat("(if " + BoolExpr(0) + " then ", k / 4)) + BoolExpr(d - 1) + string.Concat(Enumerable.Repeat(" else " + BoolExpr(0) + ")", k / 4)),
            };
        }

        switch (_rng.Next(24))
        {
            case 0: return "(" + Of(Bool, d - 1) + " && " + Of(Bool, d - 1) + ")";
            case 1: return "(" + Of(Bool, d - 1) + " || " + Of(Bool, d - 1) + ")";
            case 2: return "!" + "(" + Of(Bool, d - 1) + ")";
            case 3: return IfThen(Bool, d);
            case 4: return "(" + Of(Long, d - 1) + " " + Pick(["<", "<=", ">", ">="]) + " " + Of(Long, d - 1) + ")";
            case 5:
            {
                var t = Pick<GType>([Long, Str, Bool, new GEntity("User"), Ip, Dec, Dt, Dur, new GSet(Long), new GRecord([])]);
                return "(" + Of(t, d - 1) + " " + Pick(["==", "!="]) + " " + Of(Chance(0.85) ? t : Long, d - 1) + ")";
            }
            case 6: return "(" + EntExpr(d - 1) + " in " + (Chance(0.5) ? EntExpr(d - 1) : SetExpr(new GEntity("Group"), d - 1)) + ")";
            case 7: return "(" + EntExpr(d - 1) + " is " + Pick(["User", "Group", "Doc", "Folder", "Color"]) + (Chance(0.4) ? " in " + EntExpr(d - 1) : "") + ")";
            case 8: return "(" + Of(Str, d - 1) + " like " + EntityUid.Quote(Pick(PatternPool)).Replace("\\\\", "\\", StringComparison.Ordinal) + ")";
            case 9: return "(" + RecordOrEntityHas(d) + ")";
            case 10: return SetExpr(Long, d - 1) + ".contains(" + Of(Long, d - 1) + ")";
            case 11: return SetExpr(Str, d - 1) + "." + Pick(["containsAll", "containsAny"]) + "(" + SetExpr(Str, d - 1) + ")";
            case 12: return SetExpr(Pick<GType>([Long, Str, new GEntity("User")]), d - 1) + ".isEmpty()";
            case 13: return Pick(["principal", "resource", "principal.manager", "context.who"]) + ".hasTag(" + Of(Str, d - 1) + ")";
            case 14: return IpExpr(d - 1) + "." + Pick(["isIpv4()", "isIpv6()", "isLoopback()", "isMulticast()"]);
            case 15: return IpExpr(d - 1) + ".isInRange(" + IpExpr(d - 1) + ")";
            case 16: return DecExpr(d - 1) + "." + Pick(["lessThan", "lessThanOrEqual", "greaterThan", "greaterThanOrEqual"]) + "(" + DecExpr(d - 1) + ")";
            case 17: return "(" + DtExpr(d - 1) + " " + Pick(["<", "<=", ">", ">=", "=="]) + " " + DtExpr(d - 1) + ")";
            case 18: return "(" + DurExpr(d - 1) + " " + Pick(["<", "<=", ">", ">=", "!="]) + " " + DurExpr(d - 1) + ")";
            case 19:
                // Errors hidden (or not) behind short-circuiting.
                return "(" + Pick(["false && ", "true || ", "true && ", "false || "]) + ErrorProne(d - 1) + ")";
            case 20: return "(if " + Of(Bool, d - 1) + " then " + ErrorProne(d - 1) + " else " + Of(Bool, d - 1) + ")";
            case 21: return "(" + EntExpr(d - 1) + " in " + Pick(["principal", "resource", "action", "Action::\"write\"", "[Action::\"read\", Action::\"write\"]"]) + ")";
            case 22: return "(" + SetExpr(new GEntity("User"), d - 1) + ".contains(" + EntExpr(d - 1) + "))";
            default: return Leaf(Bool, Chance(0.5) ? "true" : "false");
        }
    }

    private string RecordOrEntityHas(int d) => _rng.Next(3) switch
    {
        0 => RecordExpr(new GRecord([]), d - 1) + " has " + Pick(["a", "b", "a.b", "level", "inner.x", "\"a b\""]),
        1 => EntExpr(d - 1) + " has " + Pick(["name", "age", "profile.level", "owner.name", "meta.a", "nope"]),
        _ => "context has " + Pick(["rec", "rec.a", "rec.b", "who", "opt", "n.x"]),
    };

    /// <summary>Expressions that often fail at run time: overflow, missing attributes or tags, bad extension calls.</summary>
    private string ErrorProne(int d) => _rng.Next(8) switch
    {
        0 => "(" + LongLit(long.MaxValue) + " + " + Of(Long, d) + " > 0)",
        1 => "(principal.nick == " + StrExpr(0) + ")",
        2 => "(resource.getTag(" + StrExpr(0) + ") == resource.getTag(\"k\"))",
        3 => "(User::\"ghost\".age > 1)",
        4 => "ip(" + EntityUid.Quote(Pick(IpPool)) + ").isLoopback()",
        5 => "(context.opt == 1)",
        6 => "(" + LongLit(long.MinValue) + " * -1 == 0)",
        _ => "decimal(" + EntityUid.Quote(Pick(DecPool)) + ").lessThan(decimal(\"1.0\"))",
    };

    private string LongExpr(int d)
    {
        if (d <= 0) return Leaf(Long, Chance(0.1) ? "-" + LongLit(Math.Abs(Pick(LongPool) % 1000)) : LongLit(Pick(LongPool)));
        return _rng.Next(12) switch
        {
            0 => "(" + Of(Long, d - 1) + " + " + Of(Long, d - 1) + ")",
            1 => "(" + Of(Long, d - 1) + " - " + Of(Long, d - 1) + ")",
            2 => "(" + Of(Long, d - 1) + " * " + Of(Long, d - 1) + ")",
            3 => "(-" + Of(Long, d - 1) + ")",
            4 => IfThen(Long, d),
            5 => Chance(0.5) ? "resource.getTag(" + Of(Str, d - 1) + ")" : "context.rec.a",
            6 => DurExpr(d - 1) + "." + Pick(["toMilliseconds()", "toSeconds()", "toMinutes()", "toHours()", "toDays()"]),
            7 => "{a: " + Of(Long, d - 1) + ", b: " + StrExpr(0) + "}." + Pick(["a", "a", "b", "c"]),
            8 => "(" + LongLit(Pick([long.MaxValue, long.MinValue, 4_611_686_018_427_387_904])) + " " + Pick(["+", "-", "*"]) + " " + Of(Long, d - 1) + ")",
            _ => Leaf(Long, LongLit(Pick(LongPool))),
        };
    }

    private string StrExpr(int d)
    {
        if (d <= 0 || Chance(0.5)) return Leaf(Str, EntityUid.Quote(Pick(StrPool)));
        return _rng.Next(3) switch
        {
            0 => IfThen(Str, d),
            1 => "principal.getTag(" + EntityUid.Quote(Pick(["k", "env", "", "team"])) + ")",
            _ => "principal.profile.nick",
        };
    }

    private string EntExpr(int d)
    {
        if (d > 0 && Chance(0.15)) return IfThen(new GEntity("User"), d);
        return _rng.Next(9) switch
        {
            0 => "principal",
            1 => "resource",
            2 => "action",
            3 => new EntityUid("Group", Pick(GroupIds)).ToString(),
            4 => new EntityUid("User", Pick(UserIds)).ToString(),
            5 => new EntityUid("Folder", Pick(FolderIds)).ToString(),
            6 => Pick(["resource.owner", "principal.manager", "context.who", "resource.owner.manager"]),
            7 => "Color::" + EntityUid.Quote(Pick(["red", "green", "blue"])),
            _ => "User::\"ghost\"",
        };
    }

    private string SetExpr(GType element, int d)
    {
        var path = PathOf(new GSet(element));
        if (path is not null && Chance(0.4)) return path;
        var n = _rng.Next(0, 4);
        if (n == 0 && !_ill && Chance(0.7)) n = 1;   // an empty set literal is a validation error; keep it rare
        return "[" + string.Join(", ", Enumerable.Range(0, n).Select(_ => Of(element, Math.Max(0, d - 1)))) + "]";
    }

    private string RecordExpr(GRecord r, int d) => _rng.Next(3) switch
    {
        0 => "context.rec",
        1 => "principal.profile",
        _ => "{a: " + Of(Long, Math.Max(0, d - 1)) + (Chance(0.5) ? ", b: " + StrExpr(0) : "") + "}",
    };

    private string IpExpr(int d) => Chance(0.3) ? Pick(["context.ip", "principal.addr"]) : "ip(" + (_ill && Chance(0.2) ? "context.s" : EntityUid.Quote(Pick(IpPool))) + ")";

    private string DecExpr(int d) => Chance(0.3) ? Pick(["context.d", "principal.score"]) : "decimal(" + EntityUid.Quote(Pick(DecPool)) + ")";

    private string DtExpr(int d)
    {
        if (d > 0 && Chance(0.3)) return DtExpr(d - 1) + ".offset(" + DurExpr(d - 1) + ")";
        if (d > 0 && Chance(0.15)) return DtExpr(d - 1) + ".toDate()";
        return Chance(0.3) ? Pick(["context.t", "principal.born"]) : "datetime(" + EntityUid.Quote(Pick(DtPool)) + ")";
    }

    private string DurExpr(int d)
    {
        if (d > 0 && Chance(0.2)) return DtExpr(d - 1) + ".durationSince(" + DtExpr(d - 1) + ")";
        if (d > 0 && Chance(0.15)) return DtExpr(d - 1) + ".toTime()";
        return Chance(0.3) ? Pick(["context.dur", "principal.ttl"]) : "duration(" + EntityUid.Quote(Pick(DurPool)) + ")";
    }
}
