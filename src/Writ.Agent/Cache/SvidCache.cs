using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Google.Protobuf;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using Writ.Agent.NodeAttestation;
using Writ.Agent.Sync;
using Writ.Protocol.Agent;

namespace Writ.Agent.Cache;

/// <summary>An X.509-SVID held for one entry: its chain (leaf first), its private key (PKCS#8) and when to rotate it.</summary>
public sealed record CachedX509(Entry Entry, IReadOnlyList<X509Certificate2> Chain, byte[] KeyPkcs8, DateTimeOffset ExpiresAt, DateTimeOffset RotateAt)
{
    public string SpiffeId => Entry.SpiffeId;
}

public sealed record CachedJwt(string SpiffeId, string Token, DateTimeOffset ExpiresAt, DateTimeOffset RefreshAt);

/// <summary>
/// SVIDs for the entries this agent serves. X.509: a fresh key per entry, signed by the server from a CSR the first
/// time a workload needs it, then rotated shortly before half-life (with jitter) for as long as the entry exists. JWT: cached per
/// (entry, audience set) until half-life. When the server cannot be reached the cached SVIDs are served until they
/// expire, never after.
/// </summary>
public sealed class SvidCache(NodeIdentity node, AgentState state, TimeProvider time, ILogger log)
{
    private readonly ConcurrentDictionary<string, CachedX509> _x509 = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<(string Entry, string Audience), CachedJwt> _jwt = new();
    private readonly SemaphoreSlim _signGate = new(1, 1);
    private DateTimeOffset _retryAt = DateTimeOffset.MinValue;
    private TimeSpan _retryBackoff = TimeSpan.FromMilliseconds(500);

    /// <summary>X.509-SVIDs for these entries, signing the missing ones in one call. Entries that cannot be had are left out.</summary>
    public async Task<IReadOnlyList<CachedX509>> GetX509Async(IReadOnlyList<Entry> entries, CancellationToken ct)
    {
        var now = time.GetUtcNow();
        var missing = entries.Where(e => !_x509.TryGetValue(e.Id, out var c) || c.Entry.Revision != e.Revision || c.ExpiresAt <= now).ToList();
        if (missing.Count > 0)
        {
            await SignAsync(missing, ct).ConfigureAwait(false);
        }
        return [.. entries.Select(e => _x509.TryGetValue(e.Id, out var c) && c.ExpiresAt > time.GetUtcNow() ? c : null).OfType<CachedX509>()];
    }

    public int X509Count => _x509.Count;

