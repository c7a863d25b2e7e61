using Microsoft.AspNetCore.Authorization;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace Writ.Workload.AspNetCore;

/// <summary>Registers the call authorization policy: each request is decided by the local Writ agent.</summary>
public static class WritCallAuthorizationExtensions
{
    /// <summary>The default name of the policy <see cref="AddWritCallAuthorization"/> registers.</summary>
    public const string PolicyName = "WritCall";

    /// <summary>
    /// Registers the handler of <see cref="WritCallRequirement"/> (it asks the agent's <c>writ.relyingparty.v1.RelyingParty/Authorize</c>
    /// with the caller's certificate or JWT-SVID, method, path, host and headers), the policy <see cref="PolicyName"/>, and the
    /// answer to a refusal: 403 with the agent's reason and a <c>Writ-Decision-Id</c> header, or 503 when the agent cannot be
    /// asked (fail closed). Replaces the app's <see cref="Microsoft.AspNetCore.Authorization.IAuthorizationMiddlewareResultHandler"/>
    /// with one that answers Writ's refusals and hands every other result to ASP.NET Core's default.
    /// </summary>
    public static IServiceCollection AddWritCallAuthorization(this IServiceCollection services, Action<WritCallAuthorizationOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        var options = services.AddOptions<WritCallAuthorizationOptions>();
        if (configure is not null)
        {
            options.Configure(configure);
        }
        services.AddHttpContextAccessor();
        services.TryAddSingleton<WritCallAgentClient>();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IAuthorizationHandler, WritCallAuthorizationHandler>());
        services.Replace(ServiceDescriptor.Singleton<Microsoft.AspNetCore.Authorization.IAuthorizationMiddlewareResultHandler, WritCallResultHandler>());
        services.AddAuthorizationBuilder().AddPolicy(PolicyName, p => p.RequireWritCall());
        return services;
    }

    /// <summary>Requires the local agent to allow the call (<see cref="WritCallRequirement"/>); <paramref name="resource"/> overrides the destination's SPIFFE ID.</summary>
    public static AuthorizationPolicyBuilder RequireWritCall(this AuthorizationPolicyBuilder builder, string? resource = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        return builder.AddRequirements(new WritCallRequirement { Resource = resource });
    }
}
