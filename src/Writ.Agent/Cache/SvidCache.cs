using System.Buffers.Text;
using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using Google.Protobuf;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using Writ.Agent.Instances;
using Writ.Agent.NodeAttestation;
using Writ.Agent.Sync;
using Writ.Agent.WorkloadApi;
using Writ.Protocol.Errors;
using Writ.Protocol.Agent;

namespace Writ.Agent.Cache;

/// <summary>
/// An X.509-SVID held for one (entry, workload instance): its chain (leaf first), its private key (PKCS#8), when to
/// rotate it, and the instance epoch (evidence) it was issued under.
/// </summary>
public sealed record CachedX509(Entry Entry, string InstanceId, long Epoch, IReadOnlyList<X509Certificate2> Chain, byte[] KeyPkcs8,
    DateTimeOffset ExpiresAt, DateTimeOffset RotateAt, string DecisionId)
{
    public string SpiffeId => Entry.SpiffeId;

    /// <summary>The leaf's serial number, hex as X.509 prints it.</summary>
    public string SerialHex { get; } = Chain[0].SerialNumber;

    /// <summary>SHA-256 of the leaf's DER: what a JWT-SVID bound to it carries as <c>cnf.x5t#S256</c>.</summary>
    public byte[] LeafSha256 { get; } = SHA256.HashData(Chain[0].RawData);

    /// <summary>The chain's DER, leaf first, as the Workload API sends it (built once: RawData copies on every read).</summary>
    public ByteString ChainDer { get; } = ByteString.CopyFrom([.. Chain.SelectMany(c => c.RawData)]);

    /// <summary>The private key (PKCS#8) as the Workload API sends it.</summary>
    public ByteString KeyDer { get; } = ByteString.CopyFrom(KeyPkcs8);
}

/// <summary>A JWT-SVID for one (entry, instance, audience set), bound to <see cref="BoundLeafSha256"/> when not empty.</summary>
public sealed record CachedJwt(string SpiffeId, string Token, DateTimeOffset ExpiresAt, DateTimeOffset RefreshAt, string Jti,
    string InstanceId, long Epoch, byte[] BoundLeafSha256, string EntryId);

/// <summary>A CSR the server refused for one (entry, instance), as it said: its decision id and reason are shown to the workload.</summary>
public sealed record X509Denial(string EntryId, string SpiffeId, string InstanceId, long Epoch, long EntryRevision, string DecisionId,
    string Reason, StatusCode Code, DateTimeOffset RetryAt, string ErrorCode = "")
{
    /// <summary>The stable code the workload gets: the server's (<c>WRIT-ISSUE-…</c>) when it sent one.</summary>
    public string WorkloadCode => Writ.Protocol.Errors.WritStatus.IsCode(ErrorCode) ? ErrorCode : Writ.Agent.WorkloadApi.WorkloadErrors.IssuanceDenied;

    /// <summary>The one-line message the workload gets, e.g. <c>issuance denied by policy 'p' (decision d-1, see 'writ explain d-1')</c>.</summary>
    public string Message
    {
        get
        {
            var reason = Reason.Length == 0 ? "refused by the server" : Reason.ReplaceLineEndings(" ");
            var head = reason.StartsWith("denied", StringComparison.OrdinalIgnoreCase) ? "issuance " + reason : "issuance denied: " + reason;
            return DecisionId.Length == 0 ? head : $"{head} (decision {DecisionId}, see 'writ explain {DecisionId}')";
        }
    }
}

/// <summary>The X.509-SVIDs a workload instance may be served now, and the server's refusals for the other entries.</summary>
public sealed record X509Result(IReadOnlyList<CachedX509> Svids, IReadOnlyList<X509Denial> Denials);

/// <summary>
/// SVIDs per workload instance. X.509: a fresh key per (entry, instance), signed by the server from a CSR that carries
/// the instance's evidence, the first time the instance needs it; rotated shortly before half-life (with jitter)
/// while the instance has a stream open, else re-signed on its next call. JWT: per (entry, instance, audience set),
/// bound to the instance's current X.509-SVID leaf, cached until half-life. Credentials of an instance that exited or
/// whose evidence drifted (a new epoch) are never served; revoked serials and JWT ids are dropped at once. When the
/// server cannot be reached the cached SVIDs are served until they expire, never after.
/// </summary>
public sealed class SvidCache
{
    /// <summary>A refused CSR is asked again after this long (or at once when the entry changes).</summary>
    public static readonly TimeSpan DenialRetry = TimeSpan.FromSeconds(5);

