using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Writ.Policy.Ast;
using Writ.Policy.Authorization;
using Writ.Policy.Evaluation;
using Writ.Policy.Json;
using Writ.Server.Storage;
using Writ.Protocol.Evidence;

namespace Writ.Server.Policy;

/// <summary>The node side of a decision: the agent as the Writ schema's <c>Writ::Node</c>.</summary>
public sealed record NodeFacts(string SpiffeId, string Attestation, IReadOnlyList<string> Selectors, IReadOnlyList<string> Aliases)
{
    public static NodeFacts Of(AttestedNode node) =>
        new(node.SpiffeId, node.AttestationType, [.. node.Selectors.Select(s => s.ToString())], node.Aliases);
}

/// <summary>The identity asked for (the schema's <c>Writ::Identity</c>): from a registration entry, or an agent's own ID.</summary>
public sealed record IdentityFacts(string SpiffeId, string TrustDomain, string Path, string EntryId, string ParentId, string Hint, bool Admin, IReadOnlyList<string> DnsNames)
{
    public static IdentityFacts Of(RegistrationEntry e)
    {
        var id = Writ.Spiffe.SpiffeId.Parse(e.SpiffeId);
        return new(e.SpiffeId, id.TrustDomain.Name, id.Path, e.Id, e.ParentId, e.Hint, e.Admin, e.DnsNames);
    }

    public static IdentityFacts OfAgent(Writ.Spiffe.SpiffeId id) => new(id.ToString(), id.TrustDomain.Name, id.Path, "", "", "", false, []);

    /// <summary>An identity minted by an admin: no entry, no parent.</summary>
    public static IdentityFacts OfMint(Writ.Spiffe.SpiffeId id, IReadOnlyList<string> dnsNames) => new(id.ToString(), id.TrustDomain.Name, id.Path, "", "", "", false, dnsNames);
}

/// <summary>A Cedar request with the entities it is decided over.</summary>
public sealed record CedarQuery(Request Request, Entities Entities, IReadOnlyList<Entity> EntityList);

/// <summary>
/// Builds the Writ schema's Cedar requests from evidence, nodes and entries, writes them as canonical JSON for the
/// ledger, and reads them back (explain, what-if replay). Entity ids: Workload "&lt;agent id&gt;#&lt;instance id&gt;",
/// Node = the agent's SPIFFE ID, Identity = the SPIFFE ID issued.
/// </summary>
public static class WritCedar
{
    public const string NodeType = "Writ::Node";
    public const string WorkloadType = "Writ::Workload";
    public const string IdentityType = "Writ::Identity";
    public const string ActionType = "Writ::Action";
    public const string AdminType = "Writ::Admin";

    public static readonly EntityUid AttestNode = new(ActionType, "AttestNode");
    public static readonly EntityUid IssueX509Svid = new(ActionType, "IssueX509Svid");
    public static readonly EntityUid IssueJwtSvid = new(ActionType, "IssueJwtSvid");
    /// <summary>Issue #16 item 5: a pooled X.509-SVID for an agent's outage pool (principal the node).</summary>
    public static readonly EntityUid IssuePooledX509Svid = new(ActionType, "IssuePooledX509Svid");
    public static readonly EntityUid AdminMintX509Svid = new(ActionType, "AdminMintX509Svid");
    public static readonly EntityUid AdminMintJwtSvid = new(ActionType, "AdminMintJwtSvid");

    /// <summary>An admin API caller ("uid:N").</summary>
    public static Entity Admin(string caller) => new(new EntityUid(AdminType, caller), new Dictionary<string, Value>(StringComparer.Ordinal)
    {
        ["caller"] = Value.Of(caller),
    });

    public static Entity Node(NodeFacts n)
    {
        var attrs = new Dictionary<string, Value>(StringComparer.Ordinal)
        {
            ["spiffe_id"] = Value.Of(n.SpiffeId),
            ["attestation"] = Value.Of(n.Attestation),
            ["selectors"] = Strings(n.Selectors),
            ["aliases"] = Strings(n.Aliases),
        };
        if (n.Attestation == "tpm" && TpmRecord(n.Selectors) is { } tpm)
            attrs["tpm"] = tpm;
        if (n.Attestation == K8sPsatAttestation && K8sNodeRecord(n.Selectors) is { } k8s)
            attrs["k8s"] = k8s;
        return new(new EntityUid(NodeType, n.SpiffeId), attrs);
    }

