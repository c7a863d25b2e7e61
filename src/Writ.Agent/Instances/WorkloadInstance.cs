using System.Globalization;
using Writ.Agent.PeerTracking;
using Writ.Agent.WorkloadAttestation;
using Writ.Protocol.Agent;
using Writ.Protocol.Evidence;

namespace Writ.Agent.Instances;

/// <summary>
/// One workload instance: one process, named <c>"&lt;pid&gt;:&lt;start time in clock ticks&gt;"</c> from its pin, so a
/// recycled pid is another instance. It holds the evidence its credentials are issued from and an <see cref="Epoch"/>
/// that moves whenever that evidence drifts: credentials issued under an older epoch are never served again. It
/// also remembers what was issued to it (serials, JWT ids) so they can be reported when it exits or drifts.
/// Thread-safe.
/// </summary>
public sealed class WorkloadInstance
{
    private readonly Lock _lock = new();
    private readonly Dictionary<string, DateTimeOffset> _serials = new(StringComparer.OrdinalIgnoreCase);
    private readonly Dictionary<string, DateTimeOffset> _jtis = new(StringComparer.Ordinal);
    private ProcessEvidence? _evidence;
    private AttestedWorkload? _proto;
    private long _epoch;
    private string? _goneReason;
    private int _openStreams;
    private long _lastAttestedTicks;

    internal WorkloadInstance(ProcessEvidence evidence, DateTimeOffset now)
    {
        Peer = evidence.Process.Peer;
        StartTimeTicks = evidence.Process.Pin.StartTimeTicks;
        Id = IdOf(evidence.Process.Pin);
        _evidence = evidence;
        _proto = evidence.ToProto();
        _lastAttestedTicks = now.UtcTicks;
    }

    /// <summary>"&lt;pid&gt;:&lt;start time ticks&gt;".</summary>
    public string Id { get; }

    /// <summary>What the kernel said when the instance first connected (SO_PEERCRED).</summary>
    public PeerCredentials Peer { get; }

    public ulong StartTimeTicks { get; }

    /// <summary>Raised when the instance drifts or is gone: only its own streams need to wake, not every workload's.</summary>
    public Writ.Protocol.ChangeSignal Changed { get; } = new();

    public static string IdOf(ProcessPin pin)
    {
        ArgumentNullException.ThrowIfNull(pin);
        return string.Create(CultureInfo.InvariantCulture, $"{pin.Pid}:{pin.StartTimeTicks}");
    }

    /// <summary>The evidence its credentials come from, with the epoch; null evidence: nothing may be served (gone, or re-attestation failed).</summary>
    public (ProcessEvidence? Evidence, AttestedWorkload? Proto, long Epoch) Current
    {
        get
        {
            lock (_lock)
            {
                return _goneReason is null ? (_evidence, _proto, _epoch) : (null, null, _epoch);
            }
        }
    }

    public long Epoch
    {
        get
        {
            lock (_lock)
            {
                return _epoch;
            }
        }
    }

    /// <summary>Why the instance is gone ("exited"), or null while it lives.</summary>
    public string? GoneReason
    {
        get
        {
            lock (_lock)
            {
                return _goneReason;
            }
        }
    }

    public bool IsGone => GoneReason is not null;

    /// <summary>True while the instance's credentials may be served under <paramref name="epoch"/>.</summary>
    public bool IsCurrent(long epoch)
    {
        lock (_lock)
        {
            return _goneReason is null && _evidence is not null && _epoch == epoch;
        }
    }

    /// <summary>Open Workload API streams of this instance: only their SVIDs are rotated ahead of time.</summary>
    public int OpenStreams => Volatile.Read(ref _openStreams);

    internal void StreamOpened() => Interlocked.Increment(ref _openStreams);

    internal void StreamClosed() => Interlocked.Decrement(ref _openStreams);

    public DateTimeOffset LastAttested => new(Interlocked.Read(ref _lastAttestedTicks), TimeSpan.Zero);

