using System.Collections.Frozen;
using k8s.Models;
using Microsoft.Extensions.Logging;

namespace Writ.Agent.WorkloadAttestation.Kubernetes;

/// <summary>One pod list as fetched: this node's pods by uid, and how many listed pods were ignored.</summary>
public sealed record PodSnapshot(long Sequence, DateTimeOffset FetchedAt, FrozenDictionary<string, V1Pod> ByUid, int OtherNodePods, int AmbiguousPods);

/// <summary>
/// The kubelet's pod list, reused for <c>k8s.pod_cache_ttl</c>. A lookup that misses (a new pod, a container that just
/// started) asks for a fresh list at once: concurrent misses share one request (single flight), a miss that a list
/// fetched after its own already answers uses that list, and requests are at least <see cref="MinRefreshInterval"/>
/// apart, so a storm of calls for unknown pods costs the kubelet at most a few requests a second. The request itself is
/// not cancelled by the caller who started it (others wait on it); it has its own timeouts (<see cref="KubeletClient"/>).
/// Only pods whose <c>spec.nodeName</c> is this node count: a kubelet answer listing another node's pod is not trusted.
/// </summary>
public sealed partial class KubeletPodCache
{
    /// <summary>At most one pod-list request per this interval.</summary>
    public static readonly TimeSpan MinRefreshInterval = TimeSpan.FromMilliseconds(250);

    /// <summary>How long after its fetch the last list still answers while the kubelet cannot be reached.</summary>
    public static readonly TimeSpan OutageGrace = TimeSpan.FromSeconds(30);

    private readonly Func<CancellationToken, Task<V1PodList>> _fetch;
    private readonly string _nodeName;
    private readonly TimeSpan _ttl;
    private readonly TimeProvider _time;
    private readonly ILogger _log;
    private readonly Lock _gate = new();
    private PodSnapshot? _current;
    private Task<PodSnapshot>? _inflight;
    private DateTimeOffset _lastStart = DateTimeOffset.MinValue;
    private long _sequence;
    private int _fetches;

    public KubeletPodCache(Func<CancellationToken, Task<V1PodList>> fetch, string nodeName, TimeSpan ttl, TimeProvider time, ILogger log)
    {
        ArgumentNullException.ThrowIfNull(fetch);
        ArgumentException.ThrowIfNullOrEmpty(nodeName);
        ArgumentOutOfRangeException.ThrowIfLessThan(ttl, TimeSpan.Zero);
        ArgumentNullException.ThrowIfNull(time);
        ArgumentNullException.ThrowIfNull(log);
        _fetch = fetch;
        _nodeName = nodeName;
        _ttl = ttl;
        _time = time;
        _log = log;
    }

    /// <summary>Pod-list requests made so far.</summary>
    public int Fetches => Volatile.Read(ref _fetches);

    /// <summary>
    /// The list if it is younger than the TTL, else a fresh one. When the kubelet cannot be reached
    /// (<see cref="K8sWorkloadCodes.KubeletUnreachable"/>) the last list is used for up to <see cref="OutageGrace"/> after
    /// it was fetched, so a kubelet restart does not take every workload's Kubernetes evidence away; a refused token, an
    /// untrusted certificate or a malformed answer is never bridged. Throws <see cref="KubeletException"/>.
    /// </summary>
    public async Task<PodSnapshot> CurrentAsync(CancellationToken ct)
    {
        PodSnapshot? previous;
        Task<PodSnapshot> fetch;
        lock (_gate)
        {
            previous = _current;
            if (previous is not null && _time.GetUtcNow() - previous.FetchedAt < _ttl)
            {
                return previous;
            }

            fetch = StartOrJoin(ct);
        }

        try
        {
            return await fetch.ConfigureAwait(false);
        }
        catch (KubeletException ex) when (ex.Code == K8sWorkloadCodes.KubeletUnreachable && previous is not null &&
                                          _time.GetUtcNow() - previous.FetchedAt <= OutageGrace)
        {
            LogStaleList(_log, (_time.GetUtcNow() - previous.FetchedAt).TotalSeconds);
            return previous;
        }
    }

