using Writ.Agent.WorkloadAttestation;
using Writ.Protocol.Evidence;

namespace Writ.Agent.Instances;

/// <summary>
/// Which change of a workload's evidence takes its credentials away. Only evidence about <em>what runs and as
/// whom</em> counts: uid, gid, executable hash and path, container and cgroup, and in Kubernetes the pod (its uid,
/// namespace, service account), the container's name and its image digest. Other facts (parent pid, names from
/// /etc/passwd) and mutable pod metadata (labels, owners) may move without consequence: they are looked at again
/// when credentials are next issued.
/// </summary>
public static class EvidenceDrift
{
    /// <summary>Selector prefixes that matter, in the order their change is named (a uid change also drops the
    /// unix attestor's other selectors, so it is checked first).</summary>
    private static readonly (string Prefix, string Reason)[] Kinds =
    [
        ("unix:uid:", "uid changed"),
        ("unix:gid:", "gid changed"),
        ("unix:sha256:", "executable changed"),
        ("unix:path:", "executable path changed"),
        ("container:id:", "container changed"),
        (K8sNamespace, "namespace changed"),   // all k8s selectors lost: "pod gone" (see Compare)
        ("k8s:pod-uid:", "pod changed"),
        ("k8s:container-image-id:", "image changed"),
        ("k8s:sa:", "service account changed"),
        ("k8s:container-name:", "container name changed"),
        ("cgroup:path:", "cgroup changed"),
    ];

    private const string K8sNamespace = "k8s:ns:";

    /// <summary>The reason the evidence drifted ("executable changed", ...), or null if what matters is the same.</summary>
    public static string? Compare(WorkloadEvidence before, WorkloadEvidence after)
    {
        ArgumentNullException.ThrowIfNull(before);
        ArgumentNullException.ThrowIfNull(after);
        if (SameSelectors(before.Selectors, after.Selectors))
        {
            return null;   // the common case (every call of a workload that did not change): no strings, no sorting
        }
        var a = before.Selectors.Select(s => s.ToString()).ToList();
        var b = after.Selectors.Select(s => s.ToString()).ToList();
        foreach (var (prefix, reason) in Kinds)
        {
            var x = a.Where(s => s.StartsWith(prefix, StringComparison.Ordinal)).Order(StringComparer.Ordinal);
            var y = b.Where(s => s.StartsWith(prefix, StringComparison.Ordinal)).Order(StringComparer.Ordinal);
            if (!x.SequenceEqual(y, StringComparer.Ordinal))
            {
                return prefix == K8sNamespace && !y.Any() ? K8sLost(after) : reason;
            }
        }
        return null;
    }

    /// <summary>
    /// The k8s attestor's selectors are gone: the kubelet no longer lists the pod or the container ("pod gone"), or it
    /// could not be asked (the attestor's error says which; the credentials go either way: fail closed).
    /// </summary>
    private static string K8sLost(WorkloadEvidence after)
    {
        if (after.AttestorErrors.Any(e =>
                e.StartsWith(WorkloadAttestation.Kubernetes.K8sWorkloadCodes.KubeletUnreachable, StringComparison.Ordinal) ||
                e.StartsWith(WorkloadAttestation.Kubernetes.K8sWorkloadCodes.KubeletUntrusted, StringComparison.Ordinal) ||
                e.StartsWith(WorkloadAttestation.Kubernetes.K8sWorkloadCodes.KubeletRefused, StringComparison.Ordinal) ||
                e.StartsWith(WorkloadAttestation.Kubernetes.K8sWorkloadCodes.KubeletMalformed, StringComparison.Ordinal) ||
                e.StartsWith(WorkloadAttestation.Kubernetes.K8sWorkloadCodes.TokenUnreadable, StringComparison.Ordinal) ||
                e.StartsWith(WorkloadAttestationCodes.Timeout, StringComparison.Ordinal)))
        {
            return "pod evidence unavailable (kubelet)";
        }

        return "pod gone";
    }

    /// <summary>The same selectors in the same order (type and value, ordinal).</summary>
    public static bool SameSelectors(IReadOnlyList<Selector> a, IReadOnlyList<Selector> b)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        if (ReferenceEquals(a, b))
        {
            return true;
        }
        if (a.Count != b.Count)
        {
            return false;
        }
        for (var i = 0; i < a.Count; i++)
        {
            if (!string.Equals(a[i].Type, b[i].Type, StringComparison.Ordinal) || !string.Equals(a[i].Value, b[i].Value, StringComparison.Ordinal))
            {
                return false;
            }
        }
        return true;
    }
}