    /// <summary>Credentials issued to this instance and not yet reported (for tests and diagnostics).</summary>
    public (IReadOnlyList<string> Serials, IReadOnlyList<string> Jtis) Issued
    {
        get
        {
            lock (_lock)
            {
                return ([.. _serials.Keys], [.. _jtis.Keys]);
            }
        }
    }

    /// <summary>Records an X.509-SVID issued under <paramref name="epoch"/>; false (not recorded) if that epoch is over.</summary>
    internal bool TryRecordSerial(long epoch, string serialHex, DateTimeOffset expiresAt)
    {
        lock (_lock)
        {
            if (_goneReason is not null || _evidence is null || _epoch != epoch)
            {
                return false;
            }
            _serials[serialHex] = expiresAt;
            return true;
        }
    }

    internal bool TryRecordJti(long epoch, string jti, DateTimeOffset expiresAt)
    {
        lock (_lock)
        {
            if (_goneReason is not null || _evidence is null || _epoch != epoch)
            {
                return false;
            }
            if (jti.Length > 0)
            {
                _jtis[jti] = expiresAt;
            }
            return true;
        }
    }

    /// <summary>Same evidence that matters: keeps the epoch, takes the newer evidence (facts such as the parent pid may move).</summary>
    internal void Refresh(ProcessEvidence evidence, DateTimeOffset now)
    {
        lock (_lock)
        {
            if (_goneReason is null)
            {
                // The proto the server decides on is rebuilt only when what it carries moved (selectors, facts): on
                // the per-call path nothing did, and the old one is the same message.
                if (_proto is null || _evidence is null || !EvidenceDrift.SameSelectors(_evidence.Selectors, evidence.Selectors)
                    || !SameFacts(_evidence.Facts, evidence.Facts))
                {
                    _proto = evidence.ToProto();
                }
                _evidence = evidence;
            }
        }
        Interlocked.Exchange(ref _lastAttestedTicks, now.UtcTicks);
    }

    /// <summary>
    /// The evidence drifted: a new epoch starts (credentials of the old one are no longer served) from
    /// <paramref name="evidence"/> (null: nothing is served until the next successful attestation). Returns the
    /// unexpired credentials of the old epoch, to report.
    /// </summary>
    internal (List<string> Serials, List<string> Jtis) Drift(ProcessEvidence? evidence, DateTimeOffset now)
    {
        lock (_lock)
        {
            _epoch++;
            _evidence = evidence;
            _proto = evidence is null ? null : evidence.ToProto();
            Interlocked.Exchange(ref _lastAttestedTicks, now.UtcTicks);
            return TakeIssued(now);
        }
    }

    /// <summary>The process is gone: nothing is served any more. Returns the unexpired credentials to report; null if already gone.</summary>
    internal (List<string> Serials, List<string> Jtis)? MarkGone(string reason, DateTimeOffset now)
    {
        lock (_lock)
        {
            if (_goneReason is not null)
            {
                return null;
            }
            _goneReason = reason;
            _epoch++;
            _evidence = null;
            _proto = null;
            return TakeIssued(now);
        }
    }

    private static bool SameFacts(IReadOnlyDictionary<string, string> a, IReadOnlyDictionary<string, string> b)
    {
        if (ReferenceEquals(a, b))
        {
            return true;
        }
        if (a.Count != b.Count)
        {
            return false;
        }
        foreach (var (k, v) in a)
        {
            if (!b.TryGetValue(k, out var w) || !string.Equals(v, w, StringComparison.Ordinal))
            {
                return false;
            }
        }
        return true;
    }

    /// <summary>
    /// The Workload API service's per-instance memo (the entries matched for the current snapshot and selectors, and
    /// the X.509 response shared by the instance's streams). Owned by <c>WorkloadApiService</c>; it re-validates what
    /// it finds here on every use.
    /// </summary>
    internal object? ServiceMemo;

    internal object? MatchMemo;

    private (List<string>, List<string>) TakeIssued(DateTimeOffset now)
    {
        var serials = _serials.Where(p => p.Value > now).Select(p => p.Key).ToList();
        var jtis = _jtis.Where(p => p.Value > now).Select(p => p.Key).ToList();
        _serials.Clear();
        _jtis.Clear();
        return (serials, jtis);
    }
}
