using System.Buffers;
using System.Globalization;
using System.Numerics;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Writ.Server.Ca;
using Writ.Server.Storage;

namespace Writ.Server.Revocation;

/// <summary>The CA-signed CRL as currently published.</summary>
public sealed record CrlSnapshot(byte[] Der, BigInteger Number, DateTimeOffset ThisUpdate, DateTimeOffset NextUpdate, string AuthorityKeyId, int Count)
{
    internal long Version { get; init; }

    /// <summary>The CRLs of the retired X.509 authorities whose SVIDs may still be valid, published beside <see cref="Der"/>.</summary>
    public IReadOnlyList<AuthorityCrl> Retired { get; init; } = [];

    /// <summary>
    /// The CRLs the other servers on the store signed with their own authorities (issue #16), as they published them: an
    /// SVID another server issued is checked against its issuer's CRL, so every agent gets every server's.
    /// </summary>
    public IReadOnlyList<byte[]> OtherServers { get; init; } = [];

    /// <summary>Moves whenever <see cref="OtherServers"/> changed (a stream pushes the bundle again).</summary>
    internal long OtherServersVersion { get; init; }
}

/// <summary>
/// Revocation: finds what to revoke in the issued-credential index (<see cref="ILedgerStore.IssuedAsync"/>), records it
/// (<see cref="IRevocationStore.RevokeAsync"/>: ledger events in the same transaction, store revision bumped so every
/// agent Sync stream wakes and pushes it), keeps an in-memory copy of the unexpired revocations (kept current from the
/// store revision, also for revocations made by other servers) and the CRL built from it. It holds state only: the
/// loop that keeps the set current and prunes it is the hosted <see cref="RevocationWatcher"/>.
/// </summary>
public sealed class RevocationService
{
    /// <summary>CRL nextUpdate = thisUpdate + this. The CRL is re-signed at half of it even when nothing changed, and at once when revocations change or the CA rotates.</summary>
    public static readonly TimeSpan CrlValidity = TimeSpan.FromHours(1);

    /// <summary>Revocations are forgotten this long after the credential they revoke expired.</summary>
    public static readonly TimeSpan PruneMargin = TimeSpan.FromHours(1);

    public const int MaxReportItems = 10_000;

    private readonly IWritStore _store;
    private readonly WritCa _ca;
    private readonly TimeProvider _time;
    private readonly ILogger _log;
    private readonly SemaphoreSlim _refreshGate = new(1, 1);
    private readonly Lock _lock = new();

    /// <summary>Where revocations are counted (set by <see cref="Hosting.ServerContext"/>).</summary>
    internal Telemetry.WritServerMetrics Metrics { get; set; } = Telemetry.WritServerMetrics.Unhosted;
    // Written under _lock; read without it by IsSerialRevoked (every Sync stream's re-authentication, issue #16 fan-out).
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, RevocationRecord> _serials = new(StringComparer.Ordinal);
    private readonly Dictionary<string, RevocationRecord> _jtis = new(StringComparer.Ordinal);
    private long _revision = -1;   // the store revision the cache is complete up to (-1: not loaded)
    private long _version;         // bumped whenever the cached set changes
    private CrlSnapshot? _crl;
    private BigInteger _lastCrlNumber;
    private IReadOnlyList<ServerCrl> _otherCrls = [];
    private long _otherCrlsVersion;
    private BigInteger _publishedCrlNumber = -1;
    private readonly CancellationTokenSource _stopping = new();

    public RevocationService(IWritStore store, WritCa ca, TimeProvider time, ILogger<RevocationService> log)
    {
        _store = store ?? throw new ArgumentNullException(nameof(store));
        _ca = ca ?? throw new ArgumentNullException(nameof(ca));
        _time = time ?? throw new ArgumentNullException(nameof(time));
        _log = log ?? throw new ArgumentNullException(nameof(log));
    }