    /// <summary>
    /// The node's optional <c>tpm</c> record, derived from its <c>tpm:</c> selectors only (so an attestation, a renewal and a
    /// recheck all see what the node's stored selectors say): <c>ek_hash</c>, <c>ek_issuer</c> ("" without an EK
    /// certificate), <c>pcrs</c> ("bank:n:hex"), <c>pcr_sets</c> (reference set names) and <c>secure_boot</c>
    /// ("on", "off", or "unknown" without an event log that says). Null for a node without a <c>tpm:ek_hash</c> selector;
    /// only nodes attested by <c>tpm</c> get one.
    /// </summary>
    public static RecordValue? TpmRecord(IEnumerable<string> selectors)
    {
        string? ekHash = null, ekIssuer = null, secureBoot = null;
        List<string> pcrs = [], pcrSets = [];
        foreach (var s in selectors)
        {
            if (!s.StartsWith("tpm:", StringComparison.Ordinal))
                continue;
            var rest = s[4..];
            var colon = rest.IndexOf(':', StringComparison.Ordinal);
            if (colon <= 0)
                continue;
            var value = rest[(colon + 1)..];
            switch (rest[..colon])
            {
                case "ek_hash": ekHash = value; break;
                case "ek_issuer": ekIssuer = value; break;
                case "pcr": pcrs.Add(value); break;
                case "pcr_set": pcrSets.Add(value); break;
                case "secure_boot": secureBoot = value; break;
            }
        }
        if (ekHash is null)
            return null;
        return new RecordValue(new Dictionary<string, Value>(StringComparer.Ordinal)
        {
            ["ek_hash"] = Value.Of(ekHash),
            ["ek_issuer"] = Value.Of(ekIssuer ?? ""),
            ["pcrs"] = Strings(pcrs),
            ["pcr_sets"] = Strings(pcrSets),
            ["secure_boot"] = Value.Of(secureBoot is "on" or "off" ? secureBoot : "unknown"),
        });
    }

    /// <summary>The node attestation method whose nodes get the <c>k8s</c> record.</summary>
    public const string K8sPsatAttestation = "k8s_psat";

    /// <summary>
    /// The node's optional <c>k8s</c> record (<c>Writ::K8sNode</c>), derived from its <c>k8s_psat:</c> selectors only. Null
    /// without any. A String attribute is absent when its selector is missing or names two values (fail closed: the
    /// schema makes a policy test it with <c>has</c>); <c>node_labels</c> holds every <c>agent_node_label:k:v</c> as "k=v".
    /// </summary>
    public static RecordValue? K8sNodeRecord(IEnumerable<string> selectors)
    {
        var s = Parts(selectors, "k8s_psat:");
        if (s.Count == 0)
            return null;
        var attrs = new Dictionary<string, Value>(StringComparer.Ordinal);
        One(attrs, s, "cluster", "cluster");
        One(attrs, s, "agent_ns", "namespace");
        One(attrs, s, "agent_sa", "service_account");
        One(attrs, s, "agent_pod_name", "pod_name");
        One(attrs, s, "agent_pod_uid", "pod_uid");
        One(attrs, s, "agent_node_name", "node_name");
        One(attrs, s, "agent_node_uid", "node_uid");
        attrs["node_labels"] = Strings(Pairs(s, "agent_node_label", '='));
        return new RecordValue(attrs);
    }

    /// <summary>
    /// The workload's optional <c>k8s</c> record (<c>Writ::K8sWorkload</c>), derived from its <c>k8s:</c> selectors only. Null
    /// without any. A String attribute is absent when its selector is missing or names two values. Sets that describe one
    /// pod (<c>pod_labels</c> "k=v", <c>owners</c> "Kind/name") are empty unless exactly one pod UID is known, and
    /// <c>image_signed_by</c> is empty unless exactly one image digest is: a signature is credited to one image only.
    /// </summary>
    public static RecordValue? K8sWorkloadRecord(IEnumerable<string> selectors)
    {
        var s = Parts(selectors, "k8s:");
        if (s.Count == 0)
            return null;
        var attrs = new Dictionary<string, Value>(StringComparer.Ordinal);
        One(attrs, s, "ns", "namespace");
        One(attrs, s, "sa", "service_account");
        One(attrs, s, "pod-name", "pod_name");
        var onePod = One(attrs, s, "pod-uid", "pod_uid");
        One(attrs, s, "container-name", "container_name");
        One(attrs, s, "container-image", "container_image");
        var oneImage = One(attrs, s, "container-image-id", "container_image_id");
        One(attrs, s, "node-name", "node_name");
        attrs["pod_labels"] = Strings(onePod ? Pairs(s, "pod-label", '=') : []);
        attrs["owners"] = Strings(onePod ? Pairs(s, "pod-owner", '/') : []);
        attrs["image_signed_by"] = Strings(oneImage ? Values(s, "image-signed-by") : []);
        return new RecordValue(attrs);
    }

