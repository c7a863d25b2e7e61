using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Writ.Protocol.Agent;
using Writ.Protocol.Hosting;

namespace Writ.Agent.WorkloadApi;

/// <summary>Delivers the <see cref="JwtReplayGuard"/>'s replay reports to the server in the background (hosted; ends with the agent).</summary>
public sealed class JwtReplayReportService(JwtReplayGuard guard, TimeProvider time, Random jitter, ILogger<JwtReplayReportService> log)
    : GuardedBackgroundService("jwt replay reports", LoopFailurePolicy.Restart, time, jitter, log)
{
    protected override Task RunAsync(CancellationToken stoppingToken) => guard.SendReportsAsync(stoppingToken);
}

/// <summary>Registration of the agent's one <see cref="JwtReplayGuard"/> and its report delivery.</summary>
public static class JwtReplayGuardServiceCollectionExtensions
{
    /// <param name="client">the agent API client the reports go to, per service provider.</param>
    public static IServiceCollection AddJwtReplayGuard(this IServiceCollection services, Func<IServiceProvider, Func<AgentService.AgentServiceClient>> client)
    {
        ArgumentNullException.ThrowIfNull(client);
        services.AddSingleton(sp => new JwtReplayGuard(client(sp), sp.GetRequiredService<TimeProvider>(), sp.GetRequiredService<ILogger<JwtReplayGuard>>()));
        services.AddSingleton<JwtReplayReportService>();
        services.AddSingleton<IHostedService>(sp => sp.GetRequiredService<JwtReplayReportService>());
        return services;
    }
}