    private readonly ConcurrentDictionary<(string Entry, string Instance), CachedX509> _x509 = new();
    private readonly ConcurrentDictionary<(string Entry, string Instance), X509Denial> _denials = new();
    private readonly ConcurrentDictionary<(string Entry, string Instance, string Audience), CachedJwt> _jwt = new();
    private readonly SemaphoreSlim _signGate = new(1, 1);
    private readonly Func<AgentService.AgentServiceClient> _client;
    private readonly Func<RpcException, AgentFatalException?> _classify;
    private readonly AgentState _state;
    private readonly InstanceTracker _tracker;
    private readonly TimeProvider _time;
    private readonly ILogger _log;
    private readonly Random _jitter;
    private DateTimeOffset _retryAt = DateTimeOffset.MinValue;
    private TimeSpan _retryBackoff = TimeSpan.FromMilliseconds(500);

    public SvidCache(NodeIdentity node, AgentState state, InstanceTracker tracker, TimeProvider time, ILogger log, Random? jitter = null)
        : this(() => node.Client, node.Classify, state, tracker, time, log, jitter)
    {
    }

    /// <param name="client">the agent API client (a fake in tests).</param>
    /// <param name="classify">turns a server refusal that must stop the agent (banned, evicted) into an exception.</param>
    /// <param name="jitter">where the rotation time's jitter comes from (default <see cref="Random.Shared"/>; tests pin it).</param>
    public SvidCache(Func<AgentService.AgentServiceClient> client, Func<RpcException, AgentFatalException?> classify, AgentState state,
        InstanceTracker tracker, TimeProvider time, ILogger log, Random? jitter = null)
    {
        _jitter = jitter ?? Random.Shared;
        _client = client;
        _classify = classify;
        _state = state;
        _tracker = tracker;
        _time = time;
        _log = log;
    }

    public int X509Count => _x509.Count;

    /// <summary>
    /// The outage pool (issue #16 item 5): pooled SVIDs handed to new instances of opted-in entries when no server is
    /// reachable. Null: no pool (every instance waits for its own SVID).
    /// </summary>
    public OutagePool? Pool { get; init; }

    /// <summary>Every credential this cache obtained, by serial and JWT id, with its instance and epoch (request-time decisions).</summary>
    public Writ.Agent.Authz.IssuedCredentials Issued { get; } = new();

    public int JwtCount => _jwt.Count;

    /// <summary>The cached X.509-SVIDs of one instance (for tests and diagnostics).</summary>
    public IReadOnlyList<CachedX509> X509Of(string instanceId) => [.. _x509.Values.Where(c => c.InstanceId == instanceId)];

    private bool Servable(CachedX509 c, Entry e, long epoch, DateTimeOffset now) =>
        c.Epoch == epoch && c.Entry.Revision == e.Revision && c.ExpiresAt > now && !_state.Revocations.IsSerialRevoked(c.SerialHex);

