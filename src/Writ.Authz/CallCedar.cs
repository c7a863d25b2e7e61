using Writ.Policy.Ast;
using Writ.Policy.Authorization;
using Writ.Policy.Evaluation;
using Writ.Protocol.Agent;
using Writ.Spiffe;

namespace Writ.Authz;

/// <summary>
/// The Cedar request of a request-time decision, <c>Writ::Action::"call"</c>: principal = the caller's identity
/// (<c>Writ::Identity</c>), resource = the destination identity/service (<c>Writ::Identity</c>), context = the request
/// and the caller's live state (the schema's <c>CallContext</c>, docs/policy.md). The one place the facts of a call
/// become Cedar: the agent decides with it and the server rebuilds the same query from the reported facts (explain,
/// what-if).
/// </summary>
public static class CallCedar
{
    public const string IdentityType = "Writ::Identity";
    public const string ActionType = "Writ::Action";

    /// <summary>The action of every request-time decision.</summary>
    public static readonly EntityUid Call = new(ActionType, "call");

    public const string X509Credential = "x509-svid";
    public const string JwtCredential = "jwt-svid";

    /// <summary>The request and the entities it is decided over (principal first, then resource when it differs).</summary>
    public static (Request Request, IReadOnlyList<Entity> Entities) Query(CallFacts facts)
    {
        ArgumentNullException.ThrowIfNull(facts);
        var principal = Identity(facts.CallerSpiffeId, facts.CallerDnsNames, facts.CallerAgentId);
        var resource = Identity(facts.ResourceSpiffeId, [], "");
        var context = new RecordValue(new Dictionary<string, Value>(StringComparer.Ordinal)
        {
            ["method"] = Value.Of(facts.Method),
            ["path"] = Value.Of(facts.Path),
            ["host"] = Value.Of(facts.Host),
            ["headers"] = Strings(facts.Headers.OrderBy(h => h.Key, StringComparer.Ordinal).Select(h => h.Key + "=" + h.Value)),
            ["credential"] = Value.Of(facts.Credential),
            ["now"] = Value.Of(facts.NowUnix),
            ["caller_local"] = Value.Of(facts.CallerLocal),
            ["caller_selectors"] = Strings(facts.CallerSelectors),
            ["caller_instance_id"] = Value.Of(facts.CallerInstanceId),
            ["caller_agent_id"] = Value.Of(facts.CallerAgentId),
        });
        IReadOnlyList<Entity> entities = principal.Uid.Equals(resource.Uid) ? [principal] : [principal, resource];
        return (new Request(principal.Uid, Call, resource.Uid, context), entities);
    }

    /// <summary>
    /// A <c>Writ::Identity</c> known only by its SPIFFE ID (a caller or a destination seen at request time): no entry,
    /// no hint; the parent is the agent that serves it when known. An ID that does not parse keeps its text with empty
    /// trust domain and path (such a caller is refused before Cedar is asked).
    /// </summary>
    public static Entity Identity(string spiffeId, IEnumerable<string> dnsNames, string parentId)
    {
        ArgumentNullException.ThrowIfNull(spiffeId);
        var parsed = SpiffeId.TryParse(spiffeId, out var id, out _);
        return new Entity(new EntityUid(IdentityType, spiffeId), new Dictionary<string, Value>(StringComparer.Ordinal)
        {
            ["spiffe_id"] = Value.Of(spiffeId),
            ["trust_domain"] = Value.Of(parsed ? id!.TrustDomain.Name : ""),
            ["path"] = Value.Of(parsed ? id!.Path : ""),
            ["entry_id"] = Value.Of(""),
            ["parent_id"] = Value.Of(parentId ?? ""),
            ["hint"] = Value.Of(""),
            ["admin"] = Value.Of(false),
            ["dns_names"] = Strings(dnsNames ?? []),
        });
    }

    private static SetValue Strings(IEnumerable<string> items) => new(items.Select(s => (Value)Value.Of(s)));
}
