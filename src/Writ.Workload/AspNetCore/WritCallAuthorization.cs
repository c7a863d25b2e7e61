using System.Security.Claims;
using Grpc.Core;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Authorization.Policy;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Writ.Protocol.RelyingParty;

namespace Writ.Workload.AspNetCore;

/// <summary>The requirement "the local agent allows this call" (Writ::Action::"call", the agent's call policy and the caller's live state).</summary>
public sealed class WritCallRequirement : IAuthorizationRequirement
{
    /// <summary>The destination's SPIFFE ID for this policy; null: <see cref="WritCallAuthorizationOptions.Resource"/> (or the agent's default).</summary>
    public string? Resource { get; init; }
}

/// <summary>Why the call requirement failed: the agent's denial (403) or the agent could not be asked (503).</summary>
public sealed class WritCallFailureReason(IAuthorizationHandler handler, WritAuthFailure failure, string? decisionId, int status)
    : AuthorizationFailureReason(handler, failure.OneLine)
{
    public WritAuthFailure Failure { get; } = failure;

    /// <summary>The agent's decision id (<c>c-…</c>), null when the agent was not reached.</summary>
    public string? DecisionId { get; } = decisionId;

    /// <summary>403 (denied) or 503 (agent unreachable: fail closed).</summary>
    public int StatusCode { get; } = status;
}

