using System.Collections.Concurrent;
using System.Threading.Channels;
using Grpc.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Writ.Agent.WorkloadAttestation;
using Writ.Protocol.Agent;
using Writ.Protocol.Evidence;
using Writ.Protocol.Hosting;

namespace Writ.Agent.WorkloadApi;

/// <summary>
/// Reports to the server the workloads this agent refused an identity (no entry matches their evidence: a process in the
/// wrong namespace or with an unsigned image, a pod the kubelet does not list), so that the refusal is in the ledger
/// (<c>workload.refused</c>) and not only in this node's log. The agent decides such refusals itself, without the server;
/// the workload gets its refusal at once whatever happens to the report. One report per instance and code per
/// <see cref="Quiet"/> (a client retrying in a loop is one record, not thousands); at most <see cref="MaxPending"/> waiting
/// (beyond: dropped and logged); each retried a few times with backoff while the server is away.
/// </summary>
public sealed class WorkloadRefusalReporter(Func<AgentService.AgentServiceClient> client, TimeProvider time, ILogger<WorkloadRefusalReporter> log)
{
    public const int MaxPending = 256;
    private const int MaxAttempts = 5;
    private const int MaxRemembered = 10_000;

    private readonly ConcurrentDictionary<string, DateTimeOffset> _recent = new(StringComparer.Ordinal);
    private readonly Channel<ReportWorkloadRefusedRequest> _reports =
        Channel.CreateBounded<ReportWorkloadRefusedRequest>(new BoundedChannelOptions(MaxPending) { SingleReader = true, FullMode = BoundedChannelFullMode.Wait });

    /// <summary>The same instance refused with the same code again within this time is not reported again.</summary>
    public TimeSpan Quiet { get; init; } = TimeSpan.FromMinutes(5);

    /// <summary>Retry delays start here and double (tests shorten it).</summary>
    public TimeSpan RetryDelay { get; init; } = TimeSpan.FromMilliseconds(500);

    /// <summary>Reports delivered (for tests and diagnostics).</summary>
    public long Delivered => Interlocked.Read(ref _delivered);

    private long _delivered;

    /// <summary>Queues the report of a refusal the workload of <paramref name="evidence"/> got (never blocks, never throws).</summary>
    public void Refused(ProcessEvidence evidence, string code, string reason)
    {
        ArgumentNullException.ThrowIfNull(evidence);
        var now = time.GetUtcNow();
        var key = evidence.InstanceId + " " + code;
        if (_recent.TryGetValue(key, out var last) && now - last < Quiet)
        {
            return;
        }
        if (_recent.Count >= MaxRemembered)
        {
            foreach (var (k, at) in _recent)
            {
                if (now - at >= Quiet)
                {
                    _recent.TryRemove(k, out _);
                }
            }
            if (_recent.Count >= MaxRemembered)
            {
                _recent.Clear();
            }
        }
        _recent[key] = now;
        var report = new ReportWorkloadRefusedRequest
        {
            Evidence = evidence.ToProto(),
            Code = code,
            Reason = OneLine(reason),
        };
        report.AttestorErrors.AddRange(evidence.AttestorErrors.Take(16).Select(OneLine));
        if (!_reports.Writer.TryWrite(report))
        {
            AgentLog.WorkloadRefusalReportFailed(log, evidence.InstanceId, $"more than {MaxPending} refusal reports are waiting for the server; this one is dropped (the refusal stands)");
        }
    }

    private static string OneLine(string s)
    {
        var line = new string([.. s.Select(c => char.IsControl(c) ? ' ' : c)]).Trim();
        return line.Length <= 500 ? line : line[..500];
    }

    /// <summary>Delivers queued reports until stopped, one at a time (refusal reports are not urgent).</summary>
    public async Task SendReportsAsync(CancellationToken stopping)
    {
        await foreach (var report in _reports.Reader.ReadAllAsync(stopping).ConfigureAwait(false))
        {
            await SendAsync(report, stopping).ConfigureAwait(false);
        }
    }

    private async Task SendAsync(ReportWorkloadRefusedRequest report, CancellationToken stopping)
    {
        var instance = report.Evidence.InstanceId;
        var outcome = await ServerReportDelivery.SendAsync(
            ct => client().ReportWorkloadRefusedAsync(report, deadline: time.GetUtcNow().UtcDateTime.AddSeconds(10), cancellationToken: ct).ResponseAsync,
            MaxAttempts, RetryDelay, time, null, stopping).ConfigureAwait(false);
        if (outcome.Delivered)
        {
            Interlocked.Increment(ref _delivered);
            AgentLog.WorkloadRefusalReported(log, instance, report.Code);
        }
        else if (outcome.Failure is { } failure)
        {
            AgentLog.WorkloadRefusalReportFailed(log, instance, failure);
        }
    }
}

/// <summary>Delivers the <see cref="WorkloadRefusalReporter"/>'s reports in the background (hosted; ends with the agent).</summary>
public sealed class WorkloadRefusalReportService(WorkloadRefusalReporter reporter, TimeProvider time, Random jitter, ILogger<WorkloadRefusalReportService> log)
    : GuardedBackgroundService("workload refusal reports", LoopFailurePolicy.Restart, time, jitter, log)
{
    protected override Task RunAsync(CancellationToken stoppingToken) => reporter.SendReportsAsync(stoppingToken);
}

/// <summary>Registration of the agent's one <see cref="WorkloadRefusalReporter"/> and its report delivery.</summary>
public static class WorkloadRefusalReporterServiceCollectionExtensions
{
    /// <param name="client">the agent API client the reports go to, per service provider.</param>
    public static IServiceCollection AddWorkloadRefusalReports(this IServiceCollection services, Func<IServiceProvider, Func<AgentService.AgentServiceClient>> client)
    {
        ArgumentNullException.ThrowIfNull(client);
        services.AddSingleton(sp => new WorkloadRefusalReporter(client(sp), sp.GetRequiredService<TimeProvider>(), sp.GetRequiredService<ILogger<WorkloadRefusalReporter>>()));
        services.AddSingleton<WorkloadRefusalReportService>();
        services.AddSingleton<IHostedService>(sp => sp.GetRequiredService<WorkloadRefusalReportService>());
        return services;
    }
}