    /// <summary>
    /// A list fetched after <paramref name="seen"/> (which missed): the current one if it is already newer, else the
    /// request in flight, else a new request. Throws <see cref="KubeletException"/>.
    /// </summary>
    public Task<PodSnapshot> RefreshAfterAsync(PodSnapshot seen, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(seen);
        lock (_gate)
        {
            if (_current is { } c && c.Sequence > seen.Sequence)
            {
                return Task.FromResult(c);
            }

            return StartOrJoin(ct);
        }
    }

    private Task<PodSnapshot> StartOrJoin(CancellationToken ct)
    {
        // Under _gate. The fetch runs on the thread pool so that it never completes (and clears _inflight) inside this lock.
        _inflight ??= Task.Run(FetchAsync, CancellationToken.None);
        return _inflight.WaitAsync(ct);
    }

    private async Task<PodSnapshot> FetchAsync()
    {
        bool published = false;
        try
        {
            TimeSpan wait;
            lock (_gate)
            {
                wait = _lastStart == DateTimeOffset.MinValue ? TimeSpan.Zero : _lastStart + MinRefreshInterval - _time.GetUtcNow();
            }

            if (wait > TimeSpan.Zero)
            {
                await Task.Delay(wait, _time).ConfigureAwait(false);
            }

            lock (_gate)
            {
                _lastStart = _time.GetUtcNow();
            }

            Interlocked.Increment(ref _fetches);
            long started = _time.GetTimestamp();
            V1PodList list;
            try
            {
                list = await _fetch(CancellationToken.None).ConfigureAwait(false);
            }
            catch (KubeletException ex)
            {
                LogFetchFailed(_log, ex.Code, ex.Message);
                throw;
            }

            var byUid = new Dictionary<string, V1Pod>(StringComparer.OrdinalIgnoreCase);
            var ambiguous = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
            int otherNode = 0;
            foreach (V1Pod? pod in list.Items)
            {
                if (pod?.Metadata?.Uid is not { Length: > 0 } uid)
                {
                    continue;
                }

                if (!string.Equals(pod.Spec?.NodeName, _nodeName, StringComparison.Ordinal))
                {
                    otherNode++;
                    continue;
                }

                if (ambiguous.Contains(uid) || !byUid.TryAdd(uid, pod))
                {
                    // Two entries with one uid: neither is believed.
                    byUid.Remove(uid);
                    ambiguous.Add(uid);
                }
            }

            if (otherNode > 0)
            {
                LogOtherNodePods(_log, otherNode, _nodeName);
            }

            PodSnapshot snapshot;
            lock (_gate)
            {
                snapshot = new PodSnapshot(++_sequence, _time.GetUtcNow(), byUid.ToFrozenDictionary(StringComparer.OrdinalIgnoreCase), otherNode, ambiguous.Count);
                _current = snapshot;
                _inflight = null;   // with the list published, in one step: a later miss asks again
                published = true;
            }

            LogFetched(_log, byUid.Count, otherNode, _time.GetElapsedTime(started).TotalMilliseconds);
            return snapshot;
        }
        finally
        {
            if (!published)
            {
                lock (_gate)
                {
                    _inflight = null;
                }
            }
        }
    }

    [LoggerMessage(EventId = 2762, Level = LogLevel.Debug, Message = "k8s workload attestor: kubelet pod list fetched: {Pods} pods of this node, {OtherNode} of other nodes ignored, in {ElapsedMs} ms")]
    private static partial void LogFetched(ILogger logger, int pods, int otherNode, double elapsedMs);

    [LoggerMessage(EventId = 2763, Level = LogLevel.Warning, Message = "k8s workload attestor: the kubelet listed {Count} pods whose spec.nodeName is not {NodeName}; they were ignored (is k8s.node_name right, and is the kubelet this node's?)")]
    private static partial void LogOtherNodePods(ILogger logger, int count, string nodeName);

    [LoggerMessage(EventId = 2767, Level = LogLevel.Warning, Message = "k8s workload attestor: the kubelet cannot be reached; using the pod list fetched {AgeSeconds} s ago (at most 30 s)")]
    private static partial void LogStaleList(ILogger logger, double ageSeconds);

    [LoggerMessage(EventId = 2764, Level = LogLevel.Warning, Message = "k8s workload attestor: kubelet pod list request failed: {Code}: {Reason}")]
    private static partial void LogFetchFailed(ILogger logger, string code, string reason);
}
