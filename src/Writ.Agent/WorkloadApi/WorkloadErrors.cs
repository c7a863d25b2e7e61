using Grpc.Core;
using Writ.Protocol.Errors;

namespace Writ.Agent.WorkloadApi;

/// <summary>
/// Stable codes of the Workload API's own failures (docs/errors.md, "Workload API"), and the one mapping of a
/// <see cref="WritException"/> to the gRPC status a SPIFFE client sees. The status codes are the ones the SPIFFE Workload
/// API prescribes (PermissionDenied when no identity is issued, InvalidArgument for a missing security header or a bad
/// request, Unavailable for "retry with backoff"); the code travels in the status detail, in front of the message.
/// </summary>
public static class WorkloadErrors
{
    /// <summary>The workload's evidence changed while a credential was prepared for it.</summary>
    public const string EvidenceChanged = "WRIT-WORKLOAD-EVIDENCE-CHANGED";

    /// <summary>The server refused to issue this identity to the workload (policy): the detail carries the decision id.</summary>
    public const string IssuanceDenied = "WRIT-WORKLOAD-ISSUANCE-DENIED";

    /// <summary>The server cannot be reached and nothing valid is cached.</summary>
    public const string ServerUnavailable = "WRIT-WORKLOAD-SERVER-UNAVAILABLE";

    /// <summary>The server refused the request for another reason (its status kind is kept).</summary>
    public const string ServerRefused = "WRIT-WORKLOAD-SERVER-REFUSED";

    /// <summary>The kind of failure a gRPC status code stands for (what the server answered the agent with).</summary>
    public static WritErrorKind KindOf(StatusCode code) => code switch
    {
        StatusCode.InvalidArgument or StatusCode.OutOfRange => WritErrorKind.InvalidArgument,
        StatusCode.NotFound => WritErrorKind.NotFound,
        StatusCode.AlreadyExists => WritErrorKind.AlreadyExists,
        StatusCode.PermissionDenied => WritErrorKind.PermissionDenied,
        StatusCode.Unauthenticated => WritErrorKind.Unauthenticated,
        StatusCode.FailedPrecondition or StatusCode.Aborted => WritErrorKind.FailedPrecondition,
        StatusCode.ResourceExhausted => WritErrorKind.ResourceExhausted,
        StatusCode.Unavailable or StatusCode.Cancelled => WritErrorKind.Unavailable,
        StatusCode.DeadlineExceeded => WritErrorKind.DeadlineExceeded,
        _ => WritErrorKind.Internal,
    };
}
