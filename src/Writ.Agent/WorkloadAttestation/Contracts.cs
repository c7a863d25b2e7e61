using System.Collections.ObjectModel;
using Writ.Agent.PeerTracking;
using Writ.Protocol.Evidence;

namespace Writ.Agent.WorkloadAttestation;

/// <summary>The process being attested: what the kernel said at connect time, and its pin.</summary>
public sealed record WorkloadProcess(PeerCredentials Peer, ProcessPin Pin);

/// <summary>
/// What one attestor found. A non-null <see cref="Error"/> means the attestor failed; the runner then
/// ignores its selectors (but keeps its facts for diagnostics).
/// </summary>
public sealed record AttestorResult(string Attestor, IReadOnlyList<Selector> Selectors, IReadOnlyDictionary<string, string> Facts, string? Error)
{
    public static AttestorResult Success(string attestor, IReadOnlyList<Selector> selectors, IReadOnlyDictionary<string, string> facts) =>
        new(attestor, selectors, facts, null);

    public static AttestorResult Failure(string attestor, string error, IReadOnlyDictionary<string, string>? facts = null) =>
        new(attestor, [], facts ?? ReadOnlyDictionary<string, string>.Empty, error);
}

/// <summary>A workload attestor plugin (unix, cgroup, ...), picked by <see cref="Name"/> from configuration.</summary>
public interface IWorkloadAttestor
{
    string Name { get; }

    /// <summary>Expected failures are returned as <see cref="AttestorResult.Error"/>, not thrown.</summary>
    Task<AttestorResult> AttestAsync(WorkloadProcess process, CancellationToken ct);
}

/// <summary>
/// A workload attestor whose <see cref="IWorkloadAttestor.AttestAsync"/> never blocks its caller: it does only quick
/// work inline (reads of /proc files the kernel answers from memory, lookups in its own caches) and returns an
/// incomplete task for anything that can take long (e.g. reading and hashing an executable it has not seen). The runner
/// calls such attestors on the request's own thread; every other attestor runs on a thread-pool thread of its own so
/// that one that blocks cannot hold up the rest. Both kinds get the same timeout.
/// </summary>
public interface INonBlockingWorkloadAttestor : IWorkloadAttestor;

/// <summary>
/// The evidence about one workload (<see cref="WorkloadEvidence"/>, what the server receives) with the process it is
/// about: what the kernel said at connect time and its pin. The instance id is the pin's
/// (<see cref="Instances.WorkloadInstance.IdOf"/>).
/// </summary>
public sealed record ProcessEvidence : WorkloadEvidence
{
    public ProcessEvidence(WorkloadProcess process, IReadOnlyList<Selector> selectors, IReadOnlyDictionary<string, string> facts, IReadOnlyList<string> attestorErrors)
        : base(selectors, facts, Instances.WorkloadInstance.IdOf((process ?? throw new ArgumentNullException(nameof(process))).Pin))
    {
        Process = process;
        AttestorErrors = attestorErrors;
    }

    public WorkloadProcess Process { get; }
}

/// <summary>Evidence, or why there is none (the caller maps an error to Unauthenticated).</summary>
public sealed record WorkloadAttestationResult(ProcessEvidence? Evidence, string? Error)
{
    public static WorkloadAttestationResult Failed(string error) => new(null, error);
}
