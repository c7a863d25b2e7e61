using Grpc.Core;
using Microsoft.Extensions.Logging;
using Writ.Agent.NodeAttestation;
using Writ.Protocol;
using Writ.Protocol.Agent;

namespace Writ.Agent.Instances;

/// <summary>One ReportInstanceGone call waiting to be delivered.</summary>
public sealed record InstanceGoneReport(string InstanceId, IReadOnlyList<string> Serials, IReadOnlyList<string> Jtis, string Reason);

/// <summary>
/// Tells the server which credentials of a workload instance must no longer be honoured (the process exited, its
/// evidence drifted). Reports are queued and delivered in order; while the server is unreachable, or does not
/// implement the call yet, they stay queued and are retried with backoff (0.5 s doubling to 30 s). Nothing is lost
/// silently: a report is dropped only when the server refuses it as invalid, or when the queue overflows, and both are
/// logged.
/// </summary>
public sealed class InstanceReporter(Func<AgentService.AgentServiceClient> client, Func<RpcException, AgentFatalException?> classify,
    TimeProvider time, ILogger log)
{
    /// <summary>More pending reports than this: the oldest is dropped (and logged).</summary>
    public const int MaxPending = 100_000;

    private readonly Lock _lock = new();
    private readonly LinkedList<InstanceGoneReport> _pending = new();
    private readonly ChangeSignal _queued = new();
    private bool _unimplementedLogged;

    public int Pending
    {
        get
        {
            lock (_lock)
            {
                return _pending.Count;
            }
        }
    }

    /// <summary>Reports delivered so far (for tests and diagnostics).</summary>
    public long Delivered => Interlocked.Read(ref _delivered);

    private long _delivered;

    /// <summary>Queues a report; one without credentials is not sent (there is nothing to revoke).</summary>
    public void Enqueue(string instanceId, IReadOnlyList<string> serials, IReadOnlyList<string> jtis, string reason)
    {
        if (serials.Count == 0 && jtis.Count == 0)
        {
            return;
        }
        InstanceGoneReport? dropped = null;
        lock (_lock)
        {
            _pending.AddLast(new InstanceGoneReport(instanceId, serials, jtis, reason));
            if (_pending.Count > MaxPending)
            {
                dropped = _pending.First!.Value;
                _pending.RemoveFirst();
            }
        }
        if (dropped is not null)
        {
            AgentLog.InstanceReportDropped(log, dropped.InstanceId, $"more than {MaxPending} reports are pending");
        }
        _queued.Raise();
    }

    public IReadOnlyList<InstanceGoneReport> Snapshot()
    {
        lock (_lock)
        {
            return [.. _pending];
        }
    }

    public async Task RunAsync(CancellationToken ct)
    {
        var backoff = TimeSpan.FromMilliseconds(500);
        while (!ct.IsCancellationRequested)
        {
            var generation = _queued.Generation;
            InstanceGoneReport? next;
            lock (_lock)
            {
                next = _pending.First?.Value;
            }
            if (next is null)
            {
                await _queued.WaitAsync(generation, ct).ConfigureAwait(false);
                continue;
            }
            var request = new ReportInstanceGoneRequest { InstanceId = next.InstanceId, Reason = next.Reason };
            request.SerialHex.AddRange(next.Serials);
            request.Jti.AddRange(next.Jtis);
            string? retryReason = null;
            try
            {
                var r = await client().ReportInstanceGoneAsync(request, deadline: time.GetUtcNow().UtcDateTime.AddSeconds(30), cancellationToken: ct).ConfigureAwait(false);
                Remove(next);
                Interlocked.Increment(ref _delivered);
                AgentLog.InstanceReported(log, next.InstanceId, next.Reason, r.Revoked);
                backoff = TimeSpan.FromMilliseconds(500);
                continue;
            }
            catch (RpcException e) when (!ct.IsCancellationRequested)
            {
                if (classify(e) is { } fatal)
                {
                    throw fatal;
                }
                switch (e.StatusCode)
                {
                    case StatusCode.Unimplemented:
                        if (!_unimplementedLogged)
                        {
                            _unimplementedLogged = true;
                            AgentLog.InstanceReportUnimplemented(log, Pending);
                        }
                        break;
                    case StatusCode.InvalidArgument or StatusCode.NotFound or StatusCode.FailedPrecondition:
                        // The server will never take this one: say so and go on with the others.
                        Remove(next);
                        AgentLog.InstanceReportDropped(log, next.InstanceId, e.Status.Detail.Length > 0 ? e.Status.Detail : e.StatusCode.ToString());
                        continue;
                    default:
                        retryReason = e.Status.Detail.Length > 0 ? e.Status.Detail : e.StatusCode.ToString();
                        break;
                }
            }
            catch (Exception e) when (e is IOException or HttpRequestException && !ct.IsCancellationRequested)
            {
                retryReason = e.Message;
            }
            if (retryReason is not null)
            {
                AgentLog.InstanceReportDeferred(log, next.InstanceId, retryReason, Pending, backoff);
            }
            var jitter = TimeSpan.FromMilliseconds(Random.Shared.Next(0, (int)Math.Max(1, backoff.TotalMilliseconds / 4)));
            await Task.Delay(backoff + jitter, time, ct).ConfigureAwait(false);
            backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, TimeSpan.FromSeconds(30).Ticks));
        }
    }

    private void Remove(InstanceGoneReport report)
    {
        lock (_lock)
        {
            _pending.Remove(report);
        }
    }
}
