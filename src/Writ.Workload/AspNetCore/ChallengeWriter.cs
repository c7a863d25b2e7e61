using Microsoft.AspNetCore.Http;

namespace Writ.Workload.AspNetCore;

/// <summary>Writes a refusal: the status, an optional <c>WWW-Authenticate</c> and a one-line plain-text body <c>CODE: reason</c>.</summary>
internal static class ChallengeWriter
{
    /// <summary>The response header carrying the stable code of a refusal.</summary>
    public const string ErrorCodeHeader = "Writ-Error-Code";

    /// <summary>The response header carrying the agent's decision id.</summary>
    public const string DecisionIdHeader = "Writ-Decision-Id";

    public static async Task WriteAsync(HttpContext context, WritAuthFailure failure, string? wwwAuthenticate, int status = StatusCodes.Status401Unauthorized)
    {
        var response = context.Response;
        if (response.HasStarted)
        {
            return;
        }
        response.StatusCode = status;
        if (wwwAuthenticate is not null)
        {
            response.Headers.Append(Microsoft.Net.Http.Headers.HeaderNames.WWWAuthenticate, wwwAuthenticate);
        }
        response.Headers[ErrorCodeHeader] = failure.Code;
        response.ContentType = "text/plain; charset=utf-8";
        await response.WriteAsync(failure.OneLine + "\n", context.RequestAborted);
    }
}