    private async Task SignAsync(IReadOnlyList<Entry> entries, CancellationToken ct)
    {
        await _signGate.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            var now = time.GetUtcNow();
            var todo = entries.Where(e => !_x509.TryGetValue(e.Id, out var c) || c.Entry.Revision != e.Revision || c.RotateAt <= now).ToList();
            for (var i = 0; i < todo.Count; i += 500)
            {
                var batch = todo.Skip(i).Take(500).ToList();
                var keys = new Dictionary<string, ECDsa>(StringComparer.Ordinal);
                var request = new SignX509SvidsRequest();
                foreach (var e in batch)
                {
                    var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
                    keys[e.Id] = key;
                    request.Csrs.Add(new SvidCsr { EntryId = e.Id, Csr = ByteString.CopyFrom(Writ.Spiffe.X509.Csr.Create(key)) });
                }
                try
                {
                    var response = await node.Client.SignX509SvidsAsync(request, cancellationToken: ct).ConfigureAwait(false);
                    _retryAt = DateTimeOffset.MinValue;
                    _retryBackoff = TimeSpan.FromMilliseconds(500);
                    foreach (var svid in response.Svids)
                    {
                        var entry = batch.First(e => e.Id == svid.EntryId);
                        var chain = svid.CertChain.Select(c => X509CertificateLoader.LoadCertificate(c.ToByteArray())).ToList();
                        var nb = new DateTimeOffset(chain[0].NotBefore.ToUniversalTime());
                        var exp = new DateTimeOffset(chain[0].NotAfter.ToUniversalTime());
                        var rotateAt = RotationTime(nb, exp, time.GetUtcNow(), Random.Shared.NextDouble());
                        _x509[entry.Id] = new CachedX509(entry, chain, keys[entry.Id].ExportPkcs8PrivateKey(), exp, rotateAt);
                        AgentLog.X509Cached(log, entry.SpiffeId, entry.Id, exp, rotateAt);
                    }
                }
                catch (RpcException e)
                {
                    if (node.Classify(e) is { } fatal)
                    {
                        throw fatal;
                    }
                    AgentLog.RotationFailed(log, e.Status.Detail.Length > 0 ? e.Status.Detail : e.StatusCode.ToString());
                    _retryAt = time.GetUtcNow() + _retryBackoff;   // rotation retries back off; workload fetches still try at once
                    _retryBackoff = TimeSpan.FromTicks(Math.Min(_retryBackoff.Ticks * 2, TimeSpan.FromSeconds(30).Ticks));
                }
                finally
                {
                    foreach (var k in keys.Values)
                    {
                        k.Dispose();
                    }
                }
            }
        }
        finally
        {
            _signGate.Release();
        }
    }

    /// <summary>
    /// When to replace an X.509-SVID: 85–95 % of the way to its half-life (jitter spreads a fleet's renewals), so the
    /// new SVID is in the workload's hands <em>before</em> half-life even after the signing round trip — a workload
    /// that renews on the same half-life rule never sees a stale one. NotBefore is back-dated by the server (clock
    /// skew), so for very short TTLs the half-life can already have passed on arrival: then the remaining lifetime
    /// is halved instead, rather than rotating in a tight loop.
    /// </summary>
    public static DateTimeOffset RotationTime(DateTimeOffset notBefore, DateTimeOffset notAfter, DateTimeOffset now, double random)
    {
        var factor = 0.85 + (Math.Clamp(random, 0, 1) * 0.1);
        var at = notBefore + ((notAfter - notBefore) / 2 * factor);
        return at > now ? at : now + ((notAfter - now) / 2 * factor);
    }

    /// <summary>
    /// Keeps the cache in line with the entries and the clock: drops SVIDs of removed entries, re-signs changed ones
    /// and those past their rotation time, stops serving expired ones. Wakes on every state change and at least
    /// once a second.
    /// </summary>
    public async Task MaintainAsync(CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            var generation = state.Changed.Generation;
            var snapshot = state.Current;
            var changed = false;
            var nowUnix = time.GetUtcNow().ToUnixTimeSeconds();
            foreach (var (id, cached) in _x509)
            {
                if (!snapshot.Entries.TryGetValue(id, out var current) || (current.ExpiresAtUnix != 0 && current.ExpiresAtUnix <= nowUnix))
                {
                    // Entry deleted or expired: its SVID is neither served nor rotated any more.
                    changed |= _x509.TryRemove(id, out _);
                }
                else if (cached.ExpiresAt <= time.GetUtcNow())
                {
                    AgentLog.X509Expired(log, cached.SpiffeId);
                    changed |= _x509.TryRemove(id, out _);
                }
            }
            foreach (var key in _jwt.Keys.Where(k => !snapshot.Entries.ContainsKey(k.Entry) || _jwt[k].ExpiresAt <= time.GetUtcNow()).ToList())
            {
                _jwt.TryRemove(key, out _);
            }
            var now = time.GetUtcNow();
            var due = _x509.Values
                .Where(c => c.RotateAt <= now || (snapshot.Entries.TryGetValue(c.Entry.Id, out var e) && e.Revision != c.Entry.Revision))
                .Select(c => snapshot.Entries[c.Entry.Id]).ToList();
            if (due.Count > 0 && now >= _retryAt)
            {
                await SignAsync(due, ct).ConfigureAwait(false);
                changed = true;
            }
            if (changed)
            {
                state.Changed.Raise();
                generation = state.Changed.Generation;
            }
            using var tick = CancellationTokenSource.CreateLinkedTokenSource(ct);
            var nextRotation = _x509.Values.Select(c => c.RotateAt).DefaultIfEmpty(now + TimeSpan.FromSeconds(1)).Min();
            var next = (nextRotation > _retryAt ? nextRotation : _retryAt) - time.GetUtcNow();
            var wait = next < TimeSpan.FromMilliseconds(50) ? TimeSpan.FromMilliseconds(50) : next > TimeSpan.FromSeconds(1) ? TimeSpan.FromSeconds(1) : next;
            await Task.WhenAny(state.Changed.WaitAsync(generation, tick.Token), Task.Delay(wait, time, tick.Token)).ConfigureAwait(false);
            await tick.CancelAsync().ConfigureAwait(false);
        }
    }

    /// <summary>A JWT-SVID for the entry and audience, from the cache until its half-life, else minted by the server.</summary>
    public async Task<CachedJwt> GetJwtAsync(Entry entry, IReadOnlyList<string> audience, CancellationToken ct)
    {
        var key = (entry.Id, string.Join('\n', audience.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal)));
        var now = time.GetUtcNow();
        if (_jwt.TryGetValue(key, out var cached) && cached.RefreshAt > now)
        {
            return cached;
        }
        var request = new MintJwtSvidRequest { EntryId = entry.Id };
        request.Audience.AddRange(audience);
        MintJwtSvidResponse r;
        try
        {
            r = await node.Client.MintJwtSvidAsync(request, cancellationToken: ct).ConfigureAwait(false);
        }
        catch (RpcException e)
        {
            if (node.Classify(e) is { } fatal)
            {
                throw fatal;
            }
            if (cached is not null && cached.ExpiresAt > now)
            {
                return cached;   // the server is away: the cached token is still valid
            }
            throw;
        }
        var exp = DateTimeOffset.FromUnixTimeSeconds(r.ExpiresAtUnix);
        var jwt = new CachedJwt(r.SpiffeId, r.Token, exp, now + ((exp - now) / 2));
        _jwt[key] = jwt;
        return jwt;
    }
}
