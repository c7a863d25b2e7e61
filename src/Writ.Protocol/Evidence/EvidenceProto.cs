using System.Diagnostics.CodeAnalysis;
using Proto = Writ.Protocol.Agent;

namespace Writ.Protocol.Evidence;

/// <summary>The one place selectors and evidence cross the wire: to and from the <c>writ.agent.v1</c> messages.</summary>
public static class EvidenceProto
{
    public static Proto.Selector ToProto(this Selector selector)
    {
        ArgumentNullException.ThrowIfNull(selector);
        return new Proto.Selector { Type = selector.Type, Value = selector.Value };
    }

    /// <summary>The selector as sent; not validated (the receiver checks it where it matters, e.g. entry validation).</summary>
    public static Selector FromProto(Proto.Selector selector)
    {
        ArgumentNullException.ThrowIfNull(selector);
        return new Selector(selector.Type, selector.Value);
    }

    /// <summary>The evidence as the server's issuance decision receives it: all selectors, the facts map, the instance id.</summary>
    public static Proto.AttestedWorkload ToProto(this WorkloadEvidence evidence)
    {
        ArgumentNullException.ThrowIfNull(evidence);
        var proto = new Proto.AttestedWorkload { InstanceId = evidence.InstanceId };
        foreach (var s in evidence.Selectors)
        {
            proto.Selectors.Add(s.ToProto());
        }
        foreach (var (k, v) in evidence.Facts)
        {
            proto.Facts[k] = v;
        }
        return proto;
    }

    /// <summary><see cref="SelectorMatch.Matches"/> for an entry as it travels (the agent holds entries as protocol messages).</summary>
    public static bool Matches(IEnumerable<Proto.Selector> entry, IReadOnlySet<Selector> workload)
    {
        ArgumentNullException.ThrowIfNull(entry);
        return SelectorMatch.Matches(entry.Select(FromProto), workload);
    }

    /// <summary>Evidence from the wire, checked by <see cref="WorkloadEvidence.TryCreate"/>; else why not.</summary>
    public static bool TryFromProto(Proto.AttestedWorkload proto, [NotNullWhen(true)] out WorkloadEvidence? evidence, [NotNullWhen(false)] out string? error)
    {
        ArgumentNullException.ThrowIfNull(proto);
        return WorkloadEvidence.TryCreate(proto.Selectors.Select(s => (s.Type, s.Value)), proto.Facts, proto.InstanceId, out evidence, out error);
    }
}