    /// <summary>
    /// X.509-SVIDs of this instance for these entries, signing the missing (and past-rotation) ones in one call with
    /// the instance's current evidence. Entries the server refused come back as denials; entries that cannot be had
    /// now (server away) are left out.
    /// </summary>
    public async Task<X509Result> GetX509Async(WorkloadInstance instance, IReadOnlyList<Entry> entries, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(instance);
        var (evidence, proto, epoch) = instance.Current;
        if (evidence is null || proto is null)
        {
            return new X509Result([], []);
        }
        var now = _time.GetUtcNow();
        // Missing: none servable (asked for at once), or past its rotation time (asked for unless signing is backing off
        // after a failure: the servable one is served meanwhile). A recent refusal is not asked again yet. One pass: when
        // nothing is missing (the common case) the answer is built from the same lookups.
        var svids = new List<CachedX509>(entries.Count);
        var denials = new List<X509Denial>();
        List<Entry>? missing = null;
        foreach (var e in entries)
        {
            if (_x509.TryGetValue((e.Id, instance.Id), out var c) && Servable(c, e, epoch, now) && (c.RotateAt > now || now < _retryAt))
            {
                svids.Add(c);
            }
            else if (_denials.TryGetValue((e.Id, instance.Id), out var d) && d.Epoch == epoch && d.EntryRevision == e.Revision && d.RetryAt > now)
            {
                denials.Add(d);
            }
            else
            {
                (missing ??= []).Add(e);
            }
        }
        if (missing is null)
        {
            return new X509Result(svids, denials);
        }
        var unreachable = await SignAsync([.. missing.Select(e => new SignItem(e, instance, epoch, proto))], force: false, ct).ConfigureAwait(false);
        now = _time.GetUtcNow();
        if (Pool is not null && unreachable)
        {
            // No server answered (Unavailable or timed out after the failover list): an opted-in entry without an SVID
            // for this instance hands it one pooled SVID. A refusal or any other error never does.
            foreach (var e in missing)
            {
                if (e.OutagePool > 0 && !_x509.ContainsKey((e.Id, instance.Id)) && !_denials.ContainsKey((e.Id, instance.Id))
                    && instance.IsCurrent(epoch) && Pool.TryTake(e, instance, proto) is { } pooled)
                {
                    AdoptPooled(e, instance, epoch, pooled);
                }
            }
        }
        svids.Clear();
        denials.Clear();
        foreach (var e in entries)
        {
            if (_x509.TryGetValue((e.Id, instance.Id), out var c) && Servable(c, e, epoch, now))
            {
                svids.Add(c);
            }
            else if (_denials.TryGetValue((e.Id, instance.Id), out var d) && d.Epoch == epoch && d.EntryRevision == e.Revision)
            {
                denials.Add(d);
            }
        }
        return new X509Result(svids, denials);
    }

    private sealed record SignItem(Entry Entry, WorkloadInstance Instance, long Epoch, AttestedWorkload Evidence);

