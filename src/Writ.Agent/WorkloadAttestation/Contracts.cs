using System.Collections.ObjectModel;
using Writ.Agent.PeerTracking;

namespace Writ.Agent.WorkloadAttestation;

/// <summary>
/// One fact about a workload, written <c>type:value</c> (e.g. <c>unix:uid:1000</c>). Registration
/// entries match when all their selectors are in the workload's evidence. See SELECTORS.md.
/// </summary>
public sealed record Selector(string Type, string Value)
{
    public override string ToString() => $"{Type}:{Value}";

    /// <summary>A selector type is a short lowercase word: letters, digits, '_' and '-', no ':'.</summary>
    public static bool IsValidType(string? type) =>
        !string.IsNullOrEmpty(type) && type.Length <= 64 &&
        type.All(c => c is (>= 'a' and <= 'z') or (>= '0' and <= '9') or '_' or '-');
}

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
/// The evidence about one workload: the union of the selectors of every attestor that succeeded,
/// their facts (keys prefixed with the attestor name, e.g. <c>unix.pid</c>), and one line per attestor
/// that failed or timed out.
/// </summary>
public sealed record WorkloadEvidence(
    WorkloadProcess Process,
    IReadOnlyList<Selector> Selectors,
    IReadOnlyDictionary<string, string> Facts,
    IReadOnlyList<string> AttestorErrors);

/// <summary>Evidence, or why there is none (the caller maps an error to Unauthenticated).</summary>
public sealed record WorkloadAttestationResult(WorkloadEvidence? Evidence, string? Error)
{
    public static WorkloadAttestationResult Failed(string error) => new(null, error);
}
