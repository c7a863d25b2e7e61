namespace Writ.Agent.WorkloadAttestation.Kubernetes;

/// <summary>
/// The <c>k8s</c> workload attestor's configuration (<c>k8s.*</c> agent keys, docs/kubernetes.md): where the kubelet is,
/// how the agent authenticates to it and checks its certificate, which node it runs on, how long pod lists are cached.
/// </summary>
public sealed record K8sWorkloadOptions
{
    public const string DefaultTokenPath = "/var/run/secrets/kubernetes.io/serviceaccount/token";
    public const string DefaultCaPath = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";

    /// <summary>The kubelet's host (<c>k8s.kubelet_host</c>); with hostNetwork the DaemonSet reaches it on loopback.</summary>
    public string KubeletHost { get; init; } = "127.0.0.1";

    /// <summary>The kubelet's secure port (<c>k8s.kubelet_port</c>, 10250): HTTPS with the agent's service-account token.</summary>
    public int KubeletPort { get; init; } = 10250;

    /// <summary>The kubelet's read-only port (<c>k8s.kubelet_read_only_port</c>, plain HTTP, no authentication) where a
    /// cluster still has it; 0 (default): not used.</summary>
    public int KubeletReadOnlyPort { get; init; }

    /// <summary>PEM CA bundle the kubelet's serving certificate must chain to (<c>k8s.kubelet_ca</c>); null: the cluster CA
    /// at <see cref="DefaultCaPath"/> when it exists.</summary>
    public string? KubeletCaPath { get; init; }

    /// <summary>Do not check the kubelet's certificate (<c>k8s.skip_kubelet_verification</c>); logged as a warning at start.</summary>
    public bool SkipKubeletVerification { get; init; }

    /// <summary>The bearer token presented to the kubelet (<c>k8s.token_path</c>), re-read when it changes (projected tokens rotate).</summary>
    public string TokenPath { get; init; } = DefaultTokenPath;

    /// <summary>The node the agent runs on (<c>k8s.node_name</c>, usually from the downward API): pods the kubelet lists for
    /// another node are ignored. Required when the k8s attestor is enabled.</summary>
    public string? NodeName { get; init; }

    /// <summary>How long a pod list is reused (<c>k8s.pod_cache_ttl</c>, default 5 s); a miss refreshes it at once.</summary>
    public TimeSpan PodCacheTtl { get; init; } = TimeSpan.FromSeconds(5);
}
