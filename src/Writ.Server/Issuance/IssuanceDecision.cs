using System.Security.Cryptography;
using System.Text.Json.Nodes;
using Writ.Policy.Authorization;
using Writ.Server.Policy;
using Writ.Server.Storage;
using Writ.Protocol.Evidence;

namespace Writ.Server.Issuance;

/// <summary>
/// One issuance decision. <see cref="Stage"/> is "match" (the registration entry refused it before policy was asked:
/// entry expired, a selector missing from the evidence) or "policy" (Cedar decided). <see cref="Reason"/> is short and
/// safe to show the requester. <see cref="MaxTtl"/> is the smallest <c>@max_ttl</c> of the permits that decided.
/// </summary>
public sealed record IssuanceDecision(
    string Id,
    bool Allowed,
    string Stage,
    string Reason,
    IReadOnlyList<string> Determining,
    IReadOnlyList<string> Errors,
    TimeSpan? MaxTtl,
    long PolicyVersion,
    string PolicySha256,
    CedarQuery? Query)
{
    /// <summary>The action's name without its namespace, e.g. "IssueX509Svid".</summary>
    public string Action => Query?.Request.Action.Id ?? "";

    /// <summary>What a PermissionDenied says: the reason and how to look the decision up.</summary>
    public string DeniedDetail => $"{Reason} (decision {Id}; 'writ explain {Id}' shows why)";
}

/// <summary>The pipeline's pure steps: entry match, Cedar evaluation, TTL, decision ids, the ledger record's data.</summary>
public static class IssuanceDecider
{
    /// <summary>"d-" and 20 random hex digits (80 bits): unguessable, short enough to type.</summary>
    public static string NewDecisionId() => "d-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(10));

    /// <summary>The first of the entry's selectors that the evidence lacks, or null when entry selectors ⊆ evidence.</summary>
    public static Selector? MissingSelector(RegistrationEntry entry, WorkloadEvidence evidence) =>
        SelectorMatch.FirstMissing(entry.Selectors, SelectorMatch.SetOf(evidence.Selectors));

    /// <summary>A refusal by the entry match, before policy (recorded with the policy version active at the time).</summary>
    public static IssuanceDecision MatchDenied(ActivePolicy policy, string reason, CedarQuery? query) =>
        new(NewDecisionId(), false, "match", reason, [], [], null, policy.Version, policy.Compiled.Sha256, query);

    /// <summary>Asks Cedar. Forbid wins; no satisfied permit is a denial; the TTL cap is the smallest @max_ttl of the deciding permits.</summary>
    public static IssuanceDecision Evaluate(ActivePolicy policy, CedarQuery query)
    {
        var (allowed, determining, errors, maxTtl) = Authorize(policy.Compiled, query);
        var spiffeId = query.Request.Resource.Id;
        var reason = allowed
            ? $"permitted by {Quoted(determining)}"
            : determining.Count > 0
                ? $"denied by policy '{determining[0]}'"
                : $"no policy permits {query.Request.Action.Id} for {spiffeId}";
        return new IssuanceDecision(NewDecisionId(), allowed, "policy", reason, determining, errors, maxTtl, policy.Version, policy.Compiled.Sha256, query);
    }

    /// <summary>The bare Cedar decision of a compiled set (also what-if replay uses it).</summary>
    public static (bool Allowed, IReadOnlyList<string> Determining, IReadOnlyList<string> Errors, TimeSpan? MaxTtl) Authorize(CompiledPolicySet set, CedarQuery query)
    {
        var r = Authorizer.IsAuthorized(query.Request, set.Decisions, query.Entities);
        var determining = r.Reasons.Order(StringComparer.Ordinal).ToList();
        var errors = r.Errors.Select(e => e.ToString()).ToList();
        TimeSpan? cap = null;
        if (r.IsAllowed)
        {
            foreach (var id in determining)
            {
                if (set.MaxTtl.TryGetValue(id, out var t) && (cap is null || t < cap))
                    cap = t;
            }
        }
        return (r.IsAllowed, determining, errors, cap);
    }

    /// <summary>min(what the entry/CA allow, the policy cap); never below one second.</summary>
    public static TimeSpan Ttl(TimeSpan requested, TimeSpan? policyCap)
    {
        var ttl = policyCap is { } cap && cap < requested ? cap : requested;
        return ttl < TimeSpan.FromSeconds(1) ? TimeSpan.FromSeconds(1) : ttl;
    }

    private static string Quoted(IReadOnlyList<string> ids) =>
        ids.Count == 1 ? $"policy '{ids[0]}'" : "policies " + string.Join(", ", ids.Select(i => $"'{i}'"));

    /// <summary>
    /// The ledger record's data: everything <c>writ explain</c> and <c>writ policy whatif</c> need. Never keys or tokens
    /// (a JWT by its jti only). <paramref name="extra"/> adds the outcome's fields (serial, jti, ttl, expiry, audience).
    /// </summary>
    public static string RecordData(IssuanceDecision d, string kind, string agentId, string spiffeId, string? entryId, WorkloadEvidence? evidence, JsonObject? extra = null)
    {
        var o = new JsonObject
        {
            ["agent"] = agentId,
            ["decision"] = d.Allowed ? "allow" : "deny",
            ["determining_policies"] = new JsonArray([.. d.Determining.Select(x => (JsonNode)x)]),
            ["errors"] = new JsonArray([.. d.Errors.Select(x => (JsonNode)x)]),
            ["kind"] = kind,
            ["policy_sha256"] = d.PolicySha256,
            ["policy_version"] = d.PolicyVersion,
            ["reason"] = d.Reason,
            ["spiffe_id"] = spiffeId,
            ["stage"] = d.Stage,
        };
        if (entryId is not null)
            o["entry_id"] = entryId;
        if (d.Query is { } q)
        {
            o["request"] = WritCedar.RequestJson(q.Request);
            o["entities"] = WritCedar.EntitiesJson(q.EntityList);
        }
        if (evidence is not null)
        {
            var facts = new JsonObject();
            foreach (var (k, v) in evidence.Facts)
                facts[k] = v;
            o["evidence"] = new JsonObject
            {
                ["facts"] = facts,
                ["instance_id"] = evidence.InstanceId,
                ["selectors"] = new JsonArray([.. evidence.Selectors.Select(s => (JsonNode)s.ToString())]),
            };
        }
        if (extra is not null)
        {
            foreach (var (k, v) in extra.ToList())
            {
                extra.Remove(k);
                o[k] = v;
            }
        }
        return WritCedar.Canonical(o);
    }
}