    /// <summary>
    /// The server is stopping: no CRL is signed any more (a process on its way out must not publish CRLs next to the
    /// server that replaces it).
    /// </summary>
    public void Stop() => _stopping.Cancel();

    /// <summary>The last CRL built, or null before the first one (callers that can wait use <see cref="CrlAsync"/>).</summary>
    public CrlSnapshot? CachedCrl => Volatile.Read(ref _crl);

    // ------------------------------------------------------------------ revoking

    /// <summary>
    /// Revokes what the target names. Throws <see cref="StoreNotFoundException"/> when nothing unexpired matches; returns
    /// the credentials newly revoked (empty when all of them were revoked already).
    /// </summary>
    public async Task<IReadOnlyList<RevocationRecord>> RevokeAsync(RevocationTarget target, string reason, string actor, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(target);
        var creds = await ResolveAsync(target, ct).ConfigureAwait(false);
        if (creds.Count == 0)
        {
            throw new StoreNotFoundException(target.Kind switch
            {
                RevocationTargetKind.Serial => $"no unexpired X.509-SVID with serial {target.Value} was issued by this server: check it with 'openssl x509 -noout -serial -in FILE'",
                RevocationTargetKind.Jti => $"no unexpired JWT-SVID with jti {target.Value} was issued by this server: check the token's jti claim",
                _ => $"nothing to revoke: no unexpired credential was issued for {target}",
            });
        }
        return await RevokeCredentialsAsync(creds, reason, actor, [], target.ToString(), ct).ConfigureAwait(false);
    }

    /// <summary>An agent was banned or evicted: its own SVID and every unexpired credential issued through it.</summary>
    public async Task<IReadOnlyList<RevocationRecord>> RevokeAgentAsync(AttestedNode node, string reason, string actor, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(node);
        var creds = await AgentCredentialsAsync(node.SpiffeId, node, ct).ConfigureAwait(false);
        return await RevokeCredentialsAsync(creds, reason, actor, [], $"agent {node.SpiffeId}", ct).ConfigureAwait(false);
    }

    /// <summary>
    /// An opted-in entry's identity changed (SPIFFE ID, DNS names, selectors, parent) or its pool shrank: every pooled
    /// SVID of it not yet handed out (issue #16 item 5), so no agent hands out one signed for what the entry was.
    /// </summary>
    public async Task<IReadOnlyList<RevocationRecord>> RevokeUnusedPooledAsync(string entryId, string reason, string actor, CancellationToken ct)
    {
        var creds = await _store.Ledger.IssuedAsync(new IssuedFilter(EntryId: entryId), _time.GetUtcNow(), ct).ConfigureAwait(false);
        var pooled = new List<IssuedCredential>();
        foreach (var c in creds.Where(c => c.Kind == "x509"))
        {
            if (await _store.PooledSvids.GetAsync(c.Id, ct).ConfigureAwait(false) is { UsedAt: null })
                pooled.Add(c);
        }
        return pooled.Count == 0 ? [] : await RevokeCredentialsAsync(pooled, reason, actor, [], $"unused pooled SVIDs of entry {entryId}", ct).ConfigureAwait(false);
    }

    /// <summary>An entry was deleted: every unexpired credential issued for it.</summary>
    public async Task<IReadOnlyList<RevocationRecord>> RevokeEntryAsync(string entryId, string reason, string actor, CancellationToken ct)
    {
        var creds = await _store.Ledger.IssuedAsync(new IssuedFilter(EntryId: entryId), _time.GetUtcNow(), ct).ConfigureAwait(false);
        return await RevokeCredentialsAsync(creds, reason, actor, [], $"entry {entryId}", ct).ConfigureAwait(false);
    }

