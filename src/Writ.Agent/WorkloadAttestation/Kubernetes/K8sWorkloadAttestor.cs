using System.Collections.ObjectModel;
using System.Text.RegularExpressions;
using k8s.Models;
using Microsoft.Extensions.Logging;
using Writ.Agent.PeerTracking;
using Writ.Agent.WorkloadAttestation.ImageSignatures;
using Writ.Protocol.Evidence;

namespace Writ.Agent.WorkloadAttestation.Kubernetes;

/// <summary>
/// The <c>k8s</c> workload attestor. The chain of trust: the kernel's /proc/&lt;pid&gt;/cgroup names the pod uid and the
/// container id (<see cref="CgroupWorkloadAttestor.Evaluate"/>, the same rules as the cgroup attestor, so a process
/// cannot claim a container it is not in); the kubelet of this node (<see cref="KubeletPodCache"/>) says which pod has
/// that uid and which of its containers has that id. The selectors (docs/selectors.md, "k8s attestor") describe that
/// pod and container only: a pod elsewhere that claims the same labels, or another node's pod in the kubelet's answer,
/// gives a process nothing. A process that is not in a pod's container gets no k8s selectors (not an error). With an
/// <see cref="IImageSignatureVerifier"/>, a container whose image digest is known also gets
/// <c>k8s:image-signed-by:&lt;key&gt;</c> for every registered key that signed it.
/// </summary>
public sealed partial class K8sWorkloadAttestor : IWorkloadAttestor, IDisposable
{
    public const string AttestorName = "k8s";

    private readonly IProcFs _proc;
    private readonly KubeletPodCache _pods;
    private readonly IImageSignatureVerifier? _verifier;
    private readonly ILogger _log;
    private readonly KubeletClient? _client;

    /// <summary>The attestor as the agent builds it: a <see cref="KubeletClient"/> from <paramref name="options"/>.</summary>
    public K8sWorkloadAttestor(K8sWorkloadOptions options, IProcFs proc, IImageSignatureVerifier? verifier, ILogger log, TimeProvider time)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(proc);
        ArgumentNullException.ThrowIfNull(log);
        ArgumentNullException.ThrowIfNull(time);
        if (options.NodeName is not { Length: > 0 } node)
        {
            throw new ArgumentException("the k8s workload attestor needs k8s.node_name (the node the agent runs on; in a DaemonSet from the downward API, spec.nodeName)", nameof(options));
        }

