using System.Collections.Concurrent;
using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Writ.Agent.PeerTracking;
using Writ.Agent.WorkloadAttestation;

namespace Writ.Agent.Instances;

/// <summary>
/// Continuous re-attestation. Every workload instance the agent has served is re-checked on every Workload API call
/// from it (<see cref="Observe"/>) and every <c>reattest_interval</c> (<see cref="RunAsync"/>): the process must be
/// alive with the same start time, and the attestors, run again, must give the same evidence that matters
/// (<see cref="EvidenceDrift"/>). An exit (seen at once through a pidfd where the kernel has them) forgets the
/// instance; a drift starts a new epoch, so its old credentials are no longer served and fresh ones are issued from
/// the new evidence. Either way the credentials issued to it are reported to the server (<see cref="InstanceReporter"/>)
/// and the instance's own <see cref="WorkloadInstance.Changed"/> wakes its open streams (no one else's).
/// </summary>
public sealed class InstanceTracker : IDisposable
{
    private readonly ConcurrentDictionary<string, WorkloadInstance> _instances = new(StringComparer.Ordinal);
    private readonly WorkloadAttestationRunner _runner;
    private readonly IProcFs _proc;
    private readonly InstanceReporter _reporter;
    private readonly TimeProvider _time;
    private readonly ILogger _log;
    private readonly PidfdWatcher _pidfds;
    private long _lastTickMicros;

