using System.Runtime.CompilerServices;
using Writ.Policy.Json;
using Writ.Protocol.Agent;
using Writ.Server.Policy;

namespace Writ.Server.Api;

/// <summary>
/// The call policy the Sync stream carries (<see cref="SyncUpdate.CallPolicy"/>): the active version's whole decision
/// set — the pushed policies and Writ's built-ins — in Cedar's JSON policy-set format, so an agent decides
/// <c>Writ::Action::"call"</c> with exactly what the server would decide with. Only a set the server compiled and
/// validated against the Writ schema becomes active, so nothing else ever reaches an agent.
/// </summary>
public sealed partial class AgentApi
{
    // One serialization per active version, shared by every agent's stream.
    private static readonly ConditionalWeakTable<ActivePolicy, CallPolicy> CallPolicies = [];

    /// <summary>The call policy of an active version (cached: every stream of the version gets the same message).</summary>
    public static CallPolicy CallPolicyOf(ActivePolicy policy)
    {
        ArgumentNullException.ThrowIfNull(policy);
        return CallPolicies.GetValue(policy, p => new CallPolicy
        {
            Version = p.Version,
            PolicySetJson = PolicyJson.ToJson(p.Compiled.Decisions),
            Sha256 = p.Compiled.Sha256,
        });
    }
}