        _client = new KubeletClient(options, log);
        _pods = new KubeletPodCache(_client.GetPodsAsync, node, options.PodCacheTtl, time, log);
        _proc = proc;
        _verifier = verifier;
        _log = log;
    }

    /// <summary>The attestor over a given pod source (tests, other pod sources).</summary>
    public K8sWorkloadAttestor(KubeletPodCache pods, IProcFs proc, IImageSignatureVerifier? verifier, ILogger log)
    {
        ArgumentNullException.ThrowIfNull(pods);
        ArgumentNullException.ThrowIfNull(proc);
        ArgumentNullException.ThrowIfNull(log);
        _pods = pods;
        _proc = proc;
        _verifier = verifier;
        _log = log;
    }

    public string Name => AttestorName;

    /// <summary>Where the pods come from (its <see cref="KubeletPodCache.Fetches"/> counts kubelet requests).</summary>
    public KubeletPodCache Pods => _pods;

    public async Task<AttestorResult> AttestAsync(WorkloadProcess process, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(process);
        int pid = process.Peer.Pid;
        if (ReadCgroup(pid, out string? error) is not { } cgroupText)
        {
            return AttestorResult.Failure(Name, error!);
        }

        // The same rules as the cgroup attestor: outermost container component, pod uid only above it, user-delegated
        // subtrees and conmon refused, one container across hierarchies.
        AttestorResult cgroup = CgroupWorkloadAttestor.Evaluate(Name, cgroupText);
        if (cgroup.Error is not null)
        {
            return AttestorResult.Failure(Name, cgroup.Error);
        }

        var facts = new Dictionary<string, string>(StringComparer.Ordinal);
        if (!cgroup.Facts.TryGetValue("pod_uid", out string? podUid) || !cgroup.Facts.TryGetValue("container_id", out string? containerId))
        {
            facts["pod"] = cgroup.Facts.TryGetValue("container_refused", out string? refused)
                ? $"none: {refused}"
                : "none: the process is not in a Kubernetes pod's container cgroup";
            return AttestorResult.Success(Name, [], new ReadOnlyDictionary<string, string>(facts));
        }

        facts["pod_uid"] = podUid;
        facts["container_id"] = containerId;
        V1Pod? pod;
        ContainerMatch? container;
        try
        {
            PodSnapshot snapshot = await _pods.CurrentAsync(ct).ConfigureAwait(false);
            (pod, container) = Find(snapshot, podUid, containerId);
            if (pod is null || container is null)
            {
                // A pod or container newer than the list: ask again (once; shared with concurrent misses).
                snapshot = await _pods.RefreshAfterAsync(snapshot, ct).ConfigureAwait(false);
                (pod, container) = Find(snapshot, podUid, containerId);
            }

            if (pod is null)
            {
                LogPodNotFound(_log, pid, podUid);
                return AttestorResult.Failure(Name,
                    $"{K8sWorkloadCodes.PodNotFound}: the kubelet lists no pod {podUid} on this node (process {pid} is in its cgroup); the pod was deleted, or k8s.node_name does not name this node",
                    new ReadOnlyDictionary<string, string>(facts));
            }

            if (container is null)
            {
                facts["namespace"] = pod.Metadata.NamespaceProperty ?? "";
                facts["pod_name"] = pod.Metadata.Name ?? "";
                return AttestorResult.Failure(Name,
                    $"{K8sWorkloadCodes.ContainerNotFound}: pod {podUid} has no container status with id {containerId} (process {pid}); the container is starting or restarted: let the client retry",
                    new ReadOnlyDictionary<string, string>(facts));
            }
        }
        catch (KubeletException ex)
        {
            return AttestorResult.Failure(Name, ex.Describe(), new ReadOnlyDictionary<string, string>(facts));
        }

        var selectors = new List<Selector>();
        var omitted = new List<string>();
        void Add(string name, string value)
        {
            string v = $"{name}:{value}";
            if (value.Length > 0 && Selector.IsValidValue(v) && v.Length <= WorkloadEvidence.MaxTextLength)
            {
                selectors.Add(new Selector("k8s", v));
            }
            else
            {
                omitted.Add(name);
            }
        }

        V1ObjectMeta meta = pod.Metadata;
        Add("ns", meta.NamespaceProperty ?? "");
        Add("sa", pod.Spec.ServiceAccountName ?? "");
        Add("pod-uid", meta.Uid);
        Add("pod-name", meta.Name ?? "");
        foreach ((string key, string value) in meta.Labels ?? new Dictionary<string, string>())
        {
            Add("pod-label", $"{key}:{value}");
        }

        foreach (V1OwnerReference owner in meta.OwnerReferences ?? [])
        {
            Add("pod-owner", $"{owner?.Kind}:{owner?.Name}");
        }

        Add("container-name", container.Name);
        Add("container-image", container.Image);
        string? digest = ImageDigest(container.ImageId);
        if (digest is not null)
        {
            Add("container-image-id", digest);
        }

        Add("node-name", pod.Spec.NodeName);
        facts["namespace"] = meta.NamespaceProperty ?? "";
        facts["pod_name"] = meta.Name ?? "";
        facts["service_account"] = pod.Spec.ServiceAccountName ?? "";
        facts["container_name"] = container.Name;
        facts["container_kind"] = container.Kind;
        facts["image"] = container.Image;
        facts["image_id"] = container.ImageId;
        facts["node_name"] = pod.Spec.NodeName;
        if (digest is null)
        {
            facts["image_digest"] = "none: status.imageID is not a sha256 digest";
        }
        else if (_verifier is not null)
        {
            try
            {
                ImageSignatureResult signed = await _verifier.SignersAsync(container.Image, digest, ct).ConfigureAwait(false);
                foreach (string signer in signed.Signers)
                {
                    Add("image-signed-by", signer);
                }

                if (signed.Error is not null)
                {
                    facts["image_signature_error"] = signed.Error;
                    LogSignatureLookupFailed(_log, container.Image, signed.Error);
                }
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                facts["image_signature_error"] = $"the signature lookup failed ({ex.GetType().Name})";
                LogSignatureLookupFailed(_log, container.Image, ex.GetType().Name);
            }
        }

        if (omitted.Count > 0)
        {
            facts["omitted"] = "values that cannot be selectors (empty, whitespace, too long): " + string.Join(",", omitted.Distinct());
        }

        return AttestorResult.Success(Name, selectors.AsReadOnly(), new ReadOnlyDictionary<string, string>(facts));
    }

    private string? ReadCgroup(int pid, out string? error)
    {
        switch (ProcFile.Read(ProcFs.PidPath(_proc, pid, "cgroup"), out ReadOnlySpan<char> text))
        {
            case ProcReadStatus.Missing:
                error = $"process {pid} does not exist (it exited); let the client reconnect";
                return null;
            case ProcReadStatus.Failed:
                error = $"could not read /proc cgroup of process {pid} ({ProcFile.ErrorName}); the agent needs to read /proc/<pid>/cgroup";
                return null;
        }

        error = null;
        return text.ToString();
    }

    /// <summary>The container of <paramref name="pod"/> whose status names <paramref name="containerId"/>.</summary>
    private sealed record ContainerMatch(string Name, string Image, string ImageId, string Kind);

    private static (V1Pod? Pod, ContainerMatch? Container) Find(PodSnapshot snapshot, string podUid, string containerId)
    {
        if (!snapshot.ByUid.TryGetValue(podUid, out V1Pod? pod))
        {
            return (null, null);
        }

        V1PodStatus? status = pod.Status;
        return (pod, Match(status?.ContainerStatuses, "container") ?? Match(status?.InitContainerStatuses, "init") ?? Match(status?.EphemeralContainerStatuses, "ephemeral"));

        ContainerMatch? Match(IList<V1ContainerStatus>? statuses, string kind)
        {
            foreach (V1ContainerStatus? s in statuses ?? [])
            {
                // "containerd://<id>", "cri-o://<id>", "docker://<id>": the runtime's name, then the id the cgroup names.
                string? id = s?.ContainerID;
                int sep = id?.IndexOf("://", StringComparison.Ordinal) ?? -1;
                if (sep > 0 && string.Equals(id![(sep + 3)..], containerId, StringComparison.Ordinal))
                {
                    return new ContainerMatch(s!.Name ?? "", s.Image ?? "", s.ImageID ?? "", kind);
                }
            }

            return null;
        }
    }

    /// <summary>
    /// <c>sha256:&lt;64 hex&gt;</c> from a container status's imageID (<c>docker.io/library/nginx@sha256:…</c>,
    /// <c>docker-pullable://nginx@sha256:…</c> or a bare <c>sha256:…</c>); null when it holds no such digest.
    /// </summary>
    public static string? ImageDigest(string? imageId)
    {
        if (imageId is null)
        {
            return null;
        }

        Match m = DigestPattern().Match(imageId);
        return m.Success ? "sha256:" + m.Groups["hex"].Value : null;
    }

    [GeneratedRegex(@"(?:\A|@)sha256:(?<hex>[0-9a-f]{64})\z", RegexOptions.CultureInvariant)]
    private static partial Regex DigestPattern();

    public void Dispose() => _client?.Dispose();

    [LoggerMessage(EventId = 2765, Level = LogLevel.Information, Message = "k8s workload attestor: process {Pid} is in pod {PodUid}, which the kubelet does not list for this node (after a refresh)")]
    private static partial void LogPodNotFound(ILogger logger, int pid, string podUid);

    [LoggerMessage(EventId = 2766, Level = LogLevel.Debug, Message = "k8s workload attestor: image signature lookup for {Image} failed: {Reason}")]
    private static partial void LogSignatureLookupFailed(ILogger logger, string image, string reason);
}
