using Writ.Policy.Ast;
using Writ.Policy.Authorization;
using Writ.Policy.Evaluation;
using Writ.Policy.Json;
using Writ.Protocol.Agent;

namespace Writ.Authz;

/// <summary>What a request-time decision answered: allowed or not, the determining policies, the policy version.</summary>
public sealed record CallDecision(bool Allowed, IReadOnlyList<string> DeterminingPolicies, IReadOnlyList<string> Errors, long PolicyVersion)
{
    /// <summary>A fresh decision id of a call: "c-" and 20 hex digits (issuance decisions are "d-…"), unique across agents.</summary>
    public static string NewId() => "c-" + Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(10));

    /// <summary>One line for the caller and the ledger: the determining policies, or "no policy permits".</summary>
    public string Reason => Allowed
        ? $"permitted by {string.Join(", ", DeterminingPolicies)} (policy version {PolicyVersion})"
        : DeterminingPolicies.Count > 0
            ? $"forbidden by {string.Join(", ", DeterminingPolicies)} (policy version {PolicyVersion})"
            : $"no policy permits Writ::Action::\"call\" for this caller and resource (policy version {PolicyVersion}); deny by default";
}

/// <summary>
/// The policy set the agent decides calls with, as the server pushed it (<see cref="Protocol.Agent.CallPolicy"/>):
/// immutable, so a decision reads one consistent version. Decisions are pure and thread-safe.
/// </summary>
public sealed class CallPolicySet
{
    private CallPolicySet(PolicySet set, long version, string sha256)
    {
        Set = set;
        Version = version;
        Sha256 = sha256;
    }

    /// <summary>No policy yet (before the first sync): every call is denied.</summary>
    public static CallPolicySet None { get; } = new(PolicySet.Empty, 0, "");

    public PolicySet Set { get; }

    public long Version { get; }

    public string Sha256 { get; }

    /// <summary>The pushed policy set, or why it cannot be used (the agent keeps the one it has).</summary>
    public static bool TryLoad(CallPolicy pushed, out CallPolicySet? set, out string error)
    {
        ArgumentNullException.ThrowIfNull(pushed);
        set = null;
        if (!PolicyJson.TryParsePolicySet(pushed.PolicySetJson, out var parsed, out error))
        {
            return false;
        }
        set = new CallPolicySet(parsed!, pushed.Version, pushed.Sha256);
        return true;
    }

    /// <summary>Asks Cedar. Deny by default; forbid wins; a policy that fails to evaluate is skipped (and listed).</summary>
    public CallDecision Decide(CallFacts facts)
    {
        var (request, entities) = CallCedar.Query(facts);
        var response = Authorizer.IsAuthorized(request, Set, Entities.Create(entities));
        return new CallDecision(response.IsAllowed, [.. response.Reasons.Order(StringComparer.Ordinal)],
            [.. response.Errors.Select(e => e.ToString())], Version);
    }
}