    /// <summary>
    /// An agent reports a workload instance gone. Revokes the listed serials/jtis and whatever else the ledger shows as
    /// issued to that instance — but only credentials the ledger says were issued THROUGH THIS AGENT: anything else
    /// (another agent's credential, an unknown id) is refused, counted and logged, never revoked.
    /// </summary>
    public async Task<InstanceGoneResult> InstanceGoneAsync(string agentId, string instanceId, IReadOnlyCollection<string> serials,
        IReadOnlyCollection<string> jtis, string reason, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(agentId);
        ArgumentNullException.ThrowIfNull(serials);
        ArgumentNullException.ThrowIfNull(jtis);
        var now = _time.GetUtcNow();
        var creds = new Dictionary<(string, string), IssuedCredential>();
        var refused = 0;
        async Task AddAsync(string kind, string id)
        {
            var found = await _store.Ledger.IssuedAsync(new IssuedFilter(Id: id), now, ct).ConfigureAwait(false);
            // Issued through this agent, and a workload's: an agent never revokes its own SVID this way (it would lock itself out).
            var mine = found.Where(c => c.Kind == kind && string.Equals(c.AgentId, agentId, StringComparison.Ordinal)
                && !string.Equals(c.SpiffeId, agentId, StringComparison.Ordinal)).ToList();
            if (mine.Count == 0)
            {
                refused++;
            }
            foreach (var c in mine)
            {
                creds.TryAdd((c.Kind, c.Id), c);
            }
        }
        foreach (var s in serials.Distinct(StringComparer.OrdinalIgnoreCase))
        {
            if (RevocationTarget.TryNormalizeSerial(s, out var serial))
            {
                await AddAsync("x509", serial).ConfigureAwait(false);
            }
            else
            {
                refused++;
            }
        }
        foreach (var j in jtis.Distinct(StringComparer.Ordinal))
        {
            if (j.Length is > 0 and <= 2048)
            {
                await AddAsync("jwt", j).ConfigureAwait(false);
            }
            else
            {
                refused++;
            }
        }
        // Everything else the ledger holds for the instance only when it EXITED: nothing can legitimately be issued to a
        // dead instance afterwards (a recycled pid has another start time, so another id). After a drift the instance
        // lives on and may already hold fresh SVIDs issued from its new evidence before this report arrived: then only
        // the credentials the report lists are revoked.
        if (instanceId.Length > 0 && string.Equals(reason, "exited", StringComparison.Ordinal))
        {
            foreach (var c in (await _store.Ledger.IssuedAsync(new IssuedFilter(AgentId: agentId, InstanceId: instanceId), now, ct).ConfigureAwait(false))
                .Where(c => !string.Equals(c.SpiffeId, agentId, StringComparison.Ordinal)))
            {
                creds.TryAdd((c.Kind, c.Id), c);
            }
        }
        if (refused > 0)
        {
            ServerLog.InstanceGoneRefused(_log, agentId, instanceId, reason, refused);
        }
        var gone = new LedgerEvent
        {
            At = now,
            Kind = "instance.gone",
            Actor = agentId,
            Subject = instanceId,
            DataJson = Json(w =>
            {
                w.WriteNumber("credentials", creds.Count);
                w.WriteString("reason", reason);
                w.WriteNumber("refused", refused);
            }),
        };
        var revoked = await RevokeCredentialsAsync([.. creds.Values], $"instance gone: {reason}", agentId, [gone], $"instance {instanceId}", ct).ConfigureAwait(false);
        ServerLog.InstanceGone(_log, agentId, instanceId, reason, revoked.Count);
        return new InstanceGoneResult(revoked, refused);
    }

