using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Google.Protobuf;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using Writ.Agent.Instances;
using Writ.Agent.NodeAttestation;
using Writ.Agent.Sync;
using Writ.Protocol.Agent;
using Writ.Protocol.Errors;

namespace Writ.Agent.Cache;

/// <summary>A pre-signed X.509-SVID of an entry's outage pool: not bound to any instance until handed out. Its key is in memory only.</summary>
public sealed record PooledX509(string EntryId, IReadOnlyList<X509Certificate2> Chain, byte[] KeyPkcs8, DateTimeOffset NotBefore, DateTimeOffset ExpiresAt, string DecisionId)
{
    public string SerialHex { get; } = Chain[0].SerialNumber;
}

/// <summary>One pooled SVID handed to one instance, kept until the server acknowledges the report.</summary>
public sealed record PooledHandout(string EntryId, string SerialHex, string InstanceId, int Pid, int Uid, string SelectorsSha256, DateTimeOffset At);

/// <summary>
/// The outage pool (issue #16 item 5; docs/high-availability.md "New workloads during an outage"). For each entry this
/// agent serves with <c>outage_pool</c> N &gt; 0 it keeps N pre-signed X.509-SVIDs whose keys it generated and keeps in
/// memory only (never on disk: a restarted agent starts with empty pools). Refilled when below N and a server answers;
/// an SVID is dropped when it expires, its serial is revoked, or its entry is deleted or set to 0. When a new instance
/// cannot get its own SVID because no server is reachable, <see cref="TryTake"/> removes one pooled SVID under a lock,
/// so each is handed to at most one instance and never again; every handout is reported to whichever server is
/// reachable (<c>ReportPooledSvidUsed</c>) until acknowledged. Run by <see cref="SvidRotationService"/>.
/// </summary>
public sealed class OutagePool
{
    /// <summary>After a refused or failed refill the entry is not asked again for this long.</summary>
    public static readonly TimeSpan RefillBackoff = TimeSpan.FromSeconds(5);

    private readonly ConcurrentDictionary<string, List<PooledX509>> _pools = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, DateTimeOffset> _refillAfter = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, PooledHandout> _handouts = new(StringComparer.Ordinal);
    private readonly Func<AgentService.AgentServiceClient> _client;
    private readonly Func<RpcException, AgentFatalException?> _classify;
    private readonly AgentState _state;
    private readonly TimeProvider _time;
    private readonly ILogger _log;
    private long _handedOut;

    public OutagePool(Func<AgentService.AgentServiceClient> client, Func<RpcException, AgentFatalException?> classify, AgentState state, TimeProvider time, ILogger log)
    {
        _client = client;
        _classify = classify;
        _state = state;
        _time = time;
        _log = log;
    }

    /// <summary>Pooled SVIDs held, all entries together (the <c>writ.agent.outage_pool.size</c> gauge).</summary>
    public int Size => _pools.Values.Sum(p => { lock (p) return p.Count; });

    /// <summary>Pooled SVIDs handed out since start (the <c>writ.agent.outage_pool.handouts</c> counter).</summary>
    public long HandedOut => Interlocked.Read(ref _handedOut);

    /// <summary>How many pooled SVIDs the entry's pool holds now.</summary>
    public int CountOf(string entryId) => _pools.TryGetValue(entryId, out var p) ? Locked(p, () => p.Count) : 0;

    /// <summary>Handouts not yet acknowledged by a server.</summary>
    public IReadOnlyList<PooledHandout> PendingReports => [.. _handouts.Values];

