using Microsoft.Extensions.Logging;
using Writ.Agent.PeerTracking;

namespace Writ.Agent.WorkloadAttestation;

/// <summary>The workload attestors of a configuration (<c>workload_attestors</c>), built once by the agent host.</summary>
public static class WorkloadAttestorSet
{
    public static IReadOnlyList<IWorkloadAttestor> Create(AgentOptions options, IProcFs proc, ILoggerFactory loggers, TimeProvider time)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(proc);
        ArgumentNullException.ThrowIfNull(loggers);
        var attestors = new List<IWorkloadAttestor>();
        foreach (var name in options.WorkloadAttestors)
        {
            attestors.Add(name switch
            {
                UnixWorkloadAttestor.AttestorName => new UnixWorkloadAttestor(proc),
                CgroupWorkloadAttestor.AttestorName => new CgroupWorkloadAttestor(proc),
                // Image signatures are checked only when the identity team's keys are configured (k8s.image_keys_dir).
                Kubernetes.K8sWorkloadAttestor.AttestorName => new Kubernetes.K8sWorkloadAttestor(options.Kubernetes, proc,
                    options.ImageSignatures.Enabled
                        ? new ImageSignatures.ImageSignatureVerifier(options.ImageSignatures, loggers.CreateLogger(typeof(ImageSignatures.ImageSignatureVerifier)), time)
                        : null,
                    loggers.CreateLogger(typeof(Kubernetes.K8sWorkloadAttestor)), time),
                _ => throw new ArgumentException($"unknown workload attestor '{name}': use unix, cgroup or k8s", nameof(options)),
            });
        }
        return attestors;
    }
}
