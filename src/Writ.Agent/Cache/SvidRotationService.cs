using Microsoft.Extensions.Logging;
using Writ.Agent.NodeAttestation;
using Writ.Agent.Sync;
using Writ.Protocol.Hosting;

namespace Writ.Agent.Cache;

/// <summary>
/// Keeps the <see cref="SvidCache"/> in line with the entries, the instances, the revocations and the clock: runs
/// <see cref="SvidCache.MaintainOnceAsync"/> on every state change and when the cache is next due
/// (<see cref="SvidCache.NextDue"/>), at least once a second. A pass that changed something wakes the streams.
/// </summary>
public sealed class SvidRotationService(SvidCache cache, AgentState state, TimeProvider time, Random jitter, ILogger<SvidRotationService> log)
    : GuardedBackgroundService("svid rotation", LoopFailurePolicy.Restart, time, jitter, log)
{
    private static readonly TimeSpan MinWait = TimeSpan.FromMilliseconds(50);
    private static readonly TimeSpan MaxWait = TimeSpan.FromSeconds(1);

    protected override bool IsFatal(Exception e) => e is AgentFatalException;

    protected override async Task RunAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            var generation = state.Changed.Generation;
            var changed = await cache.MaintainOnceAsync(stoppingToken).ConfigureAwait(false);
            if (cache.Pool is { } pool)
            {
                changed |= await pool.MaintainOnceAsync(stoppingToken).ConfigureAwait(false);
            }
            if (changed)
            {
                state.Changed.Raise();
                generation = state.Changed.Generation;
            }
            var now = Time.GetUtcNow();
            var next = cache.NextDue(now) - now;
            var wait = next < MinWait ? MinWait : next > MaxWait ? MaxWait : next;
            using var tick = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
            await Task.WhenAny(state.Changed.WaitAsync(generation, tick.Token), Task.Delay(wait, Time, tick.Token)).ConfigureAwait(false);
            await tick.CancelAsync().ConfigureAwait(false);
        }
    }
}
