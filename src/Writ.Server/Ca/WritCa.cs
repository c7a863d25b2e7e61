using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging;
using Writ.Server.Ca.Journal;
using Writ.Server.Ca.Rotation;
using Writ.Server.Ca.Signing;
using Writ.Server.Ca.Upstream;
using Writ.Server.Keys;
using Writ.Server.Storage;
using Writ.Spiffe;
using Writ.Spiffe.Bundles;
using Writ.Spiffe.X509;

namespace Writ.Server.Ca;

/// <summary>
/// The server's certificate authority: X.509 authorities and JWT signing keys, rotated the way SPIRE does it
/// (<see cref="AuthorityRotation{T}"/>: prepare the next at half its lifetime, at most 30 days before expiry, and publish it
/// in the bundle; let it sign from 1/6 remaining, at most 7 days; prune expired ones after a safety margin), and the trust
/// bundle built from them. A prepared authority never signs in the pass that published it, and a pass whose store writes
/// fail takes no effect. Keys live in the key manager; the journal (certificates, public keys, states) in the store.
/// </summary>
/// <remarks>
/// A façade over its parts: <see cref="CaJournalStore"/> (persisted state), one <see cref="AuthorityRotation{T}"/> per kind
/// (<see cref="X509AuthorityKind"/>, <see cref="JwtAuthorityKind"/>), the <see cref="IUpstreamAuthority"/> above the X.509
/// authorities (if any), <see cref="CaSigner"/> and <see cref="BundlePublisher"/>.
/// </remarks>
public sealed class WritCa
{
    private readonly TrustDomain _td;
    private readonly IKeyManager _keys;
    private readonly TimeProvider _time;
    private readonly ILogger _log;
    private readonly IUpstreamAuthority? _upstream;
    private readonly CaJournalStore _journalStore;
    private readonly AuthorityRotation<X509AuthorityRecord> _x509Rotation;
    private readonly AuthorityRotation<JwtAuthorityRecord> _jwtRotation;
    private readonly CaSigner _signer;
    private readonly BundlePublisher _bundles;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private CaJournalDocument _journal = CaJournalDocument.Empty;

    public WritCa(TrustDomain td, CaOptions options, IKeyManager keys, IWritStore store, TimeProvider time, ILogger<WritCa> log)
        : this(td, options, keys, store, time, log, options?.Upstream is { } up ? new DiskUpstreamAuthority(up) : null)
    {
    }

