using System.Text.Json;
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
/// implement the call yet, they stay queued and are retried with backoff (0.5 s doubling to 30 s). With a
/// <c>path</c> the queue survives restarts: it is written there (0600, replaced atomically) at most every 0.5 s while
/// it changes and when the agent stops, and read back at start. Nothing is lost silently: a report is dropped only
/// when the server refuses it as invalid, or when the queue overflows, and both are logged.
/// </summary>
public sealed class InstanceReporter
{
    private readonly Func<AgentService.AgentServiceClient> _client;
    private readonly Func<RpcException, AgentFatalException?> _classify;
    private readonly TimeProvider _time;
    private readonly ILogger _log;
    private readonly string? _path;
    private readonly Random _jitter;
    private bool _dirty;
    private DateTimeOffset _persistedAt = DateTimeOffset.MinValue;

    public InstanceReporter(Func<AgentService.AgentServiceClient> client, Func<RpcException, AgentFatalException?> classify,
        TimeProvider time, ILogger log, string? path = null, Random? jitter = null)
    {
        _jitter = jitter ?? Random.Shared;
        _client = client;
        _classify = classify;
        _time = time;
        _log = log;
        _path = path;
        if (path is not null)
        {
            foreach (var r in Load(path, log))
            {
                _pending.AddLast(r);
            }
        }
    }

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
            _dirty = true;
            if (_pending.Count > MaxPending)
            {
                dropped = _pending.First!.Value;
                _pending.RemoveFirst();
            }
        }
        if (dropped is not null)
        {
            AgentLog.InstanceReportDropped(_log, dropped.InstanceId, $"more than {MaxPending} reports are pending");
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
        try
        {
            await SendLoopAsync(ct).ConfigureAwait(false);
        }
        finally
        {
            Persist(force: true);   // stopping: what is still pending is sent by the next start
        }
    }

    private async Task SendLoopAsync(CancellationToken ct)
    {
        var backoff = TimeSpan.FromMilliseconds(500);
        while (!ct.IsCancellationRequested)
        {
            Persist(force: false);
            var generation = _queued.Generation;
            InstanceGoneReport? next;
            lock (_lock)
            {
                next = _pending.First?.Value;
            }
            if (next is null)
            {
                if (_dirty)
                {
                    // Wake to write the (now empty) queue once the persistence interval has passed.
                    using var wake = CancellationTokenSource.CreateLinkedTokenSource(ct);
                    await Task.WhenAny(_queued.WaitAsync(generation, wake.Token), Task.Delay(TimeSpan.FromMilliseconds(500), _time, wake.Token)).ConfigureAwait(false);
                    await wake.CancelAsync().ConfigureAwait(false);
                    ct.ThrowIfCancellationRequested();
                }
                else
                {
                    await _queued.WaitAsync(generation, ct).ConfigureAwait(false);
                }
                continue;
            }
            var request = new ReportInstanceGoneRequest { InstanceId = next.InstanceId, Reason = next.Reason };
            request.SerialHex.AddRange(next.Serials);
            request.Jti.AddRange(next.Jtis);
            string? retryReason = null;
            try
            {
                var r = await _client().ReportInstanceGoneAsync(request, deadline: _time.GetUtcNow().UtcDateTime.AddSeconds(30), cancellationToken: ct).ConfigureAwait(false);
                AgentLog.InstanceReported(_log, next.InstanceId, next.Reason, r.Revoked);
                Interlocked.Increment(ref _delivered);
                Remove(next);
                backoff = TimeSpan.FromMilliseconds(500);
                continue;
            }
            catch (RpcException e) when (!ct.IsCancellationRequested)
            {
                if (_classify(e) is { } fatal)
                {
                    throw fatal;
                }
                switch (e.StatusCode)
                {
                    case StatusCode.Unimplemented:
                        if (!_unimplementedLogged)
                        {
                            _unimplementedLogged = true;
                            AgentLog.InstanceReportUnimplemented(_log, Pending);
                        }
                        break;
                    case StatusCode.InvalidArgument or StatusCode.NotFound or StatusCode.FailedPrecondition:
                        // The server will never take this one: say so and go on with the others.
                        AgentLog.InstanceReportDropped(_log, next.InstanceId, e.Status.Detail.Length > 0 ? e.Status.Detail : e.StatusCode.ToString());
                        Remove(next);
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
                AgentLog.InstanceReportDeferred(_log, next.InstanceId, retryReason, Pending, backoff);
            }
            var jitter = TimeSpan.FromMilliseconds(_jitter.Next(0, (int)Math.Max(1, backoff.TotalMilliseconds / 4)));
            await Task.Delay(backoff + jitter, _time, ct).ConfigureAwait(false);
            backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, TimeSpan.FromSeconds(30).Ticks));
        }
    }

    private void Remove(InstanceGoneReport report)
    {
        lock (_lock)
        {
            _pending.Remove(report);
            _dirty = true;
        }
    }

    /// <summary>Writes the queue to <c>path</c> when it changed (at most every 0.5 s unless forced).</summary>
    private void Persist(bool force)
    {
        if (_path is null || !_dirty || (!force && _time.GetUtcNow() - _persistedAt < TimeSpan.FromMilliseconds(500)))
        {
            return;
        }
        List<InstanceGoneReport> pending;
        lock (_lock)
        {
            pending = [.. _pending];
            _dirty = false;
        }
        _persistedAt = _time.GetUtcNow();
        try
        {
            var tmp = _path + ".tmp";
            using (var s = new FileStream(tmp, new FileStreamOptions
            {
                Mode = FileMode.Create, Access = FileAccess.Write, UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
            }))
            using (var w = new Utf8JsonWriter(s))
            {
                w.WriteStartArray();
                foreach (var r in pending)
                {
                    w.WriteStartObject();
                    w.WriteString("instance_id", r.InstanceId);
                    w.WriteString("reason", r.Reason);
                    w.WriteStartArray("serial_hex");
                    r.Serials.ToList().ForEach(w.WriteStringValue);
                    w.WriteEndArray();
                    w.WriteStartArray("jti");
                    r.Jtis.ToList().ForEach(w.WriteStringValue);
                    w.WriteEndArray();
                    w.WriteEndObject();
                }
                w.WriteEndArray();
            }
            File.Move(tmp, _path, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            _dirty = true;
            AgentLog.InstanceReportsNotSaved(_log, _path, e.Message);
        }
    }

    private static List<InstanceGoneReport> Load(string path, ILogger log)
    {
        var reports = new List<InstanceGoneReport>();
        try
        {
            if (!File.Exists(path))
            {
                return reports;
            }
            using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
            foreach (var e in doc.RootElement.EnumerateArray())
            {
                reports.Add(new InstanceGoneReport(
                    e.GetProperty("instance_id").GetString() ?? "",
                    [.. e.GetProperty("serial_hex").EnumerateArray().Select(x => x.GetString() ?? "").Where(x => x.Length > 0)],
                    [.. e.GetProperty("jti").EnumerateArray().Select(x => x.GetString() ?? "").Where(x => x.Length > 0)],
                    e.GetProperty("reason").GetString() ?? ""));
            }
            if (reports.Count > 0)
            {
                AgentLog.InstanceReportsLoaded(log, reports.Count, path);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or JsonException or InvalidOperationException or KeyNotFoundException)
        {
            AgentLog.InstanceReportsNotSaved(log, path, $"could not read the pending reports ({e.GetType().Name}); they are lost");
        }
        return reports;
    }
}