    /// <param name="maxWatched">At most this many instances' exits are watched through a pidfd (one descriptor each); the others are noticed by the periodic re-check.</param>
    public InstanceTracker(WorkloadAttestationRunner runner, IProcFs proc, InstanceReporter reporter, TimeSpan interval,
        TimeProvider time, ILogger log, int maxWatched = PidfdWatcher.MaxWatched)
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(interval, TimeSpan.Zero);
        _runner = runner;
        _proc = proc;
        _reporter = reporter;
        Interval = interval;
        _time = time;
        _log = log;
        _pidfds = new PidfdWatcher(OnPidfdExit, maxWatched);
        if (!_pidfds.Supported)
        {
            AgentLog.PidfdUnavailable(log, _pidfds.UnsupportedReason ?? "unknown");
        }
    }

    public TimeSpan Interval { get; }

    private const string Restored = "attested again";

    public int Count => _instances.Count;

    /// <summary>How long the last periodic re-check of every instance took.</summary>
    public TimeSpan LastTickDuration => TimeSpan.FromMicroseconds(Interlocked.Read(ref _lastTickMicros));

    /// <summary>Completed periodic re-checks (for tests waiting on one).</summary>
    public long Ticks => Interlocked.Read(ref _ticks);

    private long _ticks;

    /// <summary>Instances whose exit is watched through a pidfd.</summary>
    public int WatchedByPidfd => _pidfds.Count;

    public WorkloadInstance? Get(string instanceId) => _instances.TryGetValue(instanceId, out var i) ? i : null;

    public IReadOnlyCollection<WorkloadInstance> Instances => [.. _instances.Values];

    /// <summary>
    /// The instance behind freshly gathered evidence (a Workload API call): tracked from now on if new; if known,
    /// its evidence is compared with what its credentials were issued from, and a drift is handled before the call
    /// is served.
    /// </summary>
    public WorkloadInstance Observe(ProcessEvidence evidence)
    {
        ArgumentNullException.ThrowIfNull(evidence);
        var now = _time.GetUtcNow();
        var id = WorkloadInstance.IdOf(evidence.Process.Pin);
        while (true)
        {
            if (_instances.TryGetValue(id, out var known))
            {
                if (known.IsGone)
                {
                    // Declared gone (e.g. a re-check raced with this call): the same process cannot come back, but a
                    // call proves it is alive: start over as a fresh instance.
                    _instances.TryRemove(new KeyValuePair<string, WorkloadInstance>(id, known));
                    continue;
                }
                var (current, _, _) = known.Current;
                var reason = current is null ? Restored : EvidenceDrift.Compare(current, evidence);
                if (reason is null)
                {
                    known.Refresh(evidence, now);
                }
                else
                {
                    HandleDrift(known, evidence, reason);
                }
                return known;
            }
            var fresh = new WorkloadInstance(evidence, now);
            if (_instances.TryAdd(id, fresh))
            {
                var watched = _pidfds.Watch(id, evidence.Process.Pin, _proc);
                AgentLog.InstanceTracked(_log, id, evidence.Process.Peer.Pid, watched ? "pidfd" : "re-check");
                return fresh;
            }
        }
    }

    /// <summary>
    /// Re-checks every instance once per <see cref="Interval"/> after it was last attested (by a call or a re-check),
    /// so no instance goes longer than one interval (plus the round's own time) unchecked. Wakes at the earliest due
    /// time, at least once per interval.
    /// </summary>
    public async Task RunAsync(CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            var now = _time.GetUtcNow();
            var next = _instances.Values.Select(i => i.LastAttested + Interval).DefaultIfEmpty(now + Interval).Min() - now;
            var wait = next < TimeSpan.FromMilliseconds(20) ? TimeSpan.FromMilliseconds(20) : next > Interval ? Interval : next;
            await Task.Delay(wait, _time, ct).ConfigureAwait(false);
            await RecheckDueAsync(ct).ConfigureAwait(false);
        }
    }

    /// <summary>Every instance due (last attested an interval ago, give or take 50 ms to batch neighbours): checked, 4 at a time.</summary>
    public Task RecheckDueAsync(CancellationToken ct) => RecheckAsync(_time.GetUtcNow() - Interval + TimeSpan.FromMilliseconds(50), ct);

    /// <summary>One round over every instance, whenever it was last attested.</summary>
    public Task RecheckAllAsync(CancellationToken ct) => RecheckAsync(DateTimeOffset.MaxValue, ct);

    private async Task RecheckAsync(DateTimeOffset attestedBefore, CancellationToken ct)
    {
        var sw = Stopwatch.StartNew();
        var due = _instances.Values.Where(i => i.LastAttested <= attestedBefore).ToList();
        if (due.Count == 0)
        {
            return;
        }
        await Parallel.ForEachAsync(due, new ParallelOptions { MaxDegreeOfParallelism = 4, CancellationToken = ct },
            async (instance, token) => await RecheckAsync(instance, token).ConfigureAwait(false)).ConfigureAwait(false);
        Interlocked.Exchange(ref _lastTickMicros, (long)sw.Elapsed.TotalMicroseconds);
        Interlocked.Increment(ref _ticks);
        AgentLog.ReattestTick(_log, due.Count, _instances.Count, sw.Elapsed.TotalMilliseconds);
    }

    /// <summary>Re-checks one instance now: alive with the same start time, then the attestors again.</summary>
    public async Task RecheckAsync(WorkloadInstance instance, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(instance);
        if (instance.IsGone)
        {
            return;
        }
        // No separate liveness check first: the runner pins the process itself, and a failure is looked at below.
        for (var attempt = 0; ; attempt++)
        {
            var result = await _runner.AttestAsync(instance.Peer, null, ct).ConfigureAwait(false);
            if (result.Evidence is { } evidence)
            {
                if (evidence.Process.Pin.StartTimeTicks != instance.StartTimeTicks)
                {
                    Forget(instance, "exited");
                    return;
                }
                var (current, _, _) = instance.Current;
                var reason = current is null ? Restored : EvidenceDrift.Compare(current, evidence);
                if (reason is null)
                {
                    instance.Refresh(evidence, _time.GetUtcNow());
                }
                else
                {
                    HandleDrift(instance, evidence, reason);
                }
                return;
            }
            if (!IsAlive(instance))
            {
                Forget(instance, "exited");
                return;
            }
            if (attempt >= 1)
            {
                // Alive, but its evidence cannot be gathered (e.g. it keeps exec'ing): serve nothing until a call
                // from it attests again.
                AgentLog.ReattestFailed(_log, instance.Id, result.Error ?? "no evidence");
                if (instance.Current.Evidence is not null)
                {
                    HandleDrift(instance, null, "re-attestation failed");
                }
                return;
            }
        }
    }

    private bool IsAlive(WorkloadInstance instance) =>
        ProcessPin.TryCreate(_proc, instance.Peer.Pid, out var pin, out _) && pin!.StartTimeTicks == instance.StartTimeTicks;

    private void OnPidfdExit(string instanceId)
    {
        if (_instances.TryGetValue(instanceId, out var instance) && !IsAlive(instance))
        {
            Forget(instance, "exited");
        }
    }

    private void HandleDrift(WorkloadInstance instance, ProcessEvidence? evidence, string reason)
    {
        if (reason == Restored)
        {
            // Served nothing since its re-attestation failed; attested again now: a new epoch from this evidence.
            instance.Drift(evidence, _time.GetUtcNow());
            instance.Changed.Raise();
            return;
        }
        var (serials, jtis) = instance.Drift(evidence, _time.GetUtcNow());
        AgentLog.InstanceDrifted(_log, instance.Id, instance.Peer.Pid, reason, serials.Count, jtis.Count);
        _reporter.Enqueue(instance.Id, serials, jtis, reason);
        instance.Changed.Raise();
    }

    /// <summary>Forgets an instance at once (it exited): nothing of it is served any more; its credentials are reported.</summary>
    public void Forget(WorkloadInstance instance, string reason)
    {
        ArgumentNullException.ThrowIfNull(instance);
        if (instance.MarkGone(reason, _time.GetUtcNow()) is not { } issued)
        {
            return;
        }
        // Nothing is served from here on (MarkGone); the report is queued before the instance leaves the table.
        _pidfds.Unwatch(instance.Id);
        AgentLog.InstanceForgotten(_log, instance.Id, instance.Peer.Pid, reason, issued.Serials.Count, issued.Jtis.Count);
        _reporter.Enqueue(instance.Id, issued.Serials, issued.Jtis, reason);
        _instances.TryRemove(new KeyValuePair<string, WorkloadInstance>(instance.Id, instance));
        instance.Changed.Raise();   // its own streams (if its connection outlived it); the cache drops its SVIDs on its next pass
    }

    /// <summary>
    /// A credential was issued for an epoch that ended while the server signed it: it is never served, and it is
    /// reported at once so the server revokes it too.
    /// </summary>
    public void ReportStale(WorkloadInstance instance, string? serial, string? jti)
    {
        ArgumentNullException.ThrowIfNull(instance);
        _reporter.Enqueue(instance.Id, serial is null ? [] : [serial], jti is null ? [] : [jti],
            instance.GoneReason ?? "evidence changed during issuance");
    }

    public void Dispose() => _pidfds.Dispose();
}
