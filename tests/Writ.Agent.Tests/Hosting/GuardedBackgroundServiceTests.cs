using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;
using Writ.Agent.Tests.Instances;
using Writ.Agent.Tests.TestSupport;
using Writ.Protocol.Hosting;

namespace Writ.Agent.Tests.Hosting;

/// <summary>
/// The background loops' hosting: a failure is logged and then restarted (after a backoff on the injected clock) or
/// stops the loop, per its policy; host shutdown ends every loop within the host's grace.
/// </summary>
public sealed class GuardedBackgroundServiceTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task A_loop_that_throws_is_logged_and_restarted_after_its_backoff_on_the_injected_clock()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var log = new ListLogger();
        var runs = 0;
        var secondRun = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var loop = new LoopService("flaky", async ct =>
        {
            if (Interlocked.Increment(ref runs) == 1)
            {
                throw new InvalidOperationException("the store went away");
            }
            secondRun.TrySetResult();
            await Task.Delay(Timeout.Infinite, ct);
        }, LoopFailurePolicy.Restart, time, new PinnedRandom(0), log);
        await loop.StartAsync(Ct);

        await Deadline.UntilAsync(() => loop.Failures == 1 && log.Entries.Any(e => e.Level == LogLevel.Error), "the failure to be logged");
        var logged = log.Entries.Single(e => e.Level == LogLevel.Error).Message;
        Assert.Contains("'flaky'", logged, StringComparison.Ordinal);
        Assert.Contains("the store went away", logged, StringComparison.Ordinal);
        Assert.False(secondRun.Task.IsCompleted);   // the backoff (0.5 s, jitter pinned to 0) runs on the fake clock: not restarted yet

        await Deadline.UntilAsync(() => { time.Advance(TimeSpan.FromMilliseconds(100)); return secondRun.Task.IsCompleted; }, "the restart");
        Assert.Equal(2, Volatile.Read(ref runs));

        await loop.StopAsync(Ct);
        await loop.Completion.WaitAsync(TimeSpan.FromSeconds(10), Ct);
        Assert.Equal(1, loop.Failures);
    }

    [Fact]
    public async Task A_loop_whose_policy_is_to_stop_is_logged_reported_once_and_not_run_again()
    {
        var log = new ListLogger();
        var runs = 0;
        var failed = new TaskCompletionSource<Exception>(TaskCreationOptions.RunContinuationsAsynchronously);
        using var loop = new LoopService("strict", _ =>
        {
            Interlocked.Increment(ref runs);
            throw new InvalidOperationException("broken invariant");
        }, LoopFailurePolicy.Stop, TimeProvider.System, new PinnedRandom(0), log)
        {
            Failed = (_, e) => failed.TrySetResult(e),
        };
        await loop.StartAsync(Ct);

        var e = await failed.Task.WaitAsync(TimeSpan.FromSeconds(10), Ct);
        Assert.Equal("broken invariant", e.Message);
        await loop.Completion.WaitAsync(TimeSpan.FromSeconds(10), Ct);   // over for good, without a stop
        Assert.Equal(1, Volatile.Read(ref runs));
        Assert.Contains(log.Entries, l => l.Level == LogLevel.Critical && l.Message.Contains("'strict' failed (broken invariant) and stopped", StringComparison.Ordinal));
        await loop.StopAsync(Ct);
    }

    [Fact]
    public async Task A_fatal_failure_stops_a_loop_that_would_otherwise_restart()
    {
        var runs = 0;
        var failed = new TaskCompletionSource<Exception>(TaskCreationOptions.RunContinuationsAsynchronously);
        using var loop = new LoopService("sync", _ =>
        {
            Interlocked.Increment(ref runs);
            throw new Writ.Agent.NodeAttestation.AgentFatalException("the server banned this agent");
        }, LoopFailurePolicy.Restart, TimeProvider.System, new PinnedRandom(0), new ListLogger(), e => e is Writ.Agent.NodeAttestation.AgentFatalException)
        {
            Failed = (_, e) => failed.TrySetResult(e),
        };
        await loop.StartAsync(Ct);

        Assert.IsType<Writ.Agent.NodeAttestation.AgentFatalException>(await failed.Task.WaitAsync(TimeSpan.FromSeconds(10), Ct));
        await loop.Completion.WaitAsync(TimeSpan.FromSeconds(10), Ct);
        Assert.Equal(1, Volatile.Read(ref runs));
        await loop.StopAsync(Ct);
    }

    [Fact]
    public async Task Host_shutdown_ends_every_loop_within_the_grace_including_one_that_cleans_up_on_the_way_out()
    {
        var cleanedUp = false;
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(10));
        for (var i = 0; i < 4; i++)
        {
            var name = $"idle {i}";
            builder.Services.AddSingleton<IHostedService>(sp => new LoopService(name, ct => Task.Delay(Timeout.Infinite, ct), LoopFailurePolicy.Restart,
                TimeProvider.System, Random.Shared, new ListLogger()));
        }
        builder.Services.AddSingleton<IHostedService>(sp => new LoopService("persisting", async ct =>
        {
            try
            {
                await Task.Delay(Timeout.Infinite, ct);
            }
            finally
            {
                await Task.Yield();   // e.g. the instance reporter writing its queue
                cleanedUp = true;
            }
        }, LoopFailurePolicy.Restart, TimeProvider.System, Random.Shared, new ListLogger()));
        using var host = builder.Build();
        var loops = host.Services.GetServices<IHostedService>().OfType<GuardedBackgroundService>().ToList();
        await host.StartAsync(Ct);
        Assert.Equal(5, loops.Count);
        await Task.WhenAll(loops.Select(l => l.Running)).WaitAsync(TimeSpan.FromSeconds(10), Ct);   // on the thread pool, not at once
        Assert.All(loops, l => Assert.False(l.Completion.IsCompleted));

        await host.StopAsync(Ct);
        // Every loop is over when StopAsync returns within the grace; the deadline only bounds a hang.
        await Task.WhenAll(loops.Select(l => l.Completion)).WaitAsync(TimeSpan.FromSeconds(10), Ct);
        Assert.True(cleanedUp);
        Assert.All(loops, l => Assert.Equal(0, l.Failures));
    }
}
