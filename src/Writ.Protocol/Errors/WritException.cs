namespace Writ.Protocol.Errors;

/// <summary>What kind of failure a <see cref="WritException"/> is; each API's one interceptor maps it to its transport's
/// status (gRPC <c>StatusCode</c> of the same name). Domain code says what went wrong, never how it travels.</summary>
public enum WritErrorKind
{
    InvalidArgument,
    NotFound,
    AlreadyExists,
    PermissionDenied,
    Unauthenticated,
    FailedPrecondition,
    ResourceExhausted,
    Unavailable,
    DeadlineExceeded,
    Internal,
}

/// <summary>
/// A failure a user can see. <see cref="Code"/> is stable (<c>WRIT-AREA-WHAT</c>, e.g. <c>WRIT-ISSUE-DENIED</c>) and
/// listed with what to do in docs/errors.md; scripts and runbooks key on it, so a code is never renamed or reused. The
/// message is one line saying what was wrong and what to do, and never carries a secret or a stack trace.
/// </summary>
public class WritException(string code, WritErrorKind kind, string message, Exception? inner = null) : Exception(message, inner)
{
    public string Code { get; } = code;

    public WritErrorKind Kind { get; } = kind;
}
