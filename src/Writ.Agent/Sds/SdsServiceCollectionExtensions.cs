using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Writ.Agent.WorkloadApi;

namespace Writ.Agent.Sds;

public static class SdsServiceCollectionExtensions
{
    /// <summary>
    /// What <see cref="SdsService"/> needs besides the Workload API's own services: the Workload API service itself, per
    /// call, whose attestation it shares (map it with <c>MapGrpcService&lt;SdsService&gt;()</c> on the Workload API socket).
    /// </summary>
    public static IServiceCollection AddSds(this IServiceCollection services)
    {
        services.TryAddTransient<WorkloadApiService>();
        return services;
    }
}