    /// <summary>
    /// The workload's optional <c>oidc</c> record (<c>Writ::OidcWorkload</c>) from its <c>oidc:</c> selectors, only when the
    /// workload's node is the server itself (<c>spiffe://&lt;td&gt;/writ/server</c>: a CI job the server attested from its
    /// token); an agent that reports <c>oidc:</c> selectors gets none. Null without any. <c>issuer</c> and <c>subject</c> are
    /// absent when missing or twice; <c>claims</c> holds every <c>claim:name:value</c> as "name=value".
    /// </summary>
    public static RecordValue? OidcRecord(string nodeId, IEnumerable<string> selectors)
    {
        if (!IsServerId(nodeId))
            return null;
        var s = Parts(selectors, "oidc:");
        if (s.Count == 0)
            return null;
        var attrs = new Dictionary<string, Value>(StringComparer.Ordinal);
        One(attrs, s, "iss", "issuer");
        One(attrs, s, "sub", "subject");
        attrs["claims"] = Strings(Pairs(s, "claim", '='));
        return new RecordValue(attrs);
    }

    /// <summary>True for the server's own ID, <c>spiffe://&lt;td&gt;/writ/server</c>, the node of agentless (CI) workloads.</summary>
    public static bool IsServerId(string id) =>
        Writ.Spiffe.SpiffeId.TryParse(id, out var parsed, out _) && parsed.Path == "/writ/server";

    // The selectors of one type as (kind, value): "k8s:pod-label:app:web" with prefix "k8s:" is ("pod-label", "app:web"); empty values are dropped.
    private static List<(string Kind, string Value)> Parts(IEnumerable<string> selectors, string prefix)
    {
        List<(string, string)> parts = [];
        foreach (var sel in selectors)
        {
            if (!sel.StartsWith(prefix, StringComparison.Ordinal))
                continue;
            var rest = sel[prefix.Length..];
            var colon = rest.IndexOf(':', StringComparison.Ordinal);
            if (colon > 0 && colon < rest.Length - 1)
                parts.Add((rest[..colon], rest[(colon + 1)..]));
        }
        return parts;
    }

    private static IEnumerable<string> Values(List<(string Kind, string Value)> parts, string kind) =>
        parts.Where(p => p.Kind == kind).Select(p => p.Value).Distinct(StringComparer.Ordinal);

    /// <summary>Sets <paramref name="name"/> to the one value of <paramref name="kind"/>; leaves it absent when there is none or more than one.</summary>
    private static bool One(Dictionary<string, Value> attrs, List<(string Kind, string Value)> parts, string kind, string name)
    {
        var values = Values(parts, kind).Take(2).ToList();
        if (values.Count != 1)
            return false;
        attrs[name] = Value.Of(values[0]);
        return true;
    }

    // "key:value" pairs (split at the first ':', the value may be empty) written "key<sep>value".
    private static IEnumerable<string> Pairs(List<(string Kind, string Value)> parts, string kind, char separator)
    {
        foreach (var v in Values(parts, kind))
        {
            var colon = v.IndexOf(':', StringComparison.Ordinal);
            if (colon > 0)
                yield return string.Concat(v.AsSpan(0, colon), separator.ToString(), v.AsSpan(colon + 1));
        }
    }

