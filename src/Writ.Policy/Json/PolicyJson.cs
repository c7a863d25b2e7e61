using System.Text;
using System.Text.Json;
using Writ.Policy.Ast;
using Writ.Policy.Evaluation;

namespace Writ.Policy.Json;

/// <summary>
/// Cedar's JSON policy format (EST): one policy as <c>{"effect", "principal", "action", "resource", "conditions",
/// "annotations"}</c>, and policy sets as <c>{"staticPolicies", "templates", "templateLinks"}</c>.
/// <c>is T in E</c> and dotted <c>has</c> are written in their desugared form (<c>&amp;&amp;</c>), which means the same.
/// </summary>
public static class PolicyJson
{
    private static readonly JsonDocumentOptions DocOptions = new() { MaxDepth = 256 };
    // Relaxed escaping keeps operators such as ">" and "&&" readable; the output is JSON, never embedded in HTML.
    private static readonly JsonWriterOptions WriterOptions = new() { Indented = false, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private static readonly Dictionary<BinaryOp, string> BinaryNames = new()
    {
        [BinaryOp.Eq] = "==", [BinaryOp.NotEq] = "!=", [BinaryOp.Less] = "<", [BinaryOp.LessEq] = "<=",
        [BinaryOp.Greater] = ">", [BinaryOp.GreaterEq] = ">=", [BinaryOp.Add] = "+", [BinaryOp.Sub] = "-",
        [BinaryOp.Mul] = "*", [BinaryOp.In] = "in", [BinaryOp.Contains] = "contains", [BinaryOp.ContainsAll] = "containsAll",
        [BinaryOp.ContainsAny] = "containsAny", [BinaryOp.GetTag] = "getTag", [BinaryOp.HasTag] = "hasTag",
    };

    private static readonly Dictionary<string, BinaryOp> BinaryByName = BinaryNames.ToDictionary(p => p.Value, p => p.Key, StringComparer.Ordinal);

    private static readonly HashSet<string> ExtensionNames = new(StringComparer.Ordinal)
    {
        "ip", "decimal", "datetime", "duration", "isIpv4", "isIpv6", "isLoopback", "isMulticast", "isInRange",
        "lessThan", "lessThanOrEqual", "greaterThan", "greaterThanOrEqual", "offset", "durationSince", "toDate", "toTime",
        "toMilliseconds", "toSeconds", "toMinutes", "toHours", "toDays",
    };

    // ------------------------------------------------------------------ writing

    /// <summary>The policy in Cedar's JSON policy format (without its id).</summary>
    public static string ToJson(CedarPolicy policy)
    {
        ArgumentNullException.ThrowIfNull(policy);
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, WriterOptions)) WritePolicy(w, policy);
        return Encoding.UTF8.GetString(ms.ToArray());
    }

    /// <summary>
    /// The set as <c>{"staticPolicies": {id: policy}, "templates": {id: template}, "templateLinks": [...]}</c>;
    /// linked policies are written as links to their templates.
    /// </summary>
    public static string ToJson(PolicySet set)
    {
        ArgumentNullException.ThrowIfNull(set);
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, WriterOptions))
        {
            w.WriteStartObject();
            w.WriteStartObject("staticPolicies");
            foreach (var p in set.Policies.Where(p => p.TemplateId is null))
            {
                w.WritePropertyName(p.Id);
                WritePolicy(w, p);
            }

            w.WriteEndObject();
            w.WriteStartObject("templates");
            foreach (var p in set.Templates)
            {
                w.WritePropertyName(p.Id);
                WritePolicy(w, p);
            }

            w.WriteEndObject();
            w.WriteStartArray("templateLinks");
            foreach (var p in set.Policies.Where(p => p.TemplateId is not null))
            {
                w.WriteStartObject();
                w.WriteString("templateId", p.TemplateId);
                w.WriteString("newId", p.Id);
                w.WriteStartObject("values");
                foreach (var (slot, uid) in p.SlotValues!)
                {
                    w.WritePropertyName("?" + CedarPolicy.SlotName(slot));
                    WriteUid(w, uid);
                }

                w.WriteEndObject();
                w.WriteEndObject();
            }

            w.WriteEndArray();
            w.WriteEndObject();
        }

        return Encoding.UTF8.GetString(ms.ToArray());
    }

    /// <summary>An expression in Cedar's JSON expression format.</summary>
    public static string ToJson(Expr expr)
    {
        ArgumentNullException.ThrowIfNull(expr);
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, WriterOptions)) WriteExpr(w, expr);
        return Encoding.UTF8.GetString(ms.ToArray());
    }

    private static void WritePolicy(Utf8JsonWriter w, CedarPolicy p)
    {
        w.WriteStartObject();
        w.WriteString("effect", p.Effect == Effect.Permit ? "permit" : "forbid");
        w.WritePropertyName("principal");
        WriteScope(w, p.Principal);
        w.WritePropertyName("action");
        w.WriteStartObject();
        switch (p.Action.Op)
        {
            case ActionScopeOp.Any:
                w.WriteString("op", "All");
                break;
            case ActionScopeOp.Eq:
            case ActionScopeOp.In:
            case ActionScopeOp.InSet when p.Action.Entities.Count == 1: // as the reference engine writes `in [A]`
                w.WriteString("op", p.Action.Op == ActionScopeOp.Eq ? "==" : "in");
                w.WritePropertyName("entity");
                WriteUid(w, p.Action.Entities[0]);
                break;
            default:
                w.WriteString("op", "in");
                w.WriteStartArray("entities");
                foreach (var e in p.Action.Entities) WriteUid(w, e);
                w.WriteEndArray();
                break;
        }

        w.WriteEndObject();
        w.WritePropertyName("resource");
        WriteScope(w, p.Resource);
        w.WriteStartArray("conditions");
        foreach (var c in p.Conditions)
        {
            w.WriteStartObject();
            w.WriteString("kind", c.Kind == ConditionKind.When ? "when" : "unless");
            w.WritePropertyName("body");
            WriteExpr(w, c.Body);
            w.WriteEndObject();
        }

        w.WriteEndArray();
        if (p.Annotations.Count > 0)
        {
            w.WriteStartObject("annotations");
            foreach (var (k, v) in p.Annotations) w.WriteString(k, v);
            w.WriteEndObject();
        }

        w.WriteEndObject();
    }

    private static void WriteScope(Utf8JsonWriter w, ScopeConstraint c)
    {
        w.WriteStartObject();
        switch (c.Op)
        {
            case ScopeOp.Any:
                w.WriteString("op", "All");
                break;
            case ScopeOp.Eq:
            case ScopeOp.In:
                w.WriteString("op", c.Op == ScopeOp.Eq ? "==" : "in");
                WriteTarget(w, c);
                break;
            case ScopeOp.Is:
                w.WriteString("op", "is");
                w.WriteString("entity_type", c.EntityType);
                break;
            default:
                w.WriteString("op", "is");
                w.WriteString("entity_type", c.EntityType);
                w.WriteStartObject("in");
                WriteTarget(w, c);
                w.WriteEndObject();
                break;
        }

        w.WriteEndObject();
    }

    private static void WriteTarget(Utf8JsonWriter w, ScopeConstraint c)
    {
        if (c.Slot is { } s)
        {
            w.WriteString("slot", "?" + CedarPolicy.SlotName(s));
        }
        else
        {
            w.WritePropertyName("entity");
            WriteUid(w, c.Entity!);
        }
    }

    private static void WriteUid(Utf8JsonWriter w, EntityUid uid)
    {
        w.WriteStartObject();
        w.WriteString("type", uid.Type);
        w.WriteString("id", uid.Id);
        w.WriteEndObject();
    }

    private static void WriteExpr(Utf8JsonWriter w, Expr e)
    {
        w.WriteStartObject();
        switch (e)
        {
            case LiteralExpr l:
                w.WritePropertyName("Value");
                WriteValue(w, l.Value);
                break;
            case VariableExpr v:
                w.WriteString("Var", v.Variable.ToString().ToLowerInvariant());
                break;
            case SlotExpr s:
                w.WriteString("Slot", "?" + CedarPolicy.SlotName(s.Slot));
                break;
            case UnaryExpr u:
                w.WriteStartObject(u.Op switch { UnaryOp.Not => "!", UnaryOp.Neg => "neg", _ => "isEmpty" });
                w.WritePropertyName("arg");
                WriteExpr(w, u.Operand);
                w.WriteEndObject();
                break;
            case BinaryExpr b:
                WriteLeftRight(w, BinaryNames[b.Op], b.Left, b.Right);
                break;
            case AndExpr a:
                WriteLeftRight(w, "&&", a.Left, a.Right);
                break;
            case OrExpr o:
                WriteLeftRight(w, "||", o.Left, o.Right);
                break;
            case GetAttrExpr g:
                w.WriteStartObject(".");
                w.WritePropertyName("left");
                WriteExpr(w, g.Target);
                w.WriteString("attr", g.Attribute);
                w.WriteEndObject();
                break;
            case HasAttrExpr h:
                w.WriteStartObject("has");
                w.WritePropertyName("left");
                WriteExpr(w, h.Target);
                w.WriteString("attr", h.Attribute);
                w.WriteEndObject();
                break;
            case LikeExpr like:
                w.WriteStartObject("like");
                w.WritePropertyName("left");
                WriteExpr(w, like.Target);
                w.WriteStartArray("pattern");
                for (var i = 0; i < like.Pattern.Segments.Count; i++)
                {
                    if (i > 0) w.WriteStringValue("Wildcard");
                    // one Literal per character, as the reference engine writes patterns
                    foreach (var rune in like.Pattern.Segments[i].EnumerateRunes())
                    {
                        w.WriteStartObject();
                        w.WriteString("Literal", rune.ToString());
                        w.WriteEndObject();
                    }
                }

                w.WriteEndArray();
                w.WriteEndObject();
                break;
            case IsExpr isx:
                w.WriteStartObject("is");
                w.WritePropertyName("left");
                WriteExpr(w, isx.Target);
                w.WriteString("entity_type", isx.EntityType);
                w.WriteEndObject();
                break;
            case IfExpr i:
                w.WriteStartObject("if-then-else");
                w.WritePropertyName("if");
                WriteExpr(w, i.Condition);
                w.WritePropertyName("then");
                WriteExpr(w, i.Then);
                w.WritePropertyName("else");
                WriteExpr(w, i.Else);
                w.WriteEndObject();
                break;
            case SetExpr s:
                w.WriteStartArray("Set");
                foreach (var x in s.Elements) WriteExpr(w, x);
                w.WriteEndArray();
                break;
            case RecordExpr r:
                w.WriteStartObject("Record");
                foreach (var (k, x) in r.Fields)
                {
                    w.WritePropertyName(k);
                    WriteExpr(w, x);
                }

                w.WriteEndObject();
                break;
            case ExtensionCallExpr c:
                w.WriteStartArray(c.Function);
                foreach (var x in c.Arguments) WriteExpr(w, x);
                w.WriteEndArray();
                break;
            default:
                throw new InvalidOperationException("unknown expression node " + e.GetType().Name);
        }

        w.WriteEndObject();
    }

    private static void WriteLeftRight(Utf8JsonWriter w, string op, Expr left, Expr right)
    {
        w.WriteStartObject(op);
        w.WritePropertyName("left");
        WriteExpr(w, left);
        w.WritePropertyName("right");
        WriteExpr(w, right);
        w.WriteEndObject();
    }

    /// <summary>Writes a value in Cedar's JSON value format (entities as <c>__entity</c>, extensions as <c>__extn</c>).</summary>
    internal static void WriteValue(Utf8JsonWriter w, Value v)
    {
        switch (v)
        {
            case BoolValue b: w.WriteBooleanValue(b.Value); break;
            case LongValue l: w.WriteNumberValue(l.Value); break;
            case StringValue s: w.WriteStringValue(s.Value); break;
            case EntityValue e:
                w.WriteStartObject();
                w.WritePropertyName("__entity");
                WriteUid(w, e.Uid);
                w.WriteEndObject();
                break;
            case SetValue set:
                w.WriteStartArray();
                foreach (var x in set.Items) WriteValue(w, x);
                w.WriteEndArray();
                break;
            case RecordValue r:
                w.WriteStartObject();
                foreach (var (k, x) in r.Fields)
                {
                    w.WritePropertyName(k);
                    WriteValue(w, x);
                }

                w.WriteEndObject();
                break;
            default:
                // Extension values: ip/decimal/duration print as a constructor call with one string argument
                // (e.g. decimal("1.5000")); a datetime is written as 1970-01-01 offset by its milliseconds.
                w.WriteStartObject();
                w.WriteStartObject("__extn");
                if (v is Extensions.DatetimeValue dt)
                {
                    w.WriteString("fn", "offset");
                    w.WriteStartArray("args");
                    w.WriteStartObject();
                    w.WriteStartObject("__extn");
                    w.WriteString("fn", "datetime");
                    w.WriteString("arg", "1970-01-01");
                    w.WriteEndObject();
                    w.WriteEndObject();
                    w.WriteStartObject();
                    w.WriteStartObject("__extn");
                    w.WriteString("fn", "duration");
                    w.WriteString("arg", dt.EpochMilliseconds.ToString(System.Globalization.CultureInfo.InvariantCulture) + "ms");
                    w.WriteEndObject();
                    w.WriteEndObject();
                    w.WriteEndArray();
                }
                else
                {
                    var text = v.ToString();
                    var open = text.IndexOf("(\"", StringComparison.Ordinal);
                    w.WriteString("fn", text[..open]);
                    w.WriteString("arg", text[(open + 2)..text.LastIndexOf("\")", StringComparison.Ordinal)]);
                }

                w.WriteEndObject();
                w.WriteEndObject();
                break;
        }
    }

    // ------------------------------------------------------------------ reading

    /// <summary>Reads one policy in Cedar's JSON policy format, giving it <paramref name="id"/>.</summary>
    public static bool TryParsePolicy(string json, string id, out CedarPolicy? policy, out string error)
    {
        ArgumentNullException.ThrowIfNull(json);
        ArgumentNullException.ThrowIfNull(id);
        policy = null;
        try
        {
            using var doc = JsonDocument.Parse(json, DocOptions);
            return TryReadPolicy(doc.RootElement, id, out policy, out error);
        }
        catch (JsonException e)
        {
            error = "policy JSON is not valid JSON: " + Syntax.ErrorText.OneLine(e.Message);
            return false;
        }
        catch (InvalidOperationException)
        {
            error = "policy JSON has a value of the wrong JSON kind or invalid Unicode; check it against Cedar's JSON policy format";
            return false;
        }
    }

    /// <summary>Reads a policy set (<c>staticPolicies</c>, <c>templates</c>, <c>templateLinks</c>).</summary>
    public static bool TryParsePolicySet(string json, out PolicySet? set, out string error)
    {
        ArgumentNullException.ThrowIfNull(json);
        set = null;
        try
        {
            using var doc = JsonDocument.Parse(json, DocOptions);
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                error = "a policy set must be a JSON object with staticPolicies, templates and templateLinks";
                return false;
            }

            var policies = new List<CedarPolicy>();
            var ids = new HashSet<string>(StringComparer.Ordinal);
            foreach (var section in new[] { "staticPolicies", "templates" })
            {
                if (!root.TryGetProperty(section, out var el) || el.ValueKind == JsonValueKind.Null) continue;
                if (el.ValueKind != JsonValueKind.Object)
                {
                    error = $"{section} must be an object from policy id to policy";
                    return false;
                }

                foreach (var p in el.EnumerateObject())
                {
                    if (!TryReadPolicy(p.Value, p.Name, out var policy, out error)) return false;
                    if (policy!.IsTemplate != (section == "templates"))
                    {
                        error = section == "templates"
                            ? $"template {p.Name} has no slot; move it to staticPolicies"
                            : $"policy {p.Name} has a slot; move it to templates";
                        return false;
                    }

                    if (!ids.Add(p.Name))
                    {
                        error = $"policy id {p.Name} is used twice; ids must be unique";
                        return false;
                    }

                    policies.Add(policy);
                }
            }

            var result = new PolicySet(policies);
            if (root.TryGetProperty("templateLinks", out var links) && links.ValueKind == JsonValueKind.Array)
            {
                foreach (var link in links.EnumerateArray())
                {
                    if (link.ValueKind != JsonValueKind.Object
                        || !link.TryGetProperty("templateId", out var tid) || tid.ValueKind != JsonValueKind.String
                        || !link.TryGetProperty("newId", out var nid) || nid.ValueKind != JsonValueKind.String
                        || !link.TryGetProperty("values", out var vals) || vals.ValueKind != JsonValueKind.Object)
                    {
                        error = "each template link needs templateId, newId and values";
                        return false;
                    }

                    var map = new Dictionary<SlotId, EntityUid>();
                    foreach (var v in vals.EnumerateObject())
                    {
                        SlotId slot;
                        if (v.Name == "?principal") slot = SlotId.Principal;
                        else if (v.Name == "?resource") slot = SlotId.Resource;
                        else
                        {
                            error = $"unknown slot {v.Name} in template link; use ?principal or ?resource";
                            return false;
                        }

                        if (!CedarJson.TryParseEntityUid(v.Value, "template link value", out var uid, out error)) return false;
                        map[slot] = uid!;
                    }

                    if (!result.TryLink(tid.GetString()!, nid.GetString()!, map, out var next, out error)) return false;
                    result = next!;
                }
            }

            set = result;
            error = "";
            return true;
        }
        catch (JsonException e)
        {
            error = "policy set JSON is not valid JSON: " + Syntax.ErrorText.OneLine(e.Message);
            return false;
        }
        catch (InvalidOperationException)
        {
            error = "policy set JSON has a value of the wrong JSON kind or invalid Unicode; check it against Cedar's JSON policy format";
            return false;
        }
    }

    private static bool TryReadPolicy(JsonElement el, string id, out CedarPolicy? policy, out string error)
    {
        policy = null;
        if (el.ValueKind != JsonValueKind.Object)
        {
            error = $"policy {id} must be a JSON object";
            return false;
        }

        var effectText = Str(el, "effect");
        if (effectText is not ("permit" or "forbid"))
        {
            error = $"policy {id}: effect must be \"permit\" or \"forbid\"";
            return false;
        }

        if (!TryReadScope(el, "principal", SlotId.Principal, id, out var principal, out error)) return false;
        if (!TryReadActionScope(el, id, out var action, out error)) return false;
        if (!TryReadScope(el, "resource", SlotId.Resource, id, out var resource, out error)) return false;
        var conditions = new List<Condition>();
        if (el.TryGetProperty("conditions", out var conds))
        {
            if (conds.ValueKind != JsonValueKind.Array)
            {
                error = $"policy {id}: conditions must be an array";
                return false;
            }

            foreach (var c in conds.EnumerateArray())
            {
                var kind = Str(c, "kind");
                if (kind is not ("when" or "unless") || !c.TryGetProperty("body", out var body))
                {
                    error = $"policy {id}: each condition needs kind \"when\" or \"unless\" and a body";
                    return false;
                }

                if (!TryReadExpr(body, out var expr, out error))
                {
                    error = $"policy {id}: {error}";
                    return false;
                }

                conditions.Add(new Condition(kind == "when" ? ConditionKind.When : ConditionKind.Unless, expr!));
            }
        }

        var annotations = new Dictionary<string, string>(StringComparer.Ordinal);
        if (el.TryGetProperty("annotations", out var ann) && ann.ValueKind == JsonValueKind.Object)
        {
            foreach (var a in ann.EnumerateObject())
                annotations[a.Name] = a.Value.ValueKind == JsonValueKind.Null ? "" : a.Value.GetString() ?? "";
        }

        policy = new CedarPolicy(id, effectText == "permit" ? Effect.Permit : Effect.Forbid, principal!, action!, resource!, conditions, annotations);
        error = "";
        return true;
    }

    private static string? Str(JsonElement el, string name) =>
        el.ValueKind == JsonValueKind.Object && el.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

    private static bool TryReadScope(JsonElement policy, string name, SlotId slot, string id, out ScopeConstraint? c, out string error)
    {
        c = null;
        if (!policy.TryGetProperty(name, out var el) || el.ValueKind != JsonValueKind.Object)
        {
            error = $"policy {id}: missing {name} constraint";
            return false;
        }

        var op = Str(el, "op");
        switch (op)
        {
            case "All":
                c = ScopeConstraint.Any;
                error = "";
                return true;
            case "==" or "in":
            {
                if (!TryReadTarget(el, slot, id, name, out var uid, out var s, out error)) return false;
                c = new ScopeConstraint(op == "==" ? ScopeOp.Eq : ScopeOp.In, uid, s);
                return true;
            }

            case "is":
            {
                var type = Str(el, "entity_type");
                if (type is null)
                {
                    error = $"policy {id}: {name} `is` needs entity_type";
                    return false;
                }

                if (el.TryGetProperty("in", out var inEl))
                {
                    if (!TryReadTarget(inEl, slot, id, name, out var uid, out var s, out error)) return false;
                    c = new ScopeConstraint(ScopeOp.IsIn, uid, s, type);
                    return true;
                }

                c = new ScopeConstraint(ScopeOp.Is, EntityType: type);
                error = "";
                return true;
            }

            default:
                error = $"policy {id}: {name} op must be All, ==, in or is";
                return false;
        }
    }

    private static bool TryReadTarget(JsonElement el, SlotId slot, string id, string name, out EntityUid? uid, out SlotId? s, out string error)
    {
        uid = null;
        s = null;
        if (Str(el, "slot") is { } slotText)
        {
            if (slotText != "?" + CedarPolicy.SlotName(slot))
            {
                error = $"policy {id}: the {name} constraint can only use the slot ?{name}";
                return false;
            }

            s = slot;
            error = "";
            return true;
        }

        if (!el.TryGetProperty("entity", out var ent))
        {
            error = $"policy {id}: {name} constraint needs entity or slot";
            return false;
        }

        return CedarJson.TryParseEntityUid(ent, $"policy {id} {name}", out uid, out error);
    }

    private static bool TryReadActionScope(JsonElement policy, string id, out ActionConstraint? c, out string error)
    {
        c = null;
        if (!policy.TryGetProperty("action", out var el) || el.ValueKind != JsonValueKind.Object)
        {
            error = $"policy {id}: missing action constraint";
            return false;
        }

        var op = Str(el, "op");
        if (op == "All")
        {
            c = ActionConstraint.Any;
            error = "";
            return true;
        }

        if (op is "==" or "in" && el.TryGetProperty("entity", out var ent))
        {
            if (!CedarJson.TryParseEntityUid(ent, $"policy {id} action", out var uid, out error)) return false;
            c = new ActionConstraint(op == "==" ? ActionScopeOp.Eq : ActionScopeOp.In, [uid!]);
            return true;
        }

        if (op == "in" && el.TryGetProperty("entities", out var ents) && ents.ValueKind == JsonValueKind.Array)
        {
            var list = new List<EntityUid>();
            foreach (var x in ents.EnumerateArray())
            {
                if (!CedarJson.TryParseEntityUid(x, $"policy {id} action", out var uid, out error)) return false;
                list.Add(uid!);
            }

            c = new ActionConstraint(ActionScopeOp.InSet, list);
            error = "";
            return true;
        }

        error = $"policy {id}: action op must be All, == with entity, or in with entity or entities";
        return false;
    }

    private static bool TryReadExpr(JsonElement el, out Expr? expr, out string error)
    {
        expr = null;
        error = "";
        if (el.ValueKind != JsonValueKind.Object)
        {
            error = "an expression must be a JSON object with one key";
            return false;
        }

        using var props = el.EnumerateObject();
        if (!props.MoveNext())
        {
            error = "an expression object is empty";
            return false;
        }

        var key = props.Current.Name;
        var body = props.Current.Value;
        if (props.MoveNext())
        {
            error = $"an expression object must have exactly one key, found {key} and {props.Current.Name}";
            return false;
        }

        switch (key)
        {
            case "Value":
                return TryReadValueExpr(body, out expr, out error);
            case "Var":
                expr = Str(el, "Var") switch
                {
                    "principal" => new VariableExpr(Variable.Principal),
                    "action" => new VariableExpr(Variable.Action),
                    "resource" => new VariableExpr(Variable.Resource),
                    "context" => new VariableExpr(Variable.Context),
                    _ => null,
                };
                if (expr is null) error = "Var must be principal, action, resource or context";
                return expr is not null;
            case "Slot":
                expr = Str(el, "Slot") switch
                {
                    "?principal" => new SlotExpr(SlotId.Principal),
                    "?resource" => new SlotExpr(SlotId.Resource),
                    _ => null,
                };
                if (expr is null) error = "Slot must be ?principal or ?resource";
                return expr is not null;
            case "!" or "neg" or "isEmpty":
            {
                if (!body.TryGetProperty("arg", out var arg) || !TryReadExpr(arg, out var a, out error))
                {
                    if (error.Length == 0) error = $"{key} needs arg";
                    return false;
                }

                expr = new UnaryExpr(key == "!" ? UnaryOp.Not : key == "neg" ? UnaryOp.Neg : UnaryOp.IsEmpty, a!);
                return true;
            }

            case "&&" or "||":
            case var _ when BinaryByName.ContainsKey(key):
            {
                if (!TryLeftRight(body, key, out var l, out var r, out error)) return false;
                expr = key switch
                {
                    "&&" => new AndExpr(l!, r!),
                    "||" => new OrExpr(l!, r!),
                    _ => new BinaryExpr(BinaryByName[key], l!, r!),
                };
                return true;
            }

            case "." or "has":
            {
                var attr = Str(body, "attr");
                if (attr is null || !body.TryGetProperty("left", out var left))
                {
                    error = $"{key} needs left and attr";
                    return false;
                }

                if (!TryReadExpr(left, out var l, out error)) return false;
                expr = key == "." ? new GetAttrExpr(l!, attr) : new HasAttrExpr(l!, attr);
                return true;
            }

            case "like":
            {
                if (!body.TryGetProperty("left", out var left) || !body.TryGetProperty("pattern", out var pat))
                {
                    error = "like needs left and pattern";
                    return false;
                }

                if (!TryReadExpr(left, out var l, out error)) return false;
                var segments = new List<string>();
                var current = new StringBuilder();
                if (pat.ValueKind == JsonValueKind.String)
                {
                    // older form: the pattern as Cedar text
                    if (!Syntax.Unescaper.TryUnescape(pat.GetString()!, pattern: true, out segments, out error)) return false;
                }
                else if (pat.ValueKind == JsonValueKind.Array)
                {
                    foreach (var p in pat.EnumerateArray())
                    {
                        if (p.ValueKind == JsonValueKind.String && p.GetString() == "Wildcard")
                        {
                            segments.Add(current.ToString());
                            current.Clear();
                        }
                        else if (Str(p, "Literal") is { } lit)
                        {
                            current.Append(lit);
                        }
                        else
                        {
                            error = "like pattern elements must be \"Wildcard\" or {\"Literal\": \"text\"}";
                            return false;
                        }
                    }

                    segments.Add(current.ToString());
                }
                else
                {
                    error = "like pattern must be an array";
                    return false;
                }

                expr = new LikeExpr(l!, new LikePattern(segments));
                return true;
            }

            case "is":
            {
                var type = Str(body, "entity_type");
                if (type is null || !body.TryGetProperty("left", out var left))
                {
                    error = "is needs left and entity_type";
                    return false;
                }

                if (!TryReadExpr(left, out var l, out error)) return false;
                var isExpr = new IsExpr(l!, type);
                if (body.TryGetProperty("in", out var inEl))
                {
                    if (!TryReadExpr(inEl, out var r, out error)) return false;
                    expr = new AndExpr(isExpr, new BinaryExpr(BinaryOp.In, l!, r!));
                }
                else
                {
                    expr = isExpr;
                }

                return true;
            }

            case "if-then-else":
            {
                if (!body.TryGetProperty("if", out var i) || !body.TryGetProperty("then", out var t) || !body.TryGetProperty("else", out var e))
                {
                    error = "if-then-else needs if, then and else";
                    return false;
                }

                if (!TryReadExpr(i, out var ie, out error) || !TryReadExpr(t, out var te, out error) || !TryReadExpr(e, out var ee, out error)) return false;
                expr = new IfExpr(ie!, te!, ee!);
                return true;
            }

            case "Set":
            {
                if (body.ValueKind != JsonValueKind.Array)
                {
                    error = "Set must be an array of expressions";
                    return false;
                }

                var items = new List<Expr>();
                foreach (var x in body.EnumerateArray())
                {
                    if (!TryReadExpr(x, out var xe, out error)) return false;
                    items.Add(xe!);
                }

                expr = new SetExpr(items);
                return true;
            }

            case "Record":
            {
                if (body.ValueKind != JsonValueKind.Object)
                {
                    error = "Record must be an object of expressions";
                    return false;
                }

                var fields = new List<KeyValuePair<string, Expr>>();
                var seen = new HashSet<string>(StringComparer.Ordinal);
                foreach (var p in body.EnumerateObject())
                {
                    if (!seen.Add(p.Name))
                    {
                        error = $"record key {p.Name} appears twice";
                        return false;
                    }

                    if (!TryReadExpr(p.Value, out var xe, out error)) return false;
                    fields.Add(new(p.Name, xe!));
                }

                expr = new RecordExpr(fields);
                return true;
            }

            default:
                if (ExtensionNames.Contains(key) && body.ValueKind == JsonValueKind.Array)
                {
                    var args = new List<Expr>();
                    foreach (var x in body.EnumerateArray())
                    {
                        if (!TryReadExpr(x, out var xe, out error)) return false;
                        args.Add(xe!);
                    }

                    var isFunction = key is "ip" or "decimal" or "datetime" or "duration";
                    expr = new ExtensionCallExpr(key, args, isMethod: !isFunction);
                    return true;
                }

                error = $"unknown expression key `{key}`";
                return false;
        }
    }

    private static bool TryLeftRight(JsonElement body, string op, out Expr? left, out Expr? right, out string error)
    {
        left = right = null;
        if (body.ValueKind != JsonValueKind.Object || !body.TryGetProperty("left", out var l) || !body.TryGetProperty("right", out var r))
        {
            error = $"{op} needs left and right";
            return false;
        }

        return TryReadExpr(l, out left, out error) && TryReadExpr(r, out right, out error);
    }

    private static bool TryReadValueExpr(JsonElement v, out Expr? expr, out string error)
    {
        expr = null;
        error = "";
        switch (v.ValueKind)
        {
            case JsonValueKind.True: expr = new LiteralExpr(BoolValue.True); return true;
            case JsonValueKind.False: expr = new LiteralExpr(BoolValue.False); return true;
            case JsonValueKind.String: expr = new LiteralExpr(Value.Of(v.GetString()!)); return true;
            case JsonValueKind.Number:
                if (!v.TryGetInt64(out var l))
                {
                    error = "a Value number must be a 64-bit integer";
                    return false;
                }

                expr = new LiteralExpr(Value.Of(l));
                return true;
            case JsonValueKind.Array:
            {
                var items = new List<Expr>();
                foreach (var x in v.EnumerateArray())
                {
                    if (!TryReadValueExpr(x, out var xe, out error)) return false;
                    items.Add(xe!);
                }

                expr = new SetExpr(items);
                return true;
            }

            case JsonValueKind.Object:
                if (v.TryGetProperty("__entity", out _))
                {
                    if (!CedarJson.TryParseEntityUid(v, "Value", out var uid, out error)) return false;
                    expr = new LiteralExpr(Value.Of(uid!));
                    return true;
                }

                if (v.TryGetProperty("__extn", out var extn))
                {
                    var fn = Str(extn, "fn");
                    if (fn is null || !ExtensionNames.Contains(fn))
                    {
                        error = "__extn needs a known fn";
                        return false;
                    }

                    var args = new List<Expr>();
                    if (extn.TryGetProperty("arg", out var arg))
                    {
                        if (!TryReadValueExpr(arg, out var a, out error)) return false;
                        args.Add(a!);
                    }
                    else if (extn.TryGetProperty("args", out var argsEl) && argsEl.ValueKind == JsonValueKind.Array)
                    {
                        foreach (var x in argsEl.EnumerateArray())
                        {
                            if (!TryReadValueExpr(x, out var a, out error)) return false;
                            args.Add(a!);
                        }
                    }

                    expr = new ExtensionCallExpr(fn, args, isMethod: args.Count != 1);
                    return true;
                }
                else
                {
                    var fields = new List<KeyValuePair<string, Expr>>();
                    foreach (var p in v.EnumerateObject())
                    {
                        if (!TryReadValueExpr(p.Value, out var xe, out error)) return false;
                        fields.Add(new(p.Name, xe!));
                    }

                    expr = new RecordExpr(fields);
                    return true;
                }

            default:
                error = "a Value must be a boolean, integer, string, array, or object";
                return false;
        }
    }
}