    /// <summary>
    /// Removes and returns one pooled SVID of the entry that may still be served (unexpired, not revoked), or null. Each
    /// pooled SVID is returned at most once, whatever the number of racing callers. The handout is recorded for report.
    /// </summary>
    public PooledX509? TryTake(Entry entry, WorkloadInstance instance, Writ.Protocol.Agent.AttestedWorkload evidence)
    {
        ArgumentNullException.ThrowIfNull(entry);
        ArgumentNullException.ThrowIfNull(instance);
        ArgumentNullException.ThrowIfNull(evidence);
        if (entry.OutagePool <= 0 || !_pools.TryGetValue(entry.Id, out var pool))
            return null;
        var now = _time.GetUtcNow();
        PooledX509? taken = null;
        lock (pool)
        {
            pool.RemoveAll(p => p.ExpiresAt <= now || _state.Revocations.IsSerialRevoked(p.SerialHex));
            if (pool.Count > 0)
            {
                // The one with the most life left.
                taken = pool.MaxBy(p => p.ExpiresAt)!;
                pool.Remove(taken);
            }
        }
        if (taken is null)
            return null;
        var digest = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(string.Join('\n',
            evidence.Selectors.Select(s => $"{s.Type}:{s.Value}").Order(StringComparer.Ordinal)))));
        var handout = new PooledHandout(entry.Id, taken.SerialHex, instance.Id, instance.Peer.Pid, instance.Peer.Uid, digest, now);
        _handouts[taken.SerialHex] = handout;
        Interlocked.Increment(ref _handedOut);
        AgentLog.PoolHandedOut(_log, taken.SerialHex, entry.SpiffeId, entry.Id, instance.Id, instance.Peer.Pid, instance.Peer.Uid);
        return taken;
    }

    /// <summary>
    /// One pass: drops pools of entries gone or set to 0, expired and revoked pooled SVIDs; reports handouts; refills
    /// pools below their size. Server failures are left for the next pass. True when a pool changed.
    /// </summary>
    public async Task<bool> MaintainOnceAsync(CancellationToken ct)
    {
        var entries = _state.Current.Entries;
        var now = _time.GetUtcNow();
        var changed = false;
        foreach (var (id, pool) in _pools)
        {
            var reason = !entries.TryGetValue(id, out var e) ? "entry deleted" : e.OutagePool <= 0 ? "outage pool set to 0" : null;
            if (reason is not null)
            {
                if (_pools.TryRemove(id, out var gone))
                    AgentLog.PoolDropped(_log, id, reason, Locked(gone, () => gone.Count));
                changed = true;
                continue;
            }
            lock (pool)
            {
                changed |= pool.RemoveAll(p => p.ExpiresAt <= now || _state.Revocations.IsSerialRevoked(p.SerialHex)) > 0;
                // A smaller pool keeps the SVIDs with the most life left.
                if (pool.Count > e!.OutagePool)
                {
                    pool.Sort((a, b) => b.ExpiresAt.CompareTo(a.ExpiresAt));
                    pool.RemoveRange(e.OutagePool, pool.Count - e.OutagePool);
                    changed = true;
                }
            }
        }
        await ReportAsync(ct).ConfigureAwait(false);
        foreach (var e in entries.Values)
        {
            if (e.OutagePool <= 0 || (e.ExpiresAtUnix != 0 && e.ExpiresAtUnix <= now.ToUnixTimeSeconds()))
                continue;
            var need = e.OutagePool - CountOf(e.Id);
            if (need <= 0 || (_refillAfter.TryGetValue(e.Id, out var after) && after > now))
                continue;
            changed |= await RefillAsync(e, need, ct).ConfigureAwait(false);
        }
        return changed;
    }

    private async Task<bool> RefillAsync(Entry entry, int need, CancellationToken ct)
    {
        var keys = new List<ECDsa>(need);
        try
        {
            var request = new SignPooledX509SvidsRequest { EntryId = entry.Id };
            for (var i = 0; i < need; i++)
            {
                var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
                keys.Add(key);
                request.Csrs.Add(ByteString.CopyFrom(Writ.Spiffe.X509.Csr.Create(key)));
            }
            SignPooledX509SvidsResponse response;
            try
            {
                response = await _client().SignPooledX509SvidsAsync(request, cancellationToken: ct).ConfigureAwait(false);
            }
            catch (RpcException e)
            {
                if (_classify(e) is { } fatal)
                    throw fatal;
                var (code, message) = WritStatus.Read(e);
                // Unreachable servers are the normal case of an outage: not logged every pass.
                if (e.StatusCode is not (StatusCode.Unavailable or StatusCode.DeadlineExceeded))
                    AgentLog.PoolRefillRefused(_log, entry.Id, $"{code ?? e.StatusCode.ToString()}: {message}");
                _refillAfter[entry.Id] = _time.GetUtcNow() + RefillBackoff;
                return false;
            }
            var byKey = keys.ToDictionary(k => Convert.ToHexString(k.ExportSubjectPublicKeyInfo()), StringComparer.Ordinal);
            var added = new List<PooledX509>();
            foreach (var svid in response.Svids)
            {
                if (svid.CertChain.Count == 0 || svid.EntryId != entry.Id)
                    continue;
                var chain = svid.CertChain.Select(c => X509CertificateLoader.LoadCertificate(c.ToByteArray())).ToList();
                if (!byKey.Remove(Convert.ToHexString(chain[0].PublicKey.ExportSubjectPublicKeyInfo()), out var key))
                    continue;
                added.Add(new PooledX509(entry.Id, chain, key.ExportPkcs8PrivateKey(), new DateTimeOffset(chain[0].NotBefore.ToUniversalTime()),
                    new DateTimeOffset(chain[0].NotAfter.ToUniversalTime()), svid.DecisionId));
            }
            var pool = _pools.GetOrAdd(entry.Id, _ => []);
            lock (pool)
                pool.AddRange(added);
            _refillAfter.TryRemove(entry.Id, out _);
            AgentLog.PoolRefilled(_log, entry.SpiffeId, entry.Id, added.Count);
            return added.Count > 0;
        }
        finally
        {
            foreach (var k in keys)
                k.Dispose();
        }
    }

    /// <summary>Reports every unacknowledged handout; kept for the next pass when no server answers.</summary>
    private async Task ReportAsync(CancellationToken ct)
    {
        if (_handouts.IsEmpty)
            return;
        var request = new ReportPooledSvidUsedRequest();
        foreach (var h in _handouts.Values.Take(500))
        {
            request.Uses.Add(new PooledSvidUse
            {
                SerialHex = h.SerialHex, EntryId = h.EntryId, InstanceId = h.InstanceId, Pid = h.Pid, Uid = h.Uid,
                SelectorsSha256 = h.SelectorsSha256, UsedAtUnix = h.At.ToUnixTimeSeconds(),
            });
        }
        try
        {
            var response = await _client().ReportPooledSvidUsedAsync(request, cancellationToken: ct).ConfigureAwait(false);
            foreach (var s in response.AcknowledgedSerials)
                _handouts.TryRemove(s, out _);
            AgentLog.PoolUsesReported(_log, response.AcknowledgedSerials.Count);
        }
        catch (RpcException e)
        {
            if (_classify(e) is { } fatal)
                throw fatal;
            if (e.StatusCode is StatusCode.PermissionDenied or StatusCode.InvalidArgument)
            {
                // The server will never accept these (not its pooled SVIDs, e.g. a store restored from a backup): retrying forever helps nobody.
                AgentLog.PoolUsesRefused(_log, e.Status.Detail);
                foreach (var u in request.Uses)
                    _handouts.TryRemove(u.SerialHex, out _);
            }
        }
    }

    private static T Locked<T>(object gate, Func<T> f)
    {
        lock (gate)
            return f();
    }
}
