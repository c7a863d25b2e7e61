using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Writ.Protocol.Hosting;

/// <summary>What a background loop does when it fails with an exception it did not handle itself.</summary>
public enum LoopFailurePolicy
{
    /// <summary>Logged, then started again after a backoff (0.5 s doubling to 30 s, with jitter): the loop is worth keeping alive.</summary>
    Restart,

    /// <summary>Logged, then the loop ends and <see cref="GuardedBackgroundService.Failed"/> is told (the host decides whether to stop).</summary>
    Stop,
}

/// <summary>
/// One of the server's or the agent's background loops as a hosted service: started with the host, handed the host's
/// stopping token, awaited on shutdown (within <c>HostOptions.ShutdownTimeout</c>). A failure is never swallowed: it is
/// logged with the loop's name and then handled per <see cref="Policy"/>. A cancellation while stopping is the normal
/// end. <see cref="Completion"/> says when the loop is over, for whoever must wait for it.
/// </summary>
public abstract class GuardedBackgroundService : BackgroundService
{
    private static readonly TimeSpan FirstBackoff = TimeSpan.FromMilliseconds(500);
    private static readonly TimeSpan MaxBackoff = TimeSpan.FromSeconds(30);

    protected GuardedBackgroundService(string name, LoopFailurePolicy policy, TimeProvider time, Random jitter, ILogger log)
    {
        Name = name;
        Policy = policy;
        Time = time ?? throw new ArgumentNullException(nameof(time));
        Jitter = jitter ?? throw new ArgumentNullException(nameof(jitter));
        Log = log ?? throw new ArgumentNullException(nameof(log));
    }

    /// <summary>How the loop is named in the log ("svid rotation", "sync", …).</summary>
    public string Name { get; }

    public LoopFailurePolicy Policy { get; }

    protected TimeProvider Time { get; }

    protected Random Jitter { get; }

    protected ILogger Log { get; }

    /// <summary>
    /// Completes once the loop has begun (the host runs it on the thread pool: a host stopped at once may cancel it
    /// before it ever ran — then it never completes, and <see cref="Completion"/> does).
    /// </summary>
    public Task Running => _running.Task;

    private readonly TaskCompletionSource _running = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>
    /// Completes (never faults) when the loop is over for good: stopped, ended, or failed under
    /// <see cref="LoopFailurePolicy.Stop"/>; at once if it was never started.
    /// </summary>
    public Task Completion => ExecuteTask is { } running
        ? running.ContinueWith(static _ => { }, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default)
        : Task.CompletedTask;

    /// <summary>Failures so far (restarted or not).</summary>
    public int Failures => Volatile.Read(ref _failures);

    private int _failures;

    /// <summary>
    /// Told when the loop stops for good because of <paramref name="e"/>: under <see cref="LoopFailurePolicy.Stop"/>,
    /// or for an exception <see cref="IsFatal"/> calls fatal under either policy.
    /// </summary>
    public Action<GuardedBackgroundService, Exception>? Failed { get; set; }

    /// <summary>The loop. Returns or throws <see cref="OperationCanceledException"/> once <paramref name="stoppingToken"/> is cancelled.</summary>
    protected abstract Task RunAsync(CancellationToken stoppingToken);

    /// <summary>An exception that must stop the loop whatever the policy (e.g. the agent was banned).</summary>
    protected virtual bool IsFatal(Exception e) => false;

    protected sealed override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        _running.TrySetResult();
        var backoff = FirstBackoff;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await RunAsync(stoppingToken).ConfigureAwait(false);
                if (!stoppingToken.IsCancellationRequested)
                {
                    HostingLog.LoopEnded(Log, Name);
                }
                return;
            }
            catch (Exception) when (stoppingToken.IsCancellationRequested)
            {
                return;   // stopping: a cancelled call (OperationCanceledException, or a transport's Cancelled) is the normal end
            }
            catch (Exception e)
            {
                Interlocked.Increment(ref _failures);
                var fatal = IsFatal(e);
                if (fatal || Policy == LoopFailurePolicy.Stop)
                {
                    if (!fatal || Failed is null)
                    {
                        HostingLog.LoopFailedStopped(Log, e, Name, e.Message);
                    }
                    Failed?.Invoke(this, e);
                    return;
                }
                var delay = backoff + TimeSpan.FromMilliseconds(Jitter.Next(0, (int)Math.Max(1, backoff.TotalMilliseconds / 4)));
                HostingLog.LoopFailedRestarting(Log, e, Name, e.Message, delay);
                try
                {
                    await Task.Delay(delay, Time, stoppingToken).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
                backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, MaxBackoff.Ticks));
            }
        }
    }
}

/// <summary>Log events of the background loops, server and agent (4000–4099).</summary>
public static partial class HostingLog
{
    [LoggerMessage(4000, LogLevel.Error, "Background loop '{Loop}' failed ({Reason}); restarting it in {Delay}")]
    public static partial void LoopFailedRestarting(ILogger log, Exception e, string loop, string reason, TimeSpan delay);

    [LoggerMessage(4001, LogLevel.Critical, "Background loop '{Loop}' failed ({Reason}) and stopped")]
    public static partial void LoopFailedStopped(ILogger log, Exception e, string loop, string reason);

    [LoggerMessage(4002, LogLevel.Warning, "Background loop '{Loop}' ended before the host stopped")]
    public static partial void LoopEnded(ILogger log, string loop);
}

/// <summary>A <see cref="GuardedBackgroundService"/> around a loop method another type owns (e.g. <c>SyncClient.RunAsync</c>).</summary>
public sealed class LoopService(string name, Func<CancellationToken, Task> loop, LoopFailurePolicy policy, TimeProvider time, Random jitter, ILogger log,
    Func<Exception, bool>? isFatal = null) : GuardedBackgroundService(name, policy, time, jitter, log)
{
    protected override Task RunAsync(CancellationToken stoppingToken) => loop(stoppingToken);

    protected override bool IsFatal(Exception e) => isFatal?.Invoke(e) ?? false;
}