    public static Entity Identity(IdentityFacts i) => new(new EntityUid(IdentityType, i.SpiffeId), new Dictionary<string, Value>(StringComparer.Ordinal)
    {
        ["spiffe_id"] = Value.Of(i.SpiffeId),
        ["trust_domain"] = Value.Of(i.TrustDomain),
        ["path"] = Value.Of(i.Path),
        ["entry_id"] = Value.Of(i.EntryId),
        ["parent_id"] = Value.Of(i.ParentId),
        ["hint"] = Value.Of(i.Hint),
        ["admin"] = Value.Of(i.Admin),
        ["dns_names"] = Strings(i.DnsNames),
    });

    /// <summary>
    /// The workload instance: uid/gid from the <c>unix:uid:N</c>/<c>unix:gid:N</c> selectors (else -1), pid from the
    /// facts or the instance id (else -1), the optional attributes from their selectors only (<c>unix:path</c>,
    /// <c>unix:sha256</c>, <c>container:id</c>, <c>k8s:pod-uid</c> (absent when two differ), <c>cgroup:path</c>), and the
    /// optional <c>k8s</c> and <c>oidc</c> records (<see cref="K8sWorkloadRecord"/>, <see cref="OidcRecord"/>). Security attributes never come
    /// from raw facts: an attestor that refused the process (e.g. its effective uid no longer matches the socket's peer
    /// credentials after a setuid exec) still reports facts, and those must not satisfy a policy.
    /// </summary>
    public static Entity Workload(string agentId, WorkloadEvidence ev)
    {
        var node = new EntityUid(NodeType, agentId);
        var attrs = new Dictionary<string, Value>(StringComparer.Ordinal)
        {
            ["node"] = Value.Of(node),
            ["selectors"] = Strings(ev.Selectors.Select(s => s.ToString())),
            ["instance_id"] = Value.Of(ev.InstanceId),
            ["uid"] = Value.Of(Id(ev.SelectorValue("unix", "uid"))),
            ["gid"] = Value.Of(Id(ev.SelectorValue("unix", "gid"))),
            ["pid"] = Value.Of(Pid(ev)),
        };
        void Optional(string name, string? value)
        {
            if (value is not null)
                attrs[name] = Value.Of(value);
        }
        Optional("exe_path", ev.SelectorValue("unix", "path"));
        Optional("exe_sha256", ev.SelectorValue("unix", "sha256")?.ToLowerInvariant());
        Optional("container_id", ev.SelectorValue("container", "id"));
        Optional("cgroup", ev.SelectorValue("cgroup", "path"));
        var selectors = ev.Selectors.Select(s => s.ToString()).ToList();
        if (K8sWorkloadRecord(selectors) is { } k8s)
        {
            attrs["k8s"] = k8s;
            if (k8s.Fields.TryGetValue("pod_uid", out var podUid))
                attrs["pod_uid"] = podUid;   // the same rule: one pod UID or none
        }
        if (OidcRecord(agentId, selectors) is { } oidc)
            attrs["oidc"] = oidc;
        return new Entity(WorkloadUid(agentId, ev.InstanceId), attrs, [node]);
    }

    public static EntityUid WorkloadUid(string agentId, string instanceId) => new(WorkloadType, agentId + "#" + instanceId);

    private static long Id(string? selector) =>
        selector is not null && long.TryParse(selector, NumberStyles.None, CultureInfo.InvariantCulture, out var v) ? v : -1;

    private static long Pid(WorkloadEvidence ev)
    {
        if (ev.Facts.TryGetValue("unix.pid", out var p) && long.TryParse(p, NumberStyles.None, CultureInfo.InvariantCulture, out var pid))
            return pid;
        var colon = ev.InstanceId.IndexOf(':', StringComparison.Ordinal);
        return colon > 0 && long.TryParse(ev.InstanceId.AsSpan(0, colon), NumberStyles.None, CultureInfo.InvariantCulture, out pid) ? pid : -1;
    }

    public static RecordValue Context(IReadOnlyList<string> audience, long requestedTtlSeconds, long nowUnix, bool bound) =>
        new(new Dictionary<string, Value>(StringComparer.Ordinal)
        {
            ["audience"] = Strings(audience),
            ["requested_ttl"] = Value.Of(requestedTtlSeconds),
            ["now"] = Value.Of(nowUnix),
            ["bound"] = Value.Of(bound),
        });

    public static CedarQuery Query(Entity principal, EntityUid action, Entity resource, RecordValue context, params Entity[] others)
    {
        List<Entity> list = [principal, resource, .. others];
        return new CedarQuery(new Request(principal.Uid, action, resource.Uid, context), Entities.Create(list), list);
    }