/// <summary>Asks the local agent's relying-party API (<c>Authorize</c>) whether this call is allowed.</summary>
internal sealed class WritCallAuthorizationHandler(WritCallAgentClient agent, IOptions<WritCallAuthorizationOptions> options,
    IHttpContextAccessor accessor, ILogger<WritCallAuthorizationHandler> logger) : AuthorizationHandler<WritCallRequirement>
{
    protected override async Task HandleRequirementAsync(AuthorizationHandlerContext context, WritCallRequirement requirement)
    {
        var http = context.Resource as HttpContext ?? accessor.HttpContext;
        if (http is null)
        {
            return;   // not an HTTP request: the requirement stays unmet
        }
        var request = await BuildRequestAsync(http, requirement.Resource ?? options.Value.Resource);
        if (request is null)
        {
            return;   // no credential at all: unmet, so the caller is challenged (401) by its authentication scheme
        }
        var caller = context.User.FindFirst(WritClaimTypes.SpiffeId)?.Value ?? "(unauthenticated)";
        AuthorizeResponse response;
        try
        {
            response = await agent.AuthorizeAsync(request, http.RequestAborted);
        }
        catch (Exception e) when (e is RpcException or WorkloadApiException or HttpRequestException or IOException)
        {
            var reason = e is RpcException rpc ? $"{rpc.StatusCode}: {FirstLine(rpc.Status.Detail)}" : FirstLine(e.Message);
            AspNetCoreLog.AgentUnavailable(logger, agent.Endpoint, reason);
            context.Fail(new WritCallFailureReason(this,
                new WritAuthFailure(WritAuthCodes.AgentUnavailable, "the local Writ agent could not be asked for a decision, so the call is refused (fail closed): check that the agent runs and this service can reach its socket"),
                null, StatusCodes.Status503ServiceUnavailable));
            return;
        }
        if (!string.IsNullOrEmpty(response.DecisionId) && !http.Response.HasStarted)
        {
            http.Response.Headers[ChallengeWriter.DecisionIdHeader] = response.DecisionId;
        }
        if (response.Allowed)
        {
            AspNetCoreLog.CallAllowed(logger, request.Method, request.Path, response.CallerSpiffeId is { Length: > 0 } c ? c : caller, response.DecisionId);
            context.Succeed(requirement);
            return;
        }
        var code = string.IsNullOrEmpty(response.Code) ? WritAuthCodes.CallDenied : response.Code;
        var why = string.IsNullOrEmpty(response.Reason) ? "the call policy does not allow this call" : FirstLine(response.Reason);
        AspNetCoreLog.CallDenied(logger, request.Method, request.Path, response.CallerSpiffeId is { Length: > 0 } cs ? cs : caller, response.DecisionId, code, why);
        context.Fail(new WritCallFailureReason(this,
            new WritAuthFailure(WritAuthCodes.CallDenied, $"{why} (decision {response.DecisionId}{(code == WritAuthCodes.CallDenied ? "" : ", " + code)})"),
            response.DecisionId, StatusCodes.Status403Forbidden));
    }

    /// <summary>
    /// The agent's question for this request, with the credential a Writ scheme of this app ACCEPTED (certificate first, then
    /// JWT-SVID): never a credential a scheme refused (a bound token without its certificate, a replayed token, a caller the
    /// scheme's authorizer refuses), since the agent does not repeat those checks. Null when no Writ scheme accepted one.
    /// </summary>
    private async Task<AuthorizeRequest?> BuildRequestAsync(HttpContext http, string? resource)
    {
        var request = new AuthorizeRequest
        {
            Method = http.Request.Method,
            Path = http.Request.Path.Value + http.Request.QueryString.Value,
            Host = http.Request.Host.Value ?? "",
            ResourceSpiffeId = resource ?? "",
        };
        var cert = http.Connection.ClientCertificate;
        var bearer = BearerToken(http.Request);
        if (cert is not null && await AcceptedByAsync(http, typeof(WritX509SvidHandler)))
        {
            request.PeerCertificateDer = Google.Protobuf.ByteString.CopyFrom(cert.RawData);
        }
        else if (bearer is not null && await AcceptedByAsync(http, typeof(WritJwtSvidHandler)))
        {
            request.JwtSvid = bearer;
        }
        else
        {
            return null;
        }
        var excluded = options.Value.ExcludedHeaders;
        foreach (var (name, values) in http.Request.Headers)
        {
            // All of them (Kestrel bounds their number and size): a cap would let a caller push a header the call policy
            // looks at out of the question by sending junk headers first; the agent keeps only its authz_headers.
            if (!excluded.Contains(name))
            {
                request.Headers[name.ToLowerInvariant()] = values.ToString();
            }
        }
        return request;
    }

    /// <summary>True when a registered scheme of <paramref name="handlerType"/> authenticates this request (results are cached per request).</summary>
    private static async Task<bool> AcceptedByAsync(HttpContext http, Type handlerType)
    {
        var provider = http.RequestServices.GetRequiredService<IAuthenticationSchemeProvider>();
        foreach (var scheme in await provider.GetAllSchemesAsync())
        {
            if (scheme.HandlerType == handlerType && (await http.AuthenticateAsync(scheme.Name)).Succeeded)
            {
                return true;
            }
        }
        return false;
    }

    private static string? BearerToken(HttpRequest request)
    {
        var values = request.Headers.Authorization;
        if (values.Count != 1 || values[0] is not { } header || !header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
        {
            return null;
        }
        var token = header["Bearer ".Length..].Trim();
        return token.Length == 0 ? null : token;
    }

    private static string FirstLine(string? text)
    {
        var line = (text ?? "").Split('\n', 2)[0].Trim();
        return WritAuthFailure.Sanitize(line);
    }
}

/// <summary>The one connection to the local agent's relying-party API (the SDK's <see cref="WorkloadApiClient"/>: same socket, same header).</summary>
internal sealed class WritCallAgentClient : IDisposable
{
    private readonly Lazy<WorkloadApiClient> _client;
    private readonly WritCallAuthorizationOptions _options;
    private readonly TimeProvider _time;

    public WritCallAgentClient(IOptions<WritCallAuthorizationOptions> options, TimeProvider? time = null)
    {
        _options = options.Value;
        _time = time ?? TimeProvider.System;
        Endpoint = _options.Endpoint ?? Environment.GetEnvironmentVariable(WorkloadApiAddress.EnvironmentVariable) ?? "(unset)";
        _client = new(() => WorkloadApiClient.Create(new WorkloadApiOptions { Address = _options.Endpoint, TimeProvider = _time }));
    }

    public string Endpoint { get; }

    /// <summary>The agent's decision. Throws <see cref="WorkloadApiException"/> (no or bad address) or <see cref="RpcException"/> (agent unreachable, deadline).</summary>
    public async Task<AuthorizeResponse> AuthorizeAsync(AuthorizeRequest request, CancellationToken cancellationToken)
    {
        var client = _client.Value;
        var deadline = _time.GetUtcNow().UtcDateTime + _options.Timeout;
        return await client.RelyingParty.AuthorizeAsync(request, WorkloadApiClient.Call(cancellationToken, deadline)).ConfigureAwait(false);
    }

    public void Dispose()
    {
        if (_client.IsValueCreated)
        {
            _client.Value.Dispose();
        }
    }
}

/// <summary>Turns a failed call requirement into its answer: 403 (denied: the agent's reason and decision id) or 503 (fail closed).</summary>
internal sealed class WritCallResultHandler : IAuthorizationMiddlewareResultHandler
{
    private readonly AuthorizationMiddlewareResultHandler _default = new();

    public async Task HandleAsync(RequestDelegate next, HttpContext context, AuthorizationPolicy policy, PolicyAuthorizationResult authorizeResult)
    {
        var reason = authorizeResult.AuthorizationFailure?.FailureReasons.OfType<WritCallFailureReason>().FirstOrDefault();
        if (reason is null)
        {
            await _default.HandleAsync(next, context, policy, authorizeResult);
            return;
        }
        if (reason.DecisionId is { Length: > 0 } id && !context.Response.HasStarted)
        {
            context.Response.Headers[ChallengeWriter.DecisionIdHeader] = id;
        }
        await ChallengeWriter.WriteAsync(context, reason.Failure, wwwAuthenticate: null, reason.StatusCode);
    }
}
