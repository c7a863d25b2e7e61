using Writ.Agent.Instances;
using Writ.Agent.WorkloadAttestation.Kubernetes;
using Writ.Protocol.Evidence;

namespace Writ.Agent.Tests.WorkloadAttestation.Kubernetes;

/// <summary>Which change of a workload's Kubernetes evidence is a drift, and the reason it is given.</summary>
public sealed class K8sEvidenceDriftTests
{
    private const string Pod = "k8s:ns:prod|k8s:sa:web|k8s:pod-uid:U1|k8s:pod-name:web-1|k8s:pod-label:app:web|k8s:pod-owner:ReplicaSet:web|" +
        "k8s:container-name:app|k8s:container-image:web:1.2|k8s:container-image-id:sha256:AAA|k8s:node-name:node-a|container:id:C1";

    [Theory]
    [InlineData("k8s:container-image-id:sha256:AAA", "k8s:container-image-id:sha256:BBB", null, "image changed")]
    [InlineData("k8s:container-image-id:sha256:AAA", "", null, "image changed")]   // the new image id is no digest
    [InlineData("k8s:pod-uid:U1", "k8s:pod-uid:U2", null, "pod changed")]
    [InlineData("k8s:ns:prod", "k8s:ns:dev", null, "namespace changed")]
    [InlineData("k8s:sa:web", "k8s:sa:admin", null, "service account changed")]
    [InlineData("k8s:container-name:app", "k8s:container-name:sidecar", null, "container name changed")]
    [InlineData("container:id:C1", "container:id:C2", null, "container changed")]   // a restarted container
    [InlineData("k8s:pod-label:app:web", "k8s:pod-label:app:web2", null, null)]       // labels are mutable metadata
    [InlineData("k8s:pod-owner:ReplicaSet:web", "", null, null)]
    [InlineData("k8s:container-image:web:1.2", "k8s:container-image:web:1.3", null, null)]   // a tag; the digest decides
    public void A_change_of_what_runs_is_a_drift_and_mutable_metadata_is_not(string from, string to, string? error, string? reason)
    {
        var before = Evidence(Pod, []);
        var after = Evidence(Pod.Replace(from, to, StringComparison.Ordinal), error is null ? [] : [error]);
        Assert.Equal(reason, EvidenceDrift.Compare(before, after));
    }

    [Theory]
    [InlineData(K8sWorkloadCodes.PodNotFound, "pod gone")]
    [InlineData(K8sWorkloadCodes.ContainerNotFound, "pod gone")]
    [InlineData(K8sWorkloadCodes.KubeletUnreachable, "pod evidence unavailable (kubelet)")]
    [InlineData(K8sWorkloadCodes.KubeletRefused, "pod evidence unavailable (kubelet)")]
    [InlineData(K8sWorkloadCodes.KubeletUntrusted, "pod evidence unavailable (kubelet)")]
    public void Losing_the_pod_evidence_is_a_drift_named_after_why(string code, string reason)
    {
        var before = Evidence(Pod, []);
        // The k8s attestor failed: its selectors are gone; the cgroup attestor's pod uid and container id stay.
        var after = Evidence("k8s:pod-uid:U1|container:id:C1", [$"{code}: attestor 'k8s': something"]);
        Assert.Equal(reason, EvidenceDrift.Compare(before, after));
    }

    [Fact]
    public void The_same_pod_evidence_is_no_drift()
    {
        Assert.Null(EvidenceDrift.Compare(Evidence(Pod, []), Evidence(Pod, [])));
    }

    private static WorkloadEvidence Evidence(string selectors, IReadOnlyList<string> errors) =>
        new([.. selectors.Split('|', StringSplitOptions.RemoveEmptyEntries).Select(Selector.Parse).Order()], new Dictionary<string, string>(), "i-1")
        {
            AttestorErrors = errors,
        };
}