    private static SetValue Strings(IEnumerable<string> items) => new(items.Select(s => (Value)Value.Of(s)));

    // ---- JSON (canonical: keys in ordinal order, no whitespace) ----

    /// <summary>The request as {"action","context","principal","resource"} (uids as {"id","type"}).</summary>
    public static JsonObject RequestJson(Request r) => new()
    {
        ["action"] = UidJson(r.Action),
        ["context"] = ValueJson(r.Context),
        ["principal"] = UidJson(r.Principal),
        ["resource"] = UidJson(r.Resource),
    };

    /// <summary>Entities in Cedar's entities JSON format (explicit <c>__entity</c> escapes).</summary>
    public static JsonArray EntitiesJson(IEnumerable<Entity> entities)
    {
        var a = new JsonArray();
        foreach (var e in entities)
        {
            var attrs = new JsonObject();
            foreach (var (k, v) in e.Attributes)
                attrs[k] = ValueJson(v);
            var parents = new JsonArray();
            foreach (var p in e.Parents)
                parents.Add(UidJson(p));
            a.Add(new JsonObject { ["attrs"] = attrs, ["parents"] = parents, ["uid"] = UidJson(e.Uid) });
        }
        return a;
    }

    public static JsonObject UidJson(EntityUid u) => new() { ["id"] = u.Id, ["type"] = u.Type };

    public static JsonNode? ValueJson(Value v) => v switch
    {
        BoolValue b => JsonValue.Create(b.Value),
        LongValue l => JsonValue.Create(l.Value),
        StringValue s => JsonValue.Create(s.Value),
        EntityValue e => new JsonObject { ["__entity"] = UidJson(e.Uid) },
        SetValue set => new JsonArray([.. set.Items.Select(ValueJson)]),
        RecordValue r => new JsonObject(r.Fields.Select(f => KeyValuePair.Create(f.Key, ValueJson(f.Value)))),
        _ => throw new ArgumentException($"a {v.TypeName} value is not part of the Writ schema"),
    };

    /// <summary>Reads back a request and its entities as recorded by <see cref="RequestJson"/> and <see cref="EntitiesJson"/>.</summary>
    public static bool TryReadQuery(JsonNode? request, JsonNode? entities, out CedarQuery? query, out string error)
    {
        query = null;
        if (request is not JsonObject r || entities is not JsonArray)
        {
            error = "the record has no Cedar request or entities";
            return false;
        }
        if (!TryUid(r["principal"], out var principal) || !TryUid(r["action"], out var action) || !TryUid(r["resource"], out var resource))
        {
            error = "the recorded request has no principal, action or resource uid";
            return false;
        }
        if (!CedarJson.TryParseEntities(entities.ToJsonString(), null, out var store, out error))
            return false;
        if (!CedarJson.TryParseContext(r["context"]?.ToJsonString() ?? "{}", null, null, out var context, out error))
            return false;
        query = new CedarQuery(new Request(principal!, action!, resource!, context), store!, [.. store!.All]);
        return true;
    }

    private static bool TryUid(JsonNode? n, out EntityUid? uid)
    {
        uid = null;
        if (n is JsonObject o && o["type"] is JsonValue t && t.TryGetValue<string>(out var type) && o["id"] is JsonValue i && i.TryGetValue<string>(out var id))
            uid = new EntityUid(type, id);
        return uid is not null;
    }

    /// <summary>Writes a JSON tree with every object's keys in ordinal order and no whitespace.</summary>
    public static string Canonical(JsonNode node)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            Write(w, node);
        }
        return Encoding.UTF8.GetString(ms.ToArray());
    }

    private static void Write(Utf8JsonWriter w, JsonNode? n)
    {
        switch (n)
        {
            case null:
                w.WriteNullValue();
                break;
            case JsonObject o:
                w.WriteStartObject();
                foreach (var (k, v) in o.OrderBy(p => p.Key, StringComparer.Ordinal))
                {
                    w.WritePropertyName(k);
                    Write(w, v);
                }
                w.WriteEndObject();
                break;
            case JsonArray a:
                w.WriteStartArray();
                foreach (var x in a)
                    Write(w, x);
                w.WriteEndArray();
                break;
            default:
                n.WriteTo(w);
                break;
        }
    }
}
