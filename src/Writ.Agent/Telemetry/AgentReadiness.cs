using Writ.Agent.NodeAttestation;
using Writ.Agent.Sync;
using Writ.Protocol.Telemetry;

namespace Writ.Agent.Telemetry;

/// <summary>What the agent exports and when <c>/readyz</c> says ready: attested (it has an agent SVID) and synced.</summary>
public static class AgentReadiness
{
    public static TelemetrySources Sources { get; } = new("writ-agent", [WritAgentMetrics.MeterName], [WritAgentMetrics.MeterName]);

    /// <summary>Null when ready; otherwise why not (the body of the 503).</summary>
    public static string? Check(NodeIdentity node, AgentState state)
    {
        ArgumentNullException.ThrowIfNull(node);
        ArgumentNullException.ThrowIfNull(state);
        return node.AgentId is null ? "the agent is not attested yet"
            : !state.Synced ? "the agent has not completed a full sync with the server"
            : null;
    }
}
