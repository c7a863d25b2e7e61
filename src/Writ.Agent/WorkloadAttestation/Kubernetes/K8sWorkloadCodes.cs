namespace Writ.Agent.WorkloadAttestation.Kubernetes;

/// <summary>The stable codes of the <c>k8s</c> workload attestor's failures (docs/errors.md, "Kubernetes workload attestation").</summary>
public static class K8sWorkloadCodes
{
    /// <summary>The kubelet could not be reached, did not answer in time, or answered with a server error.</summary>
    public const string KubeletUnreachable = "WRIT-K8S-KUBELET-UNREACHABLE";

    /// <summary>The kubelet's serving certificate does not chain to the configured CA (<c>k8s.kubelet_ca</c>).</summary>
    public const string KubeletUntrusted = "WRIT-K8S-KUBELET-UNTRUSTED";

    /// <summary>The kubelet refused the agent's token (HTTP 401 or 403).</summary>
    public const string KubeletRefused = "WRIT-K8S-KUBELET-REFUSED";

    /// <summary>The kubelet's answer is not a pod list (not JSON, not a <c>PodList</c>, over the size cap, another HTTP status).</summary>
    public const string KubeletMalformed = "WRIT-K8S-KUBELET-MALFORMED";

    /// <summary>The token file for the kubelet (<c>k8s.token_path</c>) is missing, empty or unreadable.</summary>
    public const string TokenUnreadable = "WRIT-K8S-TOKEN-UNREADABLE";

    /// <summary>The pod named by the process's cgroup is not in the kubelet's list for this node, even after a refresh.</summary>
    public const string PodNotFound = "WRIT-K8S-POD-NOT-FOUND";

    /// <summary>The pod is listed, but none of its container statuses names the process's container, even after a refresh.</summary>
    public const string ContainerNotFound = "WRIT-K8S-CONTAINER-NOT-FOUND";
}

/// <summary>An expected failure of talking to the kubelet: a stable <see cref="Code"/> and a one-line message (no token, no body).</summary>
public sealed class KubeletException : Exception
{
    public KubeletException(string code, string message)
        : base(message)
    {
        Code = code;
    }

    public KubeletException()
        : this(K8sWorkloadCodes.KubeletUnreachable, "the kubelet could not be asked")
    {
    }

    public KubeletException(string message)
        : this(K8sWorkloadCodes.KubeletUnreachable, message)
    {
    }

    public KubeletException(string message, Exception innerException)
        : base(message, innerException)
    {
        Code = K8sWorkloadCodes.KubeletUnreachable;
    }

    public string Code { get; }

    /// <summary>"WRIT-…: message", as attestor errors are written.</summary>
    public string Describe() => $"{Code}: {Message}";
}
