using System.Text.RegularExpressions;
using Grpc.Core;

namespace Writ.Protocol.Errors;

/// <summary>
/// How a <see cref="WritException"/> travels over gRPC, for the APIs' interceptors (the only places that build a status
/// from an error) and for their clients: the status code from the kind, the stable code both as the first word of the
/// status detail (<c>WRIT-…: message</c>, one line, for people and for clients that see only the detail) and in the
/// <see cref="TrailerKey"/> trailer (for programs).
/// </summary>
public static partial class WritStatus
{
    /// <summary>The response trailer carrying the stable code.</summary>
    public const string TrailerKey = "writ-error-code";

    /// <summary>An unexpected failure: the log of the process that answered has the stack trace under the error id.</summary>
    public const string InternalCode = "WRIT-INTERNAL";

    /// <summary>A request the server refused as malformed, where no finer code applies.</summary>
    public const string InvalidArgumentCode = "WRIT-INVALID-ARGUMENT";

    public static StatusCode ToStatusCode(WritErrorKind kind) => kind switch
    {
        WritErrorKind.InvalidArgument => StatusCode.InvalidArgument,
        WritErrorKind.NotFound => StatusCode.NotFound,
        WritErrorKind.AlreadyExists => StatusCode.AlreadyExists,
        WritErrorKind.PermissionDenied => StatusCode.PermissionDenied,
        WritErrorKind.Unauthenticated => StatusCode.Unauthenticated,
        WritErrorKind.FailedPrecondition => StatusCode.FailedPrecondition,
        WritErrorKind.ResourceExhausted => StatusCode.ResourceExhausted,
        WritErrorKind.Unavailable => StatusCode.Unavailable,
        WritErrorKind.DeadlineExceeded => StatusCode.DeadlineExceeded,
        _ => StatusCode.Internal,
    };

    public static RpcException ToRpcException(WritException e) => Create(ToStatusCode(e.Kind), e.Code, e.Message);

    /// <summary>A status carrying <paramref name="code"/> in its detail (<c>CODE: message</c>, one line) and trailer.</summary>
    public static RpcException Create(StatusCode status, string code, string message)
    {
        var line = OneLine(message);
        return new RpcException(new Status(status, line.Length == 0 ? code : $"{code}: {line}"), new Metadata { { TrailerKey, code } });
    }

    /// <summary>
    /// <paramref name="e"/> with a code: the one it carries (trailer, or a <c>WRIT-…: </c> prefix of its detail), else
    /// <paramref name="fallback"/>. The status code is kept.
    /// </summary>
    public static RpcException WithCode(RpcException e, string fallback)
    {
        if (e.Trailers.GetValue(TrailerKey) is { Length: > 0 })
        {
            return e;
        }
        var (code, message) = Split(e.Status.Detail);
        return Create(e.StatusCode, code ?? fallback, message);
    }

    /// <summary>The code and message a client shows: the trailer's code if any, else the detail's prefix; the message without it.</summary>
    public static (string? Code, string Message) Read(RpcException e)
    {
        var (prefix, message) = Split(e.Status.Detail);
        var trailer = e.Trailers.GetValue(TrailerKey);
        return (trailer is not null && IsCode(trailer) ? trailer : prefix, message);
    }

    /// <summary>Splits <c>WRIT-…: message</c>; a detail without a code comes back whole with a null code.</summary>
    public static (string? Code, string Message) Split(string detail)
    {
        var m = Prefix().Match(detail);
        return m.Success ? (m.Groups[1].Value, detail[m.Length..]) : (IsCode(detail) ? detail : null, IsCode(detail) ? "" : detail);
    }

    /// <summary>True for a well-formed stable code: <c>WRIT-</c> then upper-case words joined by dashes.</summary>
    public static bool IsCode(string text) => Code().IsMatch(text);

    /// <summary>
    /// Multi-line messages (an inner exception's text) would break one-line errors: the lines are joined, and any other
    /// control or line-separating character (an escape sequence a peer put in its text) is shown as <c>\uXXXX</c> so it
    /// cannot rewrite a terminal or a log line.
    /// </summary>
    public static string OneLine(string message)
    {
        var joined = string.Join(' ', message.Split(['\r', '\n'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
        if (!joined.Any(NeedsEscape))
            return joined;
        var sb = new System.Text.StringBuilder(joined.Length + 16);
        foreach (var c in joined)
            sb.Append(NeedsEscape(c) ? $"\\u{(int)c:x4}" : c.ToString());
        return sb.ToString();
    }

    private static bool NeedsEscape(char c) => char.IsControl(c) || c is '\u2028' or '\u2029' or '\u0085';

    [GeneratedRegex("^(WRIT-[A-Z0-9]+(?:-[A-Z0-9]+)*): ", RegexOptions.CultureInvariant)]
    private static partial Regex Prefix();

    [GeneratedRegex("^WRIT-[A-Z0-9]+(?:-[A-Z0-9]+)*$", RegexOptions.CultureInvariant)]
    private static partial Regex Code();
}
