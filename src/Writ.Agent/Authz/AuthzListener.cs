using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Writ.Agent.Sync;
using Writ.Agent.Telemetry;
using Writ.Agent.WorkloadApi;
using Writ.Protocol;

namespace Writ.Agent.Authz;

/// <summary>
/// The ext_authz listener beside the Workload API in the agent's one web host, and the rule that keeps the two apart:
/// on the authz listener only <c>envoy.service.auth.v3.Authorization</c> is reachable; on the Workload API socket it is not.
/// A connection is marked when the authz listener accepts it; a request on the wrong listener gets gRPC UNIMPLEMENTED.
/// </summary>
public static class AuthzListener
{
    /// <summary>Stable code of a start refused because the authz socket or port cannot be had.</summary>
    public const string BindCode = "WRIT-AUTHZ-BIND";

    public const string AuthorizationPathPrefix = "/envoy.service.auth.v3.Authorization/";

    /// <summary>Stable code of a request that reached a listener not serving its service.</summary>
    public const string WrongListenerCode = "WRIT-AUTHZ-WRONG-LISTENER";

    private static readonly object Marker = new();

    /// <summary>The authz Unix socket (0660: its group are the proxies that may ask), or null for a loopback port or no bind.</summary>
    public static OwnedUnixSocket? ListenSocket(AuthzOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.Bind?.SocketPath is not { } path)
        {
            return null;
        }
        if (!UnixSocketFile.TryPrepare(path))
        {
            throw new StartupRefusedException(BindCode, $"another process is already serving on '{path}': stop it or choose another authz_bind");
        }
        return UnixSocketFile.Listen(path, (UnixFileMode)0b110_110_000);
    }

    /// <summary>Adds the ext_authz listener to Kestrel (the descriptor of <paramref name="socket"/>, or the loopback endpoint).</summary>
    public static void Listen(KestrelServerOptions kestrel, AuthzOptions options, OwnedUnixSocket? socket)
    {
        ArgumentNullException.ThrowIfNull(kestrel);
        ArgumentNullException.ThrowIfNull(options);
        void Configure(ListenOptions lo)
        {
            lo.Protocols = HttpProtocols.Http2;
            lo.Use(next => ctx =>
            {
                ctx.Items[Marker] = Marker;
                return next(ctx);
            });
        }
        if (socket is not null)
        {
            kestrel.ListenHandle(socket.Handle, Configure);
        }
        else if (options.Bind?.Endpoint is { } endpoint)
        {
            kestrel.Listen(endpoint, Configure);
        }
    }

    /// <summary>Refuses a request that reached a listener not serving its service (see the class summary).</summary>
    public static void UseListenerSeparation(this WebApplication app)
    {
        ArgumentNullException.ThrowIfNull(app);
        var log = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger(typeof(AuthzListener).FullName!);
        app.Use((ctx, next) =>
        {
            var items = ctx.Features.Get<IConnectionItemsFeature>()?.Items;
            var onAuthz = items is not null && items.TryGetValue(Marker, out var m) && ReferenceEquals(m, Marker);
            var forAuthz = ctx.Request.Path.StartsWithSegments(AuthorizationPathPrefix.TrimEnd('/'), StringComparison.OrdinalIgnoreCase);
            if (onAuthz == forAuthz)
            {
                return next(ctx);
            }
            AgentLog.AuthzWrongListener(log, onAuthz ? "ext_authz" : "Workload API", ctx.Request.Path.Value ?? "");
            ctx.Response.StatusCode = StatusCodes.Status200OK;
            ctx.Response.ContentType = "application/grpc";
            ctx.Response.Headers["grpc-status"] = "12";
            ctx.Response.Headers["grpc-message"] = onAuthz
                ? WrongListenerCode + ": only envoy.service.auth.v3.Authorization is served here"
                : WrongListenerCode + ": the ext_authz service is not served on the Workload API socket: use authz_bind";
            return Task.CompletedTask;
        });
    }

    /// <summary>Registers the decision service's parts: the decider, the access reports and their loop.</summary>
    public static IServiceCollection AddCallDecisions(this IServiceCollection services, Func<IServiceProvider, Func<Protocol.Agent.AgentService.AgentServiceClient>> client,
        Func<IServiceProvider, Func<string>> agentId, Func<IServiceProvider, IssuedCredentials> issued)
    {
        ArgumentNullException.ThrowIfNull(client);
        services.AddSingleton(sp => new AccessReporter(client(sp), sp.GetRequiredService<AgentOptions>().Authz.AllowSample, sp.GetRequiredService<Random>(),
            sp.GetRequiredService<TimeProvider>(), sp.GetRequiredService<ILoggerFactory>().CreateLogger<AccessReporter>()));
        services.AddSingleton<AccessReportService>();
        services.AddSingleton<Microsoft.Extensions.Hosting.IHostedService>(sp => sp.GetRequiredService<AccessReportService>());
        services.AddSingleton(sp => new CallDecider(sp.GetRequiredService<AgentState>(), issued(sp), sp.GetRequiredService<AgentOptions>().Authz,
            sp.GetRequiredService<TimeProvider>(), sp.GetRequiredService<WritAgentMetrics>(), sp.GetRequiredService<ILoggerFactory>().CreateLogger<CallDecider>(),
            agentId(sp), sp.GetRequiredService<AccessReporter>()));
        services.AddSingleton(sp => new ExtAuthzService(sp.GetRequiredService<CallDecider>(), sp.GetRequiredService<AgentOptions>().Authz));
        return services;
    }
}