    private async Task<IReadOnlyList<IssuedCredential>> ResolveAsync(RevocationTarget target, CancellationToken ct)
    {
        var now = _time.GetUtcNow();
        var ledger = _store.Ledger;
        switch (target.Kind)
        {
            case RevocationTargetKind.Serial:
            {
                var found = (await ledger.IssuedAsync(new IssuedFilter(Id: target.Value), now, ct).ConfigureAwait(false)).Where(c => c.Kind == "x509").ToList();
                if (found.Count == 0)
                {
                    // An agent's own SVID is known from its node record even where the ledger has no issued record of it.
                    var nodes = await _store.Nodes.ListAsync(ct).ConfigureAwait(false);
                    found.AddRange(nodes.Where(n => SameSerial(n.SerialNumber, target.Value)).Select(n => NodeCredential(n)).OfType<IssuedCredential>()
                        .Where(c => c.ExpiresAt > now));
                }
                return found;
            }
            case RevocationTargetKind.Jti:
                return [.. (await ledger.IssuedAsync(new IssuedFilter(Id: target.Value), now, ct).ConfigureAwait(false)).Where(c => c.Kind == "jwt")];
            case RevocationTargetKind.Entry:
                return await ledger.IssuedAsync(new IssuedFilter(EntryId: target.Value), now, ct).ConfigureAwait(false);
            case RevocationTargetKind.SpiffeId:
            {
                var found = (await ledger.IssuedAsync(new IssuedFilter(SpiffeId: target.Value), now, ct).ConfigureAwait(false)).ToList();
                if (await _store.Nodes.GetAsync(target.Value, ct).ConfigureAwait(false) is { } node && NodeCredential(node) is { } own && own.ExpiresAt > now)
                {
                    found.Add(own);
                }
                return found;
            }
            case RevocationTargetKind.Agent:
                return await AgentCredentialsAsync(target.Value, await _store.Nodes.GetAsync(target.Value, ct).ConfigureAwait(false), ct).ConfigureAwait(false);
            default:
                throw new ArgumentOutOfRangeException(nameof(target), target.Kind, "unknown revocation target");
        }
    }

    private async Task<IReadOnlyList<IssuedCredential>> AgentCredentialsAsync(string agentId, AttestedNode? node, CancellationToken ct)
    {
        var now = _time.GetUtcNow();
        var found = new List<IssuedCredential>();
        found.AddRange(await _store.Ledger.IssuedAsync(new IssuedFilter(AgentId: agentId), now, ct).ConfigureAwait(false));
        found.AddRange(await _store.Ledger.IssuedAsync(new IssuedFilter(SpiffeId: agentId), now, ct).ConfigureAwait(false));
        if (node is not null && NodeCredential(node) is { } own && own.ExpiresAt > now)
        {
            found.Add(own);
        }
        return found;
    }

    /// <summary>The agent's current SVID as the node record knows it.</summary>
    private static IssuedCredential? NodeCredential(AttestedNode node) =>
        RevocationTarget.TryNormalizeSerial(node.SerialNumber, out var serial)
            ? new IssuedCredential
            {
                Kind = "x509",
                Id = serial,
                SpiffeId = node.SpiffeId,
                AgentId = node.SpiffeId,
                DecisionId = "",
                IssuedAt = node.UpdatedAt,
                ExpiresAt = node.ExpiresAt,
            }
            : null;

    private static bool SameSerial(string a, string normalized) =>
        RevocationTarget.TryNormalizeSerial(a, out var n) && string.Equals(n, normalized, StringComparison.Ordinal);