    /// <returns>true when a signing call failed because no server answered (Unavailable, DeadlineExceeded).</returns>
    private async Task<bool> SignAsync(IReadOnlyList<SignItem> items, bool force, CancellationToken ct)
    {
        var unreachable = false;
        await _signGate.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            var now = _time.GetUtcNow();
            // Another caller may have signed these meanwhile.
            var todo = items.Where(i => i.Instance.IsCurrent(i.Epoch) && (force
                || !(_x509.TryGetValue((i.Entry.Id, i.Instance.Id), out var c) && Servable(c, i.Entry, i.Epoch, now) && c.RotateAt > now)))
                .DistinctBy(i => (i.Entry.Id, i.Instance.Id)).ToList();
            for (var b = 0; b < todo.Count; b += 500)
            {
                var batch = todo.Skip(b).Take(500).ToList();
                var keys = new Dictionary<string, (ECDsa Key, SignItem Item)>(StringComparer.Ordinal);
                var request = new SignX509SvidsRequest();
                foreach (var item in batch)
                {
                    var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
                    keys[Convert.ToHexString(key.ExportSubjectPublicKeyInfo())] = (key, item);
                    request.Csrs.Add(new SvidCsr
                    {
                        EntryId = item.Entry.Id,
                        Csr = ByteString.CopyFrom(Writ.Spiffe.X509.Csr.Create(key)),
                        Evidence = item.Evidence,
                    });
                }
                try
                {
                    var response = await _client().SignX509SvidsAsync(request, cancellationToken: ct).ConfigureAwait(false);
                    _retryAt = DateTimeOffset.MinValue;
                    _retryBackoff = TimeSpan.FromMilliseconds(500);
                    var signed = new HashSet<SignItem>();
                    foreach (var svid in response.Svids)
                    {
                        if (svid.CertChain.Count == 0)
                        {
                            continue;
                        }
                        var chain = svid.CertChain.Select(c => X509CertificateLoader.LoadCertificate(c.ToByteArray())).ToList();
                        // The leaf names its key: that says which CSR (entry and instance) it answers, whatever the
                        // server echoes.
                        if (!keys.TryGetValue(Convert.ToHexString(chain[0].PublicKey.ExportSubjectPublicKeyInfo()), out var k)
                            || k.Item.Entry.Id != svid.EntryId)
                        {
                            continue;
                        }
                        Adopt(k.Item, chain, k.Key, svid.DecisionId);
                        signed.Add(k.Item);
                    }
                    foreach (var denial in response.Denials)
                    {
                        foreach (var item in batch.Where(i => !signed.Contains(i) && i.Entry.Id == denial.EntryId
                            && (denial.InstanceId.Length == 0 || denial.InstanceId == i.Instance.Id)))
                        {
                            var d = new X509Denial(item.Entry.Id, item.Entry.SpiffeId, item.Instance.Id, item.Epoch, item.Entry.Revision,
                                denial.DecisionId, denial.Reason, (StatusCode)denial.Code, _time.GetUtcNow() + DenialRetry, denial.ErrorCode);
                            _denials[(item.Entry.Id, item.Instance.Id)] = d;
                            _x509.TryRemove((item.Entry.Id, item.Instance.Id), out _);   // a refused renewal ends the old SVID too
                            AgentLog.IssuanceDenied(_log, item.Entry.SpiffeId, item.Entry.Id, item.Instance.Id,
                                denial.ErrorCode.Length > 0 ? $"{denial.ErrorCode}: {denial.Reason}" : denial.Reason, denial.DecisionId);
                        }
                    }
                }
                catch (RpcException e)
                {
                    if (_classify(e) is { } fatal)
                    {
                        throw fatal;
                    }
                    AgentLog.RotationFailed(_log, e.Status.Detail.Length > 0 ? e.Status.Detail : e.StatusCode.ToString());
                    unreachable |= e.StatusCode is StatusCode.Unavailable or StatusCode.DeadlineExceeded;
                    _retryAt = _time.GetUtcNow() + _retryBackoff;   // rotation retries back off; workload fetches still try at once
                    _retryBackoff = TimeSpan.FromTicks(Math.Min(_retryBackoff.Ticks * 2, TimeSpan.FromSeconds(30).Ticks));
                }
                finally
                {
                    foreach (var k in keys.Values)
                    {
                        k.Key.Dispose();
                    }
                }
            }
        }
        finally
        {
            _signGate.Release();
        }
        return unreachable;
    }

    private void Adopt(SignItem item, List<X509Certificate2> chain, ECDsa key, string decisionId)
    {
        var nb = new DateTimeOffset(chain[0].NotBefore.ToUniversalTime());
        var exp = new DateTimeOffset(chain[0].NotAfter.ToUniversalTime());
        var rotateAt = RotationTime(nb, exp, _time.GetUtcNow(), _jitter.NextDouble());
        var cached = new CachedX509(item.Entry, item.Instance.Id, item.Epoch, chain, key.ExportPkcs8PrivateKey(), exp, rotateAt, decisionId);
        if (!item.Instance.TryRecordSerial(item.Epoch, cached.SerialHex, exp))
        {
            // The instance exited or drifted while the server signed: never served, reported for revocation.
            _tracker.ReportStale(item.Instance, cached.SerialHex, null);
            return;
        }
        Issued.RecordSerial(cached.SerialHex, item.Instance, item.Epoch, exp, _time.GetUtcNow());
        _x509[(item.Entry.Id, item.Instance.Id)] = cached;
        _denials.TryRemove((item.Entry.Id, item.Instance.Id), out _);
        AgentLog.X509Cached(_log, item.Entry.SpiffeId, item.Entry.Id, exp, rotateAt);
    }

    /// <summary>
    /// Serves a pooled SVID to the instance it was handed to, due for rotation at once: the first signing that succeeds
    /// (the server is back) replaces it with the instance's own SVID, and the open streams get that one.
    /// </summary>
    private void AdoptPooled(Entry entry, WorkloadInstance instance, long epoch, PooledX509 pooled)
    {
        var now = _time.GetUtcNow();
        var cached = new CachedX509(entry, instance.Id, epoch, pooled.Chain, pooled.KeyPkcs8, pooled.ExpiresAt, now, pooled.DecisionId);
        if (!instance.TryRecordSerial(epoch, cached.SerialHex, pooled.ExpiresAt))
        {
            _tracker.ReportStale(instance, cached.SerialHex, null);
            return;
        }
        Issued.RecordSerial(cached.SerialHex, instance, epoch, pooled.ExpiresAt, now);
        _x509[(entry.Id, instance.Id)] = cached;
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
    /// One maintenance pass: drops what may no longer be served (entry deleted or expired, instance gone or drifted,
    /// SVID expired, serial or jti revoked) and re-signs, with the instance's current evidence, the SVIDs of
    /// instances with an open stream that are due for rotation or whose entry changed. True if anything changed.
    /// </summary>
    public async Task<bool> MaintainOnceAsync(CancellationToken ct)
    {
        var snapshot = _state.Current;
        var now = _time.GetUtcNow();
        var nowUnix = now.ToUnixTimeSeconds();
        _state.Revocations.Prune(now);
        var changed = false;
        var revokedX509 = 0;
        var revokedJwt = 0;
        foreach (var (key, cached) in _x509)
        {
            var instance = _tracker.Get(key.Instance);
            if (!snapshot.Entries.TryGetValue(key.Entry, out var current) || (current.ExpiresAtUnix != 0 && current.ExpiresAtUnix <= nowUnix)
                || instance is null || !instance.IsCurrent(cached.Epoch))
            {
                // Entry deleted or expired, instance exited or drifted: neither served nor rotated any more.
                changed |= _x509.TryRemove(new KeyValuePair<(string, string), CachedX509>(key, cached));
            }
            else if (_state.Revocations.IsSerialRevoked(cached.SerialHex))
            {
                revokedX509++;
                changed |= _x509.TryRemove(new KeyValuePair<(string, string), CachedX509>(key, cached));
            }
            else if (cached.ExpiresAt <= now)
            {
                AgentLog.X509Expired(_log, cached.SpiffeId);
                changed |= _x509.TryRemove(new KeyValuePair<(string, string), CachedX509>(key, cached));
            }
        }
        foreach (var (key, jwt) in _jwt)
        {
            var instance = _tracker.Get(key.Instance);
            var revoked = jwt.Jti.Length > 0 && _state.Revocations.IsJtiRevoked(jwt.Jti);
            if (revoked || !snapshot.Entries.ContainsKey(key.Entry) || jwt.ExpiresAt <= now || instance is null || !instance.IsCurrent(jwt.Epoch))
            {
                revokedJwt += revoked ? 1 : 0;
                _jwt.TryRemove(new KeyValuePair<(string, string, string), CachedJwt>(key, jwt));
            }
        }
        foreach (var (key, d) in _denials)
        {
            if (d.RetryAt <= now || _tracker.Get(key.Instance) is null)
            {
                _denials.TryRemove(new KeyValuePair<(string, string), X509Denial>(key, d));
            }
        }
        if (revokedX509 + revokedJwt > 0)
        {
            AgentLog.RevokedDropped(_log, revokedX509, revokedJwt);
        }
        var due = new List<SignItem>();
        foreach (var c in _x509.Values)
        {
            if ((c.RotateAt <= now || (snapshot.Entries.TryGetValue(c.Entry.Id, out var e) && e.Revision != c.Entry.Revision))
                && _tracker.Get(c.InstanceId) is { OpenStreams: > 0 } instance && instance.Current is { Proto: { } proto, Epoch: var epoch }
                && epoch == c.Epoch && snapshot.Entries.TryGetValue(c.Entry.Id, out var entry))
            {
                due.Add(new SignItem(entry, instance, epoch, proto));
            }
        }
        if (due.Count > 0 && now >= _retryAt)
        {
            await SignAsync(due, force: false, ct).ConfigureAwait(false);
            changed = true;
        }
        return changed;
    }

    /// <summary>
    /// When the cache next needs a maintenance pass on its own (no state change): the earliest rotation of an SVID
    /// watched by an open stream, or expiry of one that is not, but not before signing may be retried after a failure.
    /// </summary>
    public DateTimeOffset NextDue(DateTimeOffset now)
    {
        var next = _x509.Values
            .Select(c => _tracker.Get(c.InstanceId) is { OpenStreams: > 0 } ? c.RotateAt : c.ExpiresAt)
            .DefaultIfEmpty(now + TimeSpan.FromSeconds(1)).Min();
        return next > _retryAt ? next : _retryAt;
    }

    /// <summary>
    /// A JWT-SVID of this instance for the entry and audience: from the cache until its half-life, else minted by the
    /// server with the instance's evidence and bound to the instance's current X.509-SVID for that entry (obtained
    /// first if it has none). Throws <see cref="WritException"/>: <see cref="WorkloadErrors.IssuanceDenied"/> when the
    /// server refuses (the message carries the decision id), <see cref="WorkloadErrors.ServerUnavailable"/> when nothing
    /// can be had now, <see cref="WorkloadErrors.EvidenceChanged"/> when the instance drifted meanwhile.
    /// </summary>
    public async Task<CachedJwt> GetJwtAsync(WorkloadInstance instance, Entry entry, IReadOnlyList<string> audience, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(instance);
        ArgumentNullException.ThrowIfNull(entry);
        var key = (entry.Id, instance.Id, audience.Count == 1 ? audience[0]
            : string.Join('\n', audience.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal)));
        var now = _time.GetUtcNow();
        var (_, _, epoch) = instance.Current;
        var cached = _jwt.TryGetValue(key, out var c) && c.Epoch == epoch && !(c.Jti.Length > 0 && _state.Revocations.IsJtiRevoked(c.Jti)) ? c : null;
        if (cached is not null && cached.RefreshAt > now && instance.IsCurrent(epoch))
        {
            return cached;
        }
        var x509 = await GetX509Async(instance, [entry], ct).ConfigureAwait(false);
        var (_, proto, mintEpoch) = instance.Current;
        if (proto is null || mintEpoch != epoch)
        {
            throw new WritException(WorkloadErrors.EvidenceChanged, WritErrorKind.Unauthenticated, "the workload's evidence changed while its token was prepared; retry");
        }
        if (x509.Svids.Count == 0)
        {
            if (cached is not null && cached.ExpiresAt > now)
            {
                return cached;   // the server is away: the cached token is still valid
            }
            if (x509.Denials.Count > 0)
            {
                throw new WritException(WorkloadErrors.IssuanceDenied, WritErrorKind.PermissionDenied, x509.Denials[0].Message);
            }
            throw new WritException(WorkloadErrors.ServerUnavailable, WritErrorKind.Unavailable, "the server is unreachable and no cached JWT-SVID is valid; retry with backoff");
        }
        var leaf = x509.Svids[0];
        var request = new MintJwtSvidRequest { EntryId = entry.Id, Evidence = proto, BoundCertSha256 = ByteString.CopyFrom(leaf.LeafSha256) };
        request.Audience.AddRange(audience);
        MintJwtSvidResponse r;
        try
        {
            r = await _client().MintJwtSvidAsync(request, cancellationToken: ct).ConfigureAwait(false);
        }
        catch (RpcException e)
        {
            if (_classify(e) is { } fatal)
            {
                throw fatal;
            }
            if (e.StatusCode is StatusCode.Unavailable or StatusCode.DeadlineExceeded or StatusCode.Internal or StatusCode.Unknown
                && cached is not null && cached.ExpiresAt > now)
            {
                return cached;   // the server is away: the cached token is still valid
            }
            // The server's own code (WRIT-ISSUE-DENIED, WRIT-ISSUE-RATE-LIMITED…) is relayed; a status without one is named here.
            var kind = WorkloadErrors.KindOf(e.StatusCode);
            var (serverCode, message) = WritStatus.Read(e);
            throw new WritException(serverCode ?? kind switch
            {
                WritErrorKind.PermissionDenied => WorkloadErrors.IssuanceDenied,
                WritErrorKind.Unavailable or WritErrorKind.DeadlineExceeded => WorkloadErrors.ServerUnavailable,
                _ => WorkloadErrors.ServerRefused,
            }, kind, message.Length > 0 ? message : $"refused by the server ({e.StatusCode})", e);
        }
        var exp = DateTimeOffset.FromUnixTimeSeconds(r.ExpiresAtUnix);
        var jti = r.Jti.Length > 0 ? r.Jti : JtiOf(r.Token);
        if (!instance.TryRecordJti(epoch, jti, exp))
        {
            _tracker.ReportStale(instance, null, jti.Length > 0 ? jti : null);
            throw new WritException(WorkloadErrors.EvidenceChanged, WritErrorKind.Unauthenticated, "the workload's evidence changed while its token was minted; retry");
        }
        var jwt = new CachedJwt(r.SpiffeId, r.Token, exp, now + ((exp - now) / 2), jti, instance.Id, epoch, leaf.LeafSha256, entry.Id);
        Issued.RecordJti(jti, instance, epoch, exp, now);
        _jwt[key] = jwt;
        return jwt;
    }

    /// <summary>The <c>jti</c> claim of a compact JWT ("" if it has none or cannot be read).</summary>
    public static string JtiOf(string token)
    {
        var parts = (token ?? "").Split('.');
        if (parts.Length != 3)
        {
            return "";
        }
        try
        {
            using var doc = JsonDocument.Parse(Base64Url.DecodeFromChars(parts[1]));
            return doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("jti", out var j) && j.ValueKind == JsonValueKind.String
                ? j.GetString() ?? "" : "";
        }
        catch (Exception e) when (e is FormatException or JsonException)
        {
            return "";
        }
    }
}
