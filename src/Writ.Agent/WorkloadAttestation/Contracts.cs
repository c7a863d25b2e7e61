using System.Collections.ObjectModel;
using Writ.Agent.PeerTracking;
using Writ.Protocol.Errors;
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

/// <summary>
/// Evidence, or why there is none: a stable <see cref="Code"/> (<see cref="WorkloadAttestationCodes"/>) and a one-line
/// <see cref="Error"/>; the Workload API refuses the call as Unauthenticated with both.
/// </summary>
public sealed record WorkloadAttestationResult(ProcessEvidence? Evidence, string? Error)
{
    /// <summary>Set with <see cref="Error"/>.</summary>
    public string? Code { get; init; }

    public static WorkloadAttestationResult Failed(string code, string error) => new(null, error) { Code = code };

    /// <summary>The failure as a user sees it: "WRIT-…: what went wrong; what to do".</summary>
    public string Describe() => Code is null ? Error ?? "the caller could not be attested" : $"{Code}: {Error}";

    /// <summary>The failure as the typed error each API's interceptor maps (Unauthenticated).</summary>
    public WritException ToException() =>
        new(Code ?? WorkloadAttestationCodes.PeerUnreadable, WritErrorKind.Unauthenticated, Error ?? "the caller could not be attested");
}

/// <summary>The stable codes of workload attestation failures (docs/errors.md, "Workload attestation").</summary>
public static class WorkloadAttestationCodes
{
    /// <summary>The process exited, or its pid now names another process, before or during attestation.</summary>
    public const string PidReused = "WRIT-ATTEST-PID-REUSED";

    /// <summary>An attestor did not finish within the attestor time limit; its selectors were ignored.</summary>
    public const string Timeout = "WRIT-ATTEST-TIMEOUT";

    /// <summary>A /proc file of the process (status, cgroup, stat) is not what the kernel writes.</summary>
    public const string ProcMalformed = "WRIT-ATTEST-PROC-MALFORMED";

    /// <summary>The caller's credentials or process could not be read (SO_PEERCRED, pidfd, /proc).</summary>
    public const string PeerUnreadable = "WRIT-ATTEST-PEER-UNREADABLE";

    /// <summary>An attestor could not gather its evidence (the process exited, a /proc file could not be read).</summary>
    public const string Unavailable = "WRIT-ATTEST-UNAVAILABLE";

    /// <summary>An attestor threw, returned nothing or returned a selector that breaks the selector rules.</summary>
    public const string AttestorFailed = "WRIT-ATTEST-ATTESTOR-FAILED";
}