    private async Task<IReadOnlyList<RevocationRecord>> RevokeCredentialsAsync(IReadOnlyList<IssuedCredential> credentials, string reason, string actor,
        IReadOnlyList<LedgerEvent> extraAudit, string what, CancellationToken ct)
    {
        reason = string.IsNullOrWhiteSpace(reason) ? "revoked" : reason.Trim();
        var now = _time.GetUtcNow();
        var unique = credentials.DistinctBy(c => (c.Kind, Id: c.Kind == "x509" ? c.Id.ToUpperInvariant() : c.Id)).ToList();
        var records = unique.Select(c => new RevocationRecord
        {
            SerialHex = c.Kind == "x509" ? c.Id.ToUpperInvariant() : null,
            Jti = c.Kind == "jwt" ? c.Id : null,
            SpiffeId = c.SpiffeId,
            EntryId = c.EntryId,
            InstanceId = c.InstanceId,
            RevokedAt = now,
            ExpiresAt = c.ExpiresAt,
            Reason = reason,
        }).ToList();
        // One audit event per credential (same order: the store drops those of credentials revoked already), then the extras.
        var audit = unique.Select(c => new LedgerEvent
        {
            At = now,
            Kind = c.Kind == "x509" ? "svid.revoked" : "jwt.revoked",
            Actor = actor,
            Subject = c.SpiffeId,
            DataJson = Json(w =>
            {
                w.WriteString("agent_id", c.AgentId);
                if (c.EntryId is not null)
                {
                    w.WriteString("entry_id", c.EntryId);
                }
                w.WriteString("expires_at", c.ExpiresAt.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture));
                if (c.InstanceId is not null)
                {
                    w.WriteString("instance_id", c.InstanceId);
                }
                if (c.Kind == "jwt")
                {
                    w.WriteString("jti", c.Id);
                }
                w.WriteString("reason", reason);
                if (c.Kind == "x509")
                {
                    w.WriteString("serial", c.Id.ToUpperInvariant());
                }
            }),
        }).Concat(extraAudit).ToList();
        if (records.Count == 0 && extraAudit.Count == 0)
        {
            return [];
        }
        var stored = await _store.Revocations.RevokeAsync(records, audit, ct).ConfigureAwait(false);
        Apply(stored);
        if (stored.Count > 0)
        {
            ServerLog.Revoked(_log, stored.Count, what, actor, reason);
            Metrics.Revoked(stored.Count, extraAudit.Count > 0 ? "instance_gone" : "admin");
        }
        return stored;
    }

    // ------------------------------------------------------------------ the in-memory deny list

    /// <summary>True when this X.509 serial (hex, any case) is revoked, as far as this server has seen.</summary>
    public bool IsSerialRevoked(string serialHex)
    {
        if (!RevocationTarget.TryNormalizeSerial(serialHex, out var serial))
        {
            return false;
        }
        return _serials.ContainsKey(serial);
    }

    public bool IsJtiRevoked(string jti)
    {
        lock (_lock)
        {
            return _jtis.ContainsKey(jti);
        }
    }

    /// <summary>Makes sure the in-memory set holds every revocation up to this store revision.</summary>
    public async Task EnsureCurrentAsync(long revision, CancellationToken ct)
    {
        if (Interlocked.Read(ref _revision) >= revision && revision >= 0)
        {
            return;
        }
        await _refreshGate.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            var known = Interlocked.Read(ref _revision);
            if (known >= revision && revision >= 0)
            {
                return;
            }
            // The revision first: every revocation at or below it has committed, so the read below sees it.
            var current = await _store.Entries.CurrentRevisionAsync(ct).ConfigureAwait(false);
            var records = known < 0
                ? await _store.Revocations.ListAsync(_time.GetUtcNow(), includeExpired: false, ct).ConfigureAwait(false)
                : await _store.Revocations.SinceAsync(known, ct).ConfigureAwait(false);
            Apply(records);
            Interlocked.Exchange(ref _revision, Math.Max(known, current));
        }
        finally
        {
            _refreshGate.Release();
        }
    }

    private void Apply(IReadOnlyList<RevocationRecord> records)
    {
        if (records.Count == 0)
        {
            return;
        }
        var now = _time.GetUtcNow();
        lock (_lock)
        {
            var changed = false;
            foreach (var r in records.Where(r => r.ExpiresAt > now))
            {
                changed |= r.SerialHex is { } s ? _serials.TryAdd(s, r) : r.Jti is { } j && _jtis.TryAdd(j, r);
            }
            if (changed)
            {
                _version++;
            }
        }
    }

    /// <summary>Unexpired revocations as this server holds them (not from the store).</summary>
    public IReadOnlyList<RevocationRecord> Current()
    {
        var now = _time.GetUtcNow();
        lock (_lock)
        {
            return [.. _serials.Values.Concat(_jtis.Values).Where(r => r.ExpiresAt > now).OrderBy(r => r.Revision)];
        }
    }

    /// <summary>The store revision the in-memory set is complete up to (-1 before the first load).</summary>
    public long Revision => Interlocked.Read(ref _revision);

    /// <summary>Forgets, in the store, revocations of credentials that expired more than <see cref="PruneMargin"/> before <paramref name="now"/>.</summary>
    public async Task<int> PruneAsync(DateTimeOffset now, CancellationToken ct)
    {
        var n = await _store.Revocations.PruneAsync(now - PruneMargin, ct).ConfigureAwait(false);
        if (n > 0)
        {
            ServerLog.RevocationsPruned(_log, n);
        }
        return n;
    }

    // ------------------------------------------------------------------ the CRL

    /// <summary>The CRL for the store as it is now.</summary>
    public async Task<CrlSnapshot> CurrentCrlAsync(CancellationToken ct) =>
        await CrlAsync(await _store.Entries.CurrentRevisionAsync(ct).ConfigureAwait(false), ct).ConfigureAwait(false);

    /// <summary>
    /// The CRL covering every revocation up to this store revision, signed by the CA's active X.509 authority: cached, and
    /// re-signed when the revoked set changed, the authority changed, or half of <see cref="CrlValidity"/> has passed.
    /// </summary>
    public async Task<CrlSnapshot> CrlAsync(long revision, CancellationToken ct)
    {
        _stopping.Token.ThrowIfCancellationRequested();
        await EnsureCurrentAsync(revision, ct).ConfigureAwait(false);
        var (keyId, certificate, key) = _ca.ActiveX509Authority;
        var retired = _ca.RetiredX509Authorities;
        var now = _time.GetUtcNow();
        // Without the lock, the common case of a thousand Sync streams woken by one change: the CRL built is still current.
        if (Volatile.Read(ref _crl) is { } current && current.Version == Volatile.Read(ref _version) && current.OtherServersVersion == Volatile.Read(ref _otherCrlsVersion)
            && current.AuthorityKeyId == keyId && current.Retired.Select(r => r.AuthorityKeyId).SequenceEqual(retired.Select(r => r.KeyId))
            && now < current.ThisUpdate + (CrlValidity / 2) && now >= current.ThisUpdate)
        {
            return current;
        }
        lock (_lock)
        {
            _stopping.Token.ThrowIfCancellationRequested();
            if (_crl is { } c && c.Version == _version && c.AuthorityKeyId == keyId && c.Retired.Select(r => r.AuthorityKeyId).SequenceEqual(retired.Select(r => r.KeyId))
                && now < c.ThisUpdate + (CrlValidity / 2) && now >= c.ThisUpdate)
            {
                if (c.OtherServersVersion != _otherCrlsVersion)
                {
                    // Only the other servers' CRLs moved: this server's own are not signed again (that would make them
                    // publish theirs again, and so on).
                    c = c with { OtherServers = [.. _otherCrls.Select(o => o.Der)], OtherServersVersion = _otherCrlsVersion };
                    Volatile.Write(ref _crl, c);
                }
                return c;
            }
            // Expired credentials need no CRL entry: drop them from the set now.
            foreach (var k in _serials.Where(p => p.Value.ExpiresAt <= now).Select(p => p.Key).ToList())
            {
                _serials.TryRemove(k, out _);
            }
            foreach (var k in _jtis.Where(p => p.Value.ExpiresAt <= now).Select(p => p.Key).ToList())
            {
                _jtis.Remove(k);
            }
            var entries = _serials.Values.OrderBy(r => r.SerialHex, StringComparer.Ordinal).Select(r => new CrlEntry(r.SerialHex!, r.RevokedAt)).ToList();
            // Increasing across restarts and servers: never below the current time in milliseconds.
            var number = BigInteger.Max(_lastCrlNumber + 1, now.ToUnixTimeMilliseconds());
            var thisUpdate = DateTimeOffset.FromUnixTimeSeconds(now.ToUnixTimeSeconds());
            var nextUpdate = thisUpdate + CrlValidity;
            var der = CrlBuilder.Build(certificate, key, entries, number, thisUpdate, nextUpdate);
            _lastCrlNumber = number;
            var crl = new CrlSnapshot(der, number, thisUpdate, nextUpdate, keyId, entries.Count)
            {
                Version = _version,
                Retired = CrlBuilder.BuildRetired(retired, [.. _serials.Values], number, thisUpdate, nextUpdate),
                OtherServers = [.. _otherCrls.Select(o => o.Der)],
                OtherServersVersion = _otherCrlsVersion,
            };
            Volatile.Write(ref _crl, crl);
            ServerLog.CrlBuilt(_log, number.ToString(CultureInfo.InvariantCulture), keyId, entries.Count, nextUpdate);
            return crl;
        }
    }

    // ------------------------------------------------------------------ every server's CRLs (issue #16)

    /// <summary>True once <see cref="Stop"/> was called: no CRL is signed or published any more.</summary>
    public bool Stopped => _stopping.IsCancellationRequested;

    /// <summary>
    /// Publishes this server's CRLs (the active authority's and the retired ones') in the store when a new one was signed
    /// since the last publication. Returns true when it wrote (the caller announces it to the other servers).
    /// </summary>
    public async Task<bool> PublishCrlsAsync(CancellationToken ct)
    {
        if (_ca.ServerId is not { } serverId || CachedCrl is not { } crl || crl.Number == _publishedCrlNumber || Stopped)
        {
            return false;
        }
        var rows = new List<ServerCrl> { new(serverId, crl.AuthorityKeyId, crl.Der, crl.NextUpdate) };
        rows.AddRange(crl.Retired.Where(r => r.AuthorityKeyId != crl.AuthorityKeyId).Select(r => new ServerCrl(serverId, r.AuthorityKeyId, r.Der, crl.NextUpdate)));
        await _store.Servers.PublishCrlsAsync(serverId, rows, ct).ConfigureAwait(false);
        _publishedCrlNumber = crl.Number;
        return true;
    }

    /// <summary>
    /// Reads the CRLs the other servers published (unexpired ones). Returns true when they changed: the next
    /// <see cref="CrlAsync"/> carries them, and the caller wakes the sync streams to push them.
    /// </summary>
    public async Task<bool> RefreshOtherServersCrlsAsync(CancellationToken ct)
    {
        if (_ca.ServerId is not { } serverId)
        {
            return false;
        }
        var others = (await _store.Servers.ListCrlsAsync(_time.GetUtcNow(), ct).ConfigureAwait(false))
            .Where(c => !string.Equals(c.ServerId, serverId, StringComparison.Ordinal)).ToList();
        lock (_lock)
        {
            if (others.Count == _otherCrls.Count && others.Zip(_otherCrls).All(p => p.First.Der.AsSpan().SequenceEqual(p.Second.Der)))
            {
                return false;
            }
            _otherCrls = others;
            _otherCrlsVersion++;
        }
        ServerLog.OtherServersCrlsChanged(_log, others.Count);
        return true;
    }

    private static string Json(Action<Utf8JsonWriter> body)
    {
        var buffer = new ArrayBufferWriter<byte>();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            body(w);
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(buffer.WrittenSpan);
    }
}

/// <summary>What an instance-gone report did: the credentials newly revoked, and how many listed ids were refused.</summary>
public sealed record InstanceGoneResult(IReadOnlyList<RevocationRecord> Revoked, int Refused);