    /// <param name="upstream">The CA that signs this CA's X.509 authorities as intermediates; null: they are self-signed roots.</param>
    public WritCa(TrustDomain td, CaOptions options, IKeyManager keys, IWritStore store, TimeProvider time, ILogger<WritCa> log, IUpstreamAuthority? upstream)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(keys);
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(time);
        ArgumentNullException.ThrowIfNull(log);
        if (td.IsZero)
        {
            throw new ArgumentException("the CA needs a trust domain: parse one first", nameof(td));
        }
        if (options.CaTtl < TimeSpan.FromMinutes(1) || options.JwtKeyTtl < TimeSpan.FromMinutes(1))
        {
            throw new ArgumentException($"CA TTL ({options.CaTtl}) and JWT key TTL ({options.JwtKeyTtl}) must each be at least 1 minute: rotation prepares at half and switches at 5/6 of them", nameof(options));
        }
        if (options.PruneMargin < TimeSpan.Zero || options.RefreshHint <= TimeSpan.Zero)
        {
            throw new ArgumentException("CA prune margin must not be negative and the bundle refresh hint must be positive", nameof(options));
        }
        _td = td;
        ServerId = options.ServerId;
        _keys = keys;
        _time = time;
        _log = log;
        _upstream = upstream;
        _journalStore = new CaJournalStore(store, time, options.ServerId);
        _x509Rotation = new(new X509AuthorityKind(td, options, keys, upstream, log), options.PruneMargin);
        _jwtRotation = new(new JwtAuthorityKind(options, keys, log), options.PruneMargin);
        _signer = new CaSigner(td, keys, time) { Issuer = options.JwtIssuer };
        _bundles = new BundlePublisher(td, store, _journalStore, options.RefreshHint, options.PruneMargin, time, log);
    }

    /// <summary>Raised after the published bundle changed (new authority prepared, pruned, ...).</summary>
    public event Action<TrustBundle>? BundleChanged;

    public TrustDomain TrustDomain => _td;

    /// <summary>This server's id among those sharing the store (issue #16), or null for a CA without one.</summary>
    public string? ServerId { get; }

    public TrustBundle Bundle => _bundles.Current ?? throw new InvalidOperationException("the CA is not initialized: call InitializeAsync first");

    public long BundleSequence => _bundles.Sequence;

    /// <summary>
    /// The certificates an SVID chain may carry between leaf and root: the intermediates of every authority still in the journal
    /// (with an upstream CA), so SVIDs signed before a rotation keep validating until they expire.
    /// </summary>
    /// With other servers on the store (issue #16), theirs follow this server's: an SVID any of them signed validates here.
    public IReadOnlyList<X509Certificate2> Intermediates => _intermediates;

    private IReadOnlyList<X509Certificate2> _intermediates = [];

    /// <summary>The name of this CA's journal in the store: <c>ca/&lt;server id&gt;</c>, or <c>ca</c> without a server id.</summary>
    public string JournalName => _journalStore.OwnName;

    /// <summary>The authorities of this server's journal and of the other servers' (as last read), by journal name.</summary>
    public IReadOnlyList<(string Name, CaJournalDocument Journal)> Journals => [(JournalName, _journal), .. _bundles.Others];

    public async Task InitializeAsync(CancellationToken ct)
    {
        // Check the upstream CA before anything is generated or written: bad files must change nothing.
        if (_upstream is not null)
        {
            _bundles.UpstreamRoots = await _upstream.ChainAsync(ct).ConfigureAwait(false);
            await _upstream.VerifyAsync(_time.GetUtcNow(), ct).ConfigureAwait(false);
        }
        // A store made by one server before issue #16: its journal becomes this server's if (and only if) it holds its keys.
        await _journalStore.AdoptLegacyAsync(_keys, _log, ct).ConfigureAwait(false);
        var stored = await _journalStore.LoadAsync(ct).ConfigureAwait(false);
        await _bundles.LoadSequenceAsync(ct).ConfigureAwait(false);
        (_journal, var orphans) = await CaJournalStore.ReconcileAsync(stored, _keys, _upstream is not null, _log, ct).ConfigureAwait(false);
        await RotateAsync(ct).ConfigureAwait(false);
        // Only now that the journal without them is stored: keys of dropped authorities would otherwise stay forever.
        foreach (var id in orphans)
        {
            await CaKeys.DeleteAsync(_keys, id, _log, ct).ConfigureAwait(false);
        }
    }

    /// <summary>One pass of the rotation state machine for both kinds. Call periodically (e.g. every 10 s).</summary>
    public async Task RotateAsync(CancellationToken ct)
    {
        await _gate.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            var now = _time.GetUtcNow();
            var before = _journal;
            var x509 = before.X509.ToList();
            var jwt = before.Jwt.ToList();
            List<X509AuthorityRecord> prunedX509;
            List<JwtAuthorityRecord> prunedJwt;
            CaJournalDocument next;
            TrustBundle? published = null;
            try
            {
                var changed = await _x509Rotation.AdvanceAsync(x509, now, ct).ConfigureAwait(false);
                changed |= await _jwtRotation.AdvanceAsync(jwt, now, ct).ConfigureAwait(false);
                prunedX509 = _x509Rotation.Prune(x509, now);
                prunedJwt = _jwtRotation.Prune(jwt, now);
                changed |= prunedX509.Count + prunedJwt.Count > 0;

                next = new CaJournalDocument(x509, jwt);
                if (changed || _bundles.Current is null)
                {
                    await _journalStore.SaveAsync(next, ct).ConfigureAwait(false);
                }
                // Every pass merges the other servers' journals too (and prunes expired authorities of servers that are gone);
                // a new authority of this server is in the stored bundle before the signer below may load it.
                published = await _bundles.PublishAsync(next, ct).ConfigureAwait(false);
            }
            catch
            {
                // Nothing of this pass took effect: keep the previous state, so the next pass redoes it and publishes
                // before anything signs, and drop the keys it generated so they do not pile up in the key manager.
                var known = before.X509.Select(a => a.KeyId).Concat(before.Jwt.Select(a => a.KeyId)).ToHashSet(StringComparer.Ordinal);
                foreach (var id in x509.Select(a => a.KeyId).Concat(jwt.Select(a => a.KeyId)).Where(id => !known.Contains(id)))
                {
                    await CaKeys.DeleteAsync(_keys, id, _log, CancellationToken.None).ConfigureAwait(false);
                }
                throw;
            }

            _journal = next;
            await _signer.LoadAsync(next, ct).ConfigureAwait(false);
            _intermediates = [.. _signer.Intermediates, .. _bundles.OtherIntermediates];

            // The journal no longer names them: their private keys can go (SPIRE reuses two key slots; we delete).
            _x509Rotation.Pruned(prunedX509);
            _jwtRotation.Pruned(prunedJwt);
            foreach (var id in prunedX509.Select(a => a.KeyId).Concat(prunedJwt.Select(a => a.KeyId)))
            {
                await CaKeys.DeleteAsync(_keys, id, _log, ct).ConfigureAwait(false);
            }
            if (published is not null)
            {
                BundleChanged?.Invoke(published);
            }
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>
    /// Takes the stored bundle when another server sharing the store changed it (its sequence moved), with the other servers'
    /// intermediates, and raises <see cref="BundleChanged"/>. Cheap when nothing changed (one row read): poll it, or call it
    /// when told of a change (LISTEN/NOTIFY). True when the bundle changed.
    /// </summary>
    public async Task<bool> ReloadBundleAsync(CancellationToken ct)
    {
        TrustBundle? changed;
        await _gate.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            changed = await _bundles.ReloadAsync(ct).ConfigureAwait(false);
            if (changed is not null)
            {
                _intermediates = [.. _signer.Intermediates, .. _bundles.OtherIntermediates];
                ServerLog.BundleReloaded(_log, changed.Sequence ?? 0);
            }
        }
        finally
        {
            _gate.Release();
        }
        if (changed is not null)
        {
            BundleChanged?.Invoke(changed);
        }
        return changed is not null;
    }

    /// <summary>
    /// The trust domain the CA journals in <paramref name="store"/> (every server's) were made for (the URI SAN of its X.509 authorities),
    /// or null when the store has no CA yet. Data from before the trust domain was recorded is bound by this.
    /// </summary>
    public static Task<TrustDomain?> JournalTrustDomainAsync(IWritStore store, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(store);
        return CaJournalStore.TrustDomainAsync(store, ct);
    }

    private CaException? _halted;

    /// <summary>Why this CA signs nothing any more (null: it signs), e.g. a duplicate server id (issue #16).</summary>
    public string? Halted => Volatile.Read(ref _halted)?.Message;

    /// <summary>
    /// Stops all issuance (X.509-SVIDs, agent SVIDs, JWT-SVIDs) until the process restarts: each call throws a
    /// <see cref="CaException"/> (Unavailable) with this code and message. True the first time.
    /// </summary>
    public bool Halt(string code, string message) =>
        Interlocked.CompareExchange(ref _halted, new CaException(code, Protocol.Errors.WritErrorKind.Unavailable, message), null) is null;

    private void ThrowIfHalted()
    {
        if (Volatile.Read(ref _halted) is { } h)
        {
            throw new CaException(h.Code, Protocol.Errors.WritErrorKind.Unavailable, h.Message);
        }
    }

    /// <summary>Signs an X.509-SVID for the subject key with the active authority. Returns the chain, leaf first.</summary>
    public IReadOnlyList<X509Certificate2> SignX509Svid(SpiffeId id, PublicKey subjectKey, TimeSpan ttl, IReadOnlyList<string>? dnsNames = null)
    {
        ThrowIfHalted();
        return _signer.SignX509Svid(id, subjectKey, ttl, dnsNames);
    }

    /// <summary>
    /// The same signing, returning DER (leaf, then the intermediates) — what goes on the wire — without parsing the
    /// signed certificate back into an object: that parse costs more than both ECDSA operations of an issuance.
    /// </summary>
    public (SignedX509Leaf Leaf, IReadOnlyList<byte[]> ChainAboveLeaf) SignX509SvidDer(SpiffeId id, PublicKey subjectKey, TimeSpan ttl,
        IReadOnlyList<string>? dnsNames = null)
    {
        ThrowIfHalted();
        return _signer.SignX509SvidDer(id, subjectKey, ttl, dnsNames);
    }

    /// <summary>Mints a JWT-SVID with the active JWT key. TTL is capped by the key's own lifetime.</summary>
    public (string Token, DateTimeOffset ExpiresAt) MintJwtSvid(SpiffeId id, IReadOnlyList<string> audience, TimeSpan ttl,
        IReadOnlyDictionary<string, object>? extraClaims = null)
    {
        ThrowIfHalted();
        return _signer.MintJwtSvid(id, audience, ttl, extraClaims);
    }

    /// <summary>
    /// A JWT-SVID with a fresh <c>jti</c> (128 random bits, base64url) and, when <paramref name="boundCertSha256"/> is
    /// given, bound to that X.509 certificate: claim <c>cnf</c> = {"x5t#S256": base64url(SHA-256 of the leaf DER)}
    /// (RFC 8705 §3.1). Without it the token is a bearer token.
    /// </summary>
    public (string Token, DateTimeOffset ExpiresAt, string Jti) MintJwtSvidWithId(SpiffeId id, IReadOnlyList<string> audience, TimeSpan ttl, byte[]? boundCertSha256)
    {
        ThrowIfHalted();
        if (boundCertSha256 is { Length: not 32 })
        {
            throw new ArgumentException("a certificate thumbprint (x5t#S256) is the 32-byte SHA-256 of the leaf DER", nameof(boundCertSha256));
        }
        var jti = CaCertificates.Base64Url(RandomNumberGenerator.GetBytes(16));
        var claims = new Dictionary<string, object>(StringComparer.Ordinal) { ["jti"] = jti };
        if (boundCertSha256 is not null)
        {
            claims["cnf"] = new Dictionary<string, object>(StringComparer.Ordinal) { ["x5t#S256"] = CaCertificates.Base64Url(boundCertSha256) };
        }
        var (token, exp) = MintJwtSvid(id, audience, ttl, claims);
        return (token, exp, jti);
    }

    /// <summary>
    /// The active X.509 authority (key id, certificate, key): the CRL is signed with it (Revocation/RevocationService).
    /// Internal: the key never leaves the server assembly.
    /// </summary>
    internal (string KeyId, X509Certificate2 Certificate, AsymmetricAlgorithm Key) ActiveX509Authority
    {
        get
        {
            var a = _signer.ActiveX509;
            return (a.KeyId, a.Certificate, a.Key);
        }
    }

    /// <summary>
    /// The retired X.509 authorities whose SVIDs may still be valid now (a leaf never outlives its authority): each
    /// publishes a CRL beside the active authority's until then (issue #13 item 9c).
    /// </summary>
    internal IReadOnlyList<X509AuthorityKey> RetiredX509Authorities => _signer.RetiredX509(_time.GetUtcNow());

    public DateTimeOffset ActiveX509NotAfter => _signer.ActiveX509NotAfter;
}
