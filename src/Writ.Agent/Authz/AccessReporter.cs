using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Writ.Agent.WorkloadApi;
using Writ.Protocol.Agent;
using Writ.Protocol.Hosting;

namespace Writ.Agent.Authz;

/// <summary>
/// Sends request-time decisions to the server's ledger (<c>access.denied</c>, <c>access.allowed</c>) through
/// <c>ReportAccess</c>: every denial, and allows sampled at <c>authz_allow_sample</c> (with the injected random source).
/// The queue is bounded: a decision never waits for the server; what does not fit is counted as dropped and the count
/// travels with the next batch. Batches of up to <see cref="MaxBatch"/>, retried by <see cref="ServerReportDelivery"/>.
/// </summary>
public sealed class AccessReporter(Func<AgentService.AgentServiceClient> client, double allowSample, Random random, TimeProvider time, ILogger log)
{
    public const int MaxPending = 10_000;
    public const int MaxBatch = 256;
    private const int MaxAttempts = 5;

    // Wait, not DropWrite: with Wait a full queue makes TryWrite return false, so the drop is counted (DropWrite drops silently).
    private readonly Channel<AccessDecision> _queue =
        Channel.CreateBounded<AccessDecision>(new BoundedChannelOptions(MaxPending) { SingleReader = true, FullMode = BoundedChannelFullMode.Wait });
    private long _dropped;
    private long _droppedTotal;
    private long _delivered;

    public TimeSpan RetryDelay { get; init; } = TimeSpan.FromMilliseconds(500);

    /// <summary>Decisions the server recorded (for tests and diagnostics).</summary>
    public long Delivered => Interlocked.Read(ref _delivered);

    /// <summary>Decisions dropped because the queue was full, since the agent started.</summary>
    public long Dropped => Interlocked.Read(ref _droppedTotal);

    /// <summary>Queues a decision for the ledger if it is to be recorded (never blocks, never throws).</summary>
    public void Offer(CallOutcome outcome, string surface, DateTimeOffset at)
    {
        ArgumentNullException.ThrowIfNull(outcome);
        if (outcome.Allowed)
        {
            double draw;
            lock (random)
            {
                draw = random.NextDouble();
            }
            if (draw >= allowSample)
            {
                return;
            }
        }
        var decision = new AccessDecision
        {
            DecisionId = outcome.DecisionId,
            Allowed = outcome.Allowed,
            Reason = Fit(outcome.Reason),
            Code = outcome.Code,
            Facts = Fit(outcome.Facts),
            PolicyVersion = outcome.Decision?.PolicyVersion ?? 0,
            DecidedAtUnixMs = at.ToUnixTimeMilliseconds(),
            Surface = surface,
        };
        if (outcome.Decision is { } d)
        {
            decision.DeterminingPolicies.AddRange(d.DeterminingPolicies.Take(MaxItems * 8).Select(Fit));
        }
        if (!_queue.Writer.TryWrite(decision))
        {
            Interlocked.Increment(ref _dropped);
            if (Interlocked.Increment(ref _droppedTotal) % 1000 == 1)
            {
                AgentLog.AccessReportsDropped(log, Dropped);
            }
        }
    }

    /// <summary>Longest text kept per field of a report (the server takes one line of at most 4096 characters).</summary>
    public const int MaxText = 1024;

    private const int MaxItems = 32;

    /// <summary>One line of at most <see cref="MaxText"/> characters: what the server's report rules accept, whatever the request carried.</summary>
    private static string Fit(string s)
    {
        if (s.Length <= MaxText && !s.Any(char.IsControl))
        {
            return s;
        }
        var cut = s.Length <= MaxText ? s : s[..MaxText];
        return string.Create(cut.Length, cut, (span, src) =>
        {
            for (var i = 0; i < src.Length; i++)
            {
                span[i] = char.IsControl(src[i]) ? ' ' : src[i];
            }
        });
    }

    private static CallFacts Fit(CallFacts facts)
    {
        var f = facts.Clone();
        foreach (var field in new Action<CallFacts>[]
        {
            x => x.CallerSpiffeId = Fit(x.CallerSpiffeId), x => x.CallerSerialHex = Fit(x.CallerSerialHex), x => x.CallerJti = Fit(x.CallerJti),
            x => x.ResourceSpiffeId = Fit(x.ResourceSpiffeId), x => x.Method = Fit(x.Method), x => x.Path = Fit(x.Path), x => x.Host = Fit(x.Host),
            x => x.CallerInstanceId = Fit(x.CallerInstanceId), x => x.CallerAgentId = Fit(x.CallerAgentId),
        })
        {
            field(f);
        }
        var headers = f.Headers.Take(MaxItems).Select(h => (Fit(h.Key), Fit(h.Value))).ToList();
        f.Headers.Clear();
        foreach (var (k, v) in headers)
        {
            f.Headers[k] = v;
        }
        var selectors = f.CallerSelectors.Take(MaxItems * 8).Select(Fit).ToList();
        f.CallerSelectors.Clear();
        f.CallerSelectors.AddRange(selectors);
        var dns = f.CallerDnsNames.Take(MaxItems * 8).Select(Fit).ToList();
        f.CallerDnsNames.Clear();
        f.CallerDnsNames.AddRange(dns);
        return f;
    }

    /// <summary>Sends queued decisions in batches until stopped.</summary>
    public async Task SendReportsAsync(CancellationToken stopping)
    {
        var reader = _queue.Reader;
        while (await reader.WaitToReadAsync(stopping).ConfigureAwait(false))
        {
            var request = new ReportAccessRequest();
            while (request.Decisions.Count < MaxBatch && reader.TryRead(out var d))
            {
                request.Decisions.Add(d);
            }
            request.Dropped = Interlocked.Exchange(ref _dropped, 0);
            var outcome = await ServerReportDelivery.SendAsync(
                ct => client().ReportAccessAsync(request, deadline: time.GetUtcNow().UtcDateTime.AddSeconds(10), cancellationToken: ct).ResponseAsync,
                MaxAttempts, RetryDelay, time, null, stopping).ConfigureAwait(false);
            if (outcome.Delivered)
            {
                Interlocked.Add(ref _delivered, request.Decisions.Count);
                AgentLog.AccessReported(log, request.Decisions.Count);
            }
            else if (outcome.Failure is { } failure)
            {
                Interlocked.Add(ref _droppedTotal, request.Decisions.Count);
                AgentLog.AccessReportFailed(log, request.Decisions.Count, failure);
            }
        }
    }
}

/// <summary>Delivers the <see cref="AccessReporter"/>'s batches in the background (hosted; ends with the agent).</summary>
public sealed class AccessReportService(AccessReporter reporter, TimeProvider time, Random jitter, ILogger<AccessReportService> log)
    : GuardedBackgroundService("access reports", LoopFailurePolicy.Restart, time, jitter, log)
{
    protected override Task RunAsync(CancellationToken stoppingToken) => reporter.SendReportsAsync(stoppingToken);
}
