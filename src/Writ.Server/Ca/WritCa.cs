using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Writ.Server.Keys;
using Writ.Server.Storage;
using Writ.Spiffe;
using Writ.Spiffe.Bundles;
using Writ.Spiffe.Jwt;
using Writ.Spiffe.X509;

namespace Writ.Server.Ca;

/// <summary>
/// The server's certificate authority: X.509 authorities and JWT signing keys, rotated the way SPIRE does it
/// (prepare the next at half its lifetime, at most 30 days before expiry, and publish it in the bundle; let it sign from
/// 1/6 remaining, at most 7 days; prune expired ones after a safety margin), and the trust bundle built from them.
/// A prepared authority never signs in the pass that published it, and a pass whose store writes fail takes no effect.
/// Keys live in the key manager; the journal (certificates, public keys, states) lives in the store.
/// </summary>
public sealed class WritCa
{
    private const string JournalName = "ca";
    private readonly TrustDomain _td;
    private readonly CaOptions _options;
    private readonly IKeyManager _keys;
    private readonly IWritStore _store;
    private readonly TimeProvider _time;
    private readonly ILogger _log;
    private readonly SemaphoreSlim _gate = new(1, 1);

    private CaJournalDocument _journal = CaJournalDocument.Empty;
    private Signer? _x509Signer;
    private JwtSigner? _jwtSigner;
    private IReadOnlyList<X509Certificate2> _intermediates = [];
    private TrustBundle? _bundle;
    private long _sequence;
    private IReadOnlyList<X509Certificate2> _upstreamRoots = [];
    private string? _upstreamExpiryWarnedFor;

    public WritCa(TrustDomain td, CaOptions options, IKeyManager keys, IWritStore store, TimeProvider time, ILogger<WritCa> log)
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
        _options = options;
        _keys = keys;
        _store = store;
        _time = time;
        _log = log;
    }

    /// <summary>Raised after the published bundle changed (new authority prepared, pruned, ...).</summary>
    public event Action<TrustBundle>? BundleChanged;

    public TrustDomain TrustDomain => _td;

    public TrustBundle Bundle => _bundle ?? throw new InvalidOperationException("the CA is not initialized: call InitializeAsync first");

    public long BundleSequence => Interlocked.Read(ref _sequence);

    /// <summary>
    /// The certificates an SVID chain may carry between leaf and root: the intermediates of every authority still in the journal
    /// (with an upstream CA), so SVIDs signed before a rotation keep validating until they expire.
    /// </summary>
    public IReadOnlyList<X509Certificate2> Intermediates => _intermediates;

    public async Task InitializeAsync(CancellationToken ct)
    {
        // Check the upstream CA before anything is generated or written: bad files must change nothing.
        X509Certificate2? upstreamCert = null;
        if (_options.Upstream is { } up)
        {
            _upstreamRoots = LoadUpstreamCertificates(up.CertificatePath);
            (upstreamCert, var upstreamKey, _) = LoadUpstream(up, _time.GetUtcNow());
            upstreamKey?.Dispose();
        }
        var stored = await _store.CaJournal.GetAsync(JournalName, ct).ConfigureAwait(false);
        if (stored is not null)
        {
            _journal = ParseJournal(stored.Data);
        }
        var storedBundle = await _store.Bundles.GetAsync(_td.Name, ct).ConfigureAwait(false);
        _sequence = storedBundle?.Sequence ?? 0;

        // Drop journal entries whose keys are gone (memory key manager after a restart, or a lost key file), and X.509
        // authorities of the other mode (self-signed vs. signed by the configured upstream): nothing could verify their leaves.
        var x509 = new List<X509AuthorityRecord>();
        var orphans = new List<string>();
        foreach (var a in _journal.X509)
        {
            var key = await _keys.GetAsync(a.KeyId, ct).ConfigureAwait(false);
            if (key is null)
            {
                ServerLog.CaAuthorityDropped(_log, "X.509", a.KeyId, $"its private key is not in the {_keys.Name} key manager");
            }
            else if (!SameSpki(key, CertSpki(a.ChainDerBase64[0])))
            {
                // Whoever can write the store must not be able to add a trust anchor: only a certificate made for a key
                // we hold is published.
                ServerLog.CaAuthorityDropped(_log, "X.509", a.KeyId, MismatchReason);
            }
            else if (!ChainLinksUp(a))
            {
                ServerLog.CaAuthorityDropped(_log, "X.509", a.KeyId,
                    "its recorded certificate chain does not link up by signatures (the store was altered)");
            }
            else if (!FitsMode(a, upstreamCert is not null))
            {
                ServerLog.CaAuthorityDropped(_log, "X.509", a.KeyId, upstreamCert is null
                    ? "it was signed by an upstream CA that is no longer configured"
                    : "it is self-signed but an upstream CA is now configured");
                orphans.Add(a.KeyId);
            }
            else
            {
                // The certificate, not the record, says when an authority lives: rotation and pruning follow it.
                using var ca = X509CertificateLoader.LoadCertificate(Convert.FromBase64String(a.ChainDerBase64[0]));
                x509.Add(a with
                {
                    NotBefore = new DateTimeOffset(ca.NotBefore.ToUniversalTime()),
                    NotAfter = new DateTimeOffset(ca.NotAfter.ToUniversalTime()),
                });
            }
        }
        var jwt = new List<JwtAuthorityRecord>();
        foreach (var a in _journal.Jwt)
        {
            var key = await _keys.GetAsync(a.KeyId, ct).ConfigureAwait(false);
            if (key is null)
            {
                ServerLog.CaAuthorityDropped(_log, "JWT", a.KeyId, $"its private key is not in the {_keys.Name} key manager");
            }
            else if (!SameSpki(key, Convert.FromBase64String(a.PublicKeySpkiBase64)))
            {
                ServerLog.CaAuthorityDropped(_log, "JWT", a.KeyId, MismatchReason);
            }
            else
            {
                jwt.Add(a);
            }
        }
        _journal = new CaJournalDocument(x509, jwt);
        await RotateAsync(ct).ConfigureAwait(false);
        // Only now that the journal without them is stored: keys of dropped authorities would otherwise stay forever.
        foreach (var id in orphans)
        {
            await DeleteKeyAsync(id, ct).ConfigureAwait(false);
        }
    }

    private const string MismatchReason =
        "its public key does not match the private key held under its id (the store was altered, or the key file belongs to another server)";

    private static byte[] CertSpki(string derBase64)
    {
        using var c = X509CertificateLoader.LoadCertificate(Convert.FromBase64String(derBase64));
        return c.PublicKey.ExportSubjectPublicKeyInfo();
    }

    /// <summary>Each certificate of the recorded chain is signed by the next one (upstream roots come from the journal).</summary>
    private static bool ChainLinksUp(X509AuthorityRecord a) =>
        a.ChainDerBase64.Count == 1
        || CertificatesLinkUp(a.ChainDerBase64.Select(b => X509CertificateLoader.LoadCertificate(Convert.FromBase64String(b))).ToList());

    /// <summary>certs[i] is signed by certs[i + 1] for every i, ending in a self-signed root.</summary>
    private static bool CertificatesLinkUp(IReadOnlyList<X509Certificate2> certs)
    {
        if (!IsSelfSigned(certs[^1]))
        {
            return false;
        }
        if (certs.Count == 1)
        {
            return true;
        }
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        chain.ChainPolicy.DisableCertificateDownloads = true;
        chain.ChainPolicy.VerificationFlags = X509VerificationFlags.IgnoreNotTimeValid;
        chain.ChainPolicy.CustomTrustStore.Add(certs[^1]);
        foreach (var c in certs.Skip(1).SkipLast(1))
        {
            chain.ChainPolicy.ExtraStore.Add(c);
        }
        return chain.Build(certs[0])
            && chain.ChainElements.Select(e => e.Certificate.Thumbprint).SequenceEqual(certs.Select(c => c.Thumbprint));
    }

    private static bool SameSpki(AsymmetricAlgorithm key, byte[] spki) => key.ExportSubjectPublicKeyInfo().AsSpan().SequenceEqual(spki);

    private static CaJournalDocument ParseJournal(byte[] data)
    {
        const string Corrupt = "the CA journal in the store is corrupt: restore the database from backup; nothing was changed";
        CaJournalDocument? doc;
        try
        {
            doc = JsonSerializer.Deserialize(data, CaJournalJsonContext.Default.CaJournalDocument);
        }
        catch (JsonException)
        {
            throw new InvalidOperationException(Corrupt);
        }
        if (doc?.X509 is null || doc.Jwt is null)
        {
            throw new InvalidOperationException(Corrupt);
        }
        try
        {
            foreach (var a in doc.X509)
            {
                if (a is null || string.IsNullOrEmpty(a.KeyId) || a.ChainDerBase64 is not { Count: > 0 })
                {
                    throw new InvalidOperationException(Corrupt);
                }
                foreach (var b in a.ChainDerBase64)
                {
                    using var c = X509CertificateLoader.LoadCertificate(Convert.FromBase64String(b));
                }
            }
            foreach (var a in doc.Jwt)
            {
                if (a is null || string.IsNullOrEmpty(a.KeyId) || string.IsNullOrEmpty(a.Kid))
                {
                    throw new InvalidOperationException(Corrupt);
                }
                using var k = ImportPublic(a.PublicKeySpkiBase64);
            }
        }
        catch (Exception e) when (e is FormatException or CryptographicException or ArgumentNullException)
        {
            throw new InvalidOperationException(Corrupt);
        }
        return doc;
    }

    /// <summary>
    /// With an upstream CA every authority must be an intermediate; without one, self-signed. (An authority signed by an
    /// earlier upstream certificate is kept: after an upstream renewal it still signs until its successor takes over.)
    /// </summary>
    private static bool FitsMode(X509AuthorityRecord a, bool upstream)
    {
        using var ca = X509CertificateLoader.LoadCertificate(Convert.FromBase64String(a.ChainDerBase64[0]));
        return upstream != IsSelfSigned(ca);
    }

    /// <summary>One pass of the rotation state machine. Call periodically (e.g. every 10 s).</summary>
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
                var changed = await RotateX509Async(x509, now, ct).ConfigureAwait(false);
                changed |= await RotateJwtAsync(jwt, now, ct).ConfigureAwait(false);

                // Prune authorities that expired more than the margin ago. Never the one that signs: rotation replaced it above.
                prunedX509 = x509.Where(a => a.Status != AuthorityStatus.Active && a.NotAfter + _options.PruneMargin < now).ToList();
                prunedJwt = jwt.Where(a => a.Status != AuthorityStatus.Active && a.NotAfter + _options.PruneMargin < now).ToList();
                x509.RemoveAll(prunedX509.Contains);
                jwt.RemoveAll(prunedJwt.Contains);
                changed |= prunedX509.Count + prunedJwt.Count > 0;

                next = new CaJournalDocument(x509, jwt);
                if (changed || _bundle is null)
                {
                    published = await PersistAsync(next, ct).ConfigureAwait(false);
                }
            }
            catch
            {
                // Nothing of this pass took effect: keep the previous state, so the next pass redoes it and publishes
                // before anything signs, and drop the keys it generated so they do not pile up in the key manager.
                var known = before.X509.Select(a => a.KeyId).Concat(before.Jwt.Select(a => a.KeyId)).ToHashSet(StringComparer.Ordinal);
                foreach (var id in x509.Select(a => a.KeyId).Concat(jwt.Select(a => a.KeyId)).Where(id => !known.Contains(id)))
                {
                    await DeleteKeyAsync(id, CancellationToken.None).ConfigureAwait(false);
                }
                throw;
            }

            _journal = next;
            await LoadSignersAsync(ct).ConfigureAwait(false);

            // The journal no longer names them: their private keys can go (SPIRE reuses two key slots; we delete).
            foreach (var a in prunedX509)
            {
                ServerLog.X509AuthorityPruned(_log, a.KeyId, a.NotAfter);
                await DeleteKeyAsync(a.KeyId, ct).ConfigureAwait(false);
            }
            foreach (var a in prunedJwt)
            {
                ServerLog.JwtKeyPruned(_log, a.Kid, a.NotAfter);
                await DeleteKeyAsync(a.KeyId, ct).ConfigureAwait(false);
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

    private async Task DeleteKeyAsync(string keyId, CancellationToken ct)
    {
        try
        {
            await _keys.DeleteAsync(keyId, ct).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidOperationException)
        {
            ServerLog.CaKeyNotDeleted(_log, keyId, e.Message);
        }
    }

    private async Task<bool> RotateX509Async(List<X509AuthorityRecord> list, DateTimeOffset now, CancellationToken ct)
    {
        var active = list.FirstOrDefault(a => a.Status == AuthorityStatus.Active && a.NotAfter > now);
        if (active is null)
        {
            // Nothing usable signs: the prepared authority (already published) takes over, or a new one must sign at once.
            var prepared = list.FirstOrDefault(a => a.Status == AuthorityStatus.Prepared && a.NotAfter > now);
            if (prepared is not null)
            {
                list[list.IndexOf(prepared)] = prepared with { Status = AuthorityStatus.Active };
                ServerLog.X509AuthorityActivated(_log, prepared.KeyId, prepared.NotAfter);
            }
            else
            {
                var created = await CreateX509AuthorityAsync(AuthorityStatus.Active, now, ct).ConfigureAwait(false);
                list.Add(created);
                ServerLog.X509AuthorityCreatedActive(_log, created.KeyId, created.NotAfter);
            }
            Demote(list, a => a.Status, (a, s) => a with { Status = s });
            return true;
        }
        var lifetime = active.NotAfter - active.NotBefore;
        var next = list.FirstOrDefault(a => a.Status == AuthorityStatus.Prepared);
        if (next is null && now >= active.NotAfter - PrepareLead(lifetime))
        {
            if (_options.Upstream is { } up && LoadUpstreamCertificates(up.CertificatePath)[0] is var upCert
                && new DateTimeOffset(upCert.NotAfter.ToUniversalTime()) <= active.NotAfter)
            {
                // A successor would be capped at the same instant: nothing to gain, and repeating it every pass would
                // fill the bundle. Say it once per authority; when the upstream is renewed the next pass prepares.
                if (_upstreamExpiryWarnedFor != active.KeyId)
                {
                    _upstreamExpiryWarnedFor = active.KeyId;
                    ServerLog.UpstreamCaExpiring(_log, up.CertificatePath, new DateTimeOffset(upCert.NotAfter.ToUniversalTime()));
                }
                return false;
            }
            var created = await CreateX509AuthorityAsync(AuthorityStatus.Prepared, now, ct).ConfigureAwait(false);
            list.Add(created);
            ServerLog.X509AuthorityPrepared(_log, created.KeyId, Later(active.NotAfter - ActivateLead(lifetime), now));
            // Published in this pass, signing from a later one: never sign with an authority nobody has had a chance to trust.
            return true;
        }
        if (next is not null && active.NotAfter - now <= ActivateLead(lifetime))
        {
            list[list.IndexOf(active)] = active with { Status = AuthorityStatus.Old };
            list[list.IndexOf(next)] = next with { Status = AuthorityStatus.Active };
            ServerLog.X509AuthorityActivated(_log, next.KeyId, next.NotAfter);
            return true;
        }
        return false;
    }

    private async Task<bool> RotateJwtAsync(List<JwtAuthorityRecord> list, DateTimeOffset now, CancellationToken ct)
    {
        var active = list.FirstOrDefault(a => a.Status == AuthorityStatus.Active && a.NotAfter > now);
        if (active is null)
        {
            var prepared = list.FirstOrDefault(a => a.Status == AuthorityStatus.Prepared && a.NotAfter > now);
            if (prepared is not null)
            {
                list[list.IndexOf(prepared)] = prepared with { Status = AuthorityStatus.Active };
                ServerLog.JwtKeyActivated(_log, prepared.Kid, prepared.NotAfter);
            }
            else
            {
                var created = await CreateJwtAuthorityAsync(AuthorityStatus.Active, now, ct).ConfigureAwait(false);
                list.Add(created);
                ServerLog.JwtKeyCreatedActive(_log, created.Kid, created.NotAfter);
            }
            Demote(list, a => a.Status, (a, s) => a with { Status = s });
            return true;
        }
        var lifetime = active.NotAfter - active.NotBefore;
        var next = list.FirstOrDefault(a => a.Status == AuthorityStatus.Prepared);
        if (next is null && now >= active.NotAfter - PrepareLead(lifetime))
        {
            var created = await CreateJwtAuthorityAsync(AuthorityStatus.Prepared, now, ct).ConfigureAwait(false);
            list.Add(created);
            ServerLog.JwtKeyPrepared(_log, created.Kid, Later(active.NotAfter - ActivateLead(lifetime), now));
            return true;
        }
        if (next is not null && active.NotAfter - now <= ActivateLead(lifetime))
        {
            list[list.IndexOf(active)] = active with { Status = AuthorityStatus.Old };
            list[list.IndexOf(next)] = next with { Status = AuthorityStatus.Active };
            ServerLog.JwtKeyActivated(_log, next.Kid, next.NotAfter);
            return true;
        }
        return false;
    }

    /// <summary>How long before the active authority's expiry its successor is prepared and published: half its lifetime, at most 30 days (SPIRE).</summary>
    internal static TimeSpan PrepareLead(TimeSpan lifetime) => lifetime / 2 < TimeSpan.FromDays(30) ? lifetime / 2 : TimeSpan.FromDays(30);

    /// <summary>How long before the active authority's expiry its successor starts signing: a sixth of its lifetime, at most 7 days (SPIRE).</summary>
    internal static TimeSpan ActivateLead(TimeSpan lifetime) => lifetime / 6 < TimeSpan.FromDays(7) ? lifetime / 6 : TimeSpan.FromDays(7);

    private static DateTimeOffset Later(DateTimeOffset a, DateTimeOffset b) => a > b ? a : b;

    /// <summary>Keeps exactly one Active authority: the newest active one; earlier actives become Old.</summary>
    private static void Demote<T>(List<T> list, Func<T, AuthorityStatus> status, Func<T, AuthorityStatus, T> with)
    {
        var actives = list.Select((a, i) => (a, i)).Where(x => status(x.a) == AuthorityStatus.Active).ToList();
        foreach (var (a, i) in actives.Take(actives.Count - 1))
        {
            list[i] = with(a, AuthorityStatus.Old);
        }
    }

    private async Task<X509AuthorityRecord> CreateX509AuthorityAsync(AuthorityStatus status, DateTimeOffset now, CancellationToken ct)
    {
        var keyId = "x509-ca-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8));
        var notBefore = now - TimeSpan.FromSeconds(10);
        var notAfter = now + _options.CaTtl;
        // Read the upstream files before a key is generated: a bad file must leave no orphan key behind.
        var upstream = _options.Upstream is { } up ? LoadUpstream(up, now) : default;
        var key = await _keys.GenerateAsync(keyId, _options.KeyType, ct).ConfigureAwait(false);
        List<X509Certificate2> chain;
        try
        {
            chain = upstream.Cert is { } upCert
                ? [X509Authorities.CreateIntermediateCa(_td, key, upCert, upstream.Key!, notBefore, notAfter), .. upstream.Certs]
                : [X509Authorities.CreateSelfSignedCa(_td, key, notBefore, notAfter)];
        }
        catch
        {
            await DeleteKeyAsync(keyId, ct).ConfigureAwait(false);
            throw;
        }
        finally
        {
            upstream.Key?.Dispose();   // the upstream private key is read per use, not kept in memory
        }
        return new X509AuthorityRecord(keyId, chain.Select(c => Convert.ToBase64String(c.RawData)).ToList(), status,
            new DateTimeOffset(chain[0].NotBefore.ToUniversalTime()), new DateTimeOffset(chain[0].NotAfter.ToUniversalTime()));
    }

    private async Task<JwtAuthorityRecord> CreateJwtAuthorityAsync(AuthorityStatus status, DateTimeOffset now, CancellationToken ct)
    {
        var keyId = "jwt-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8));
        var key = await _keys.GenerateAsync(keyId, _options.JwtKeyType, ct).ConfigureAwait(false);
        var kid = Base64Url(RandomNumberGenerator.GetBytes(24));
        return new JwtAuthorityRecord(keyId, kid, Convert.ToBase64String(key.ExportSubjectPublicKeyInfo()), status,
            now, now + _options.JwtKeyTtl);
    }

    private async Task LoadSignersAsync(CancellationToken ct)
    {
        var activeX509 = _journal.X509.First(a => a.Status == AuthorityStatus.Active);
        if (_x509Signer?.KeyId != activeX509.KeyId)
        {
            var key = await _keys.GetAsync(activeX509.KeyId, ct).ConfigureAwait(false)
                ?? throw new InvalidOperationException($"the {_keys.Name} key manager lost CA key '{activeX509.KeyId}': restart the server so it drops the authority and publishes a new one");
            var chain = activeX509.ChainDerBase64.Select(b => X509CertificateLoader.LoadCertificate(Convert.FromBase64String(b))).ToList();
            _x509Signer = new Signer(activeX509.KeyId, chain[0], key, chain);
        }
        var activeJwt = _journal.Jwt.First(a => a.Status == AuthorityStatus.Active);
        if (_jwtSigner?.Key.KeyId != activeJwt.Kid)
        {
            var key = await _keys.GetAsync(activeJwt.KeyId, ct).ConfigureAwait(false)
                ?? throw new InvalidOperationException($"the {_keys.Name} key manager lost JWT key '{activeJwt.KeyId}': restart the server so it drops the key and publishes a new one");
            _jwtSigner = new JwtSigner(new JwtSigningKey(activeJwt.Kid, key), activeJwt.NotAfter);
        }
        _intermediates = _journal.X509
            .OrderBy(a => a.Status == AuthorityStatus.Active ? 0 : 1)
            .SelectMany(a => a.ChainDerBase64)
            .Distinct(StringComparer.Ordinal)
            .Select(b => X509CertificateLoader.LoadCertificate(Convert.FromBase64String(b)))
            .Where(c => !IsSelfSigned(c))
            .ToList();
    }

    /// <summary>Writes the journal; publishes a new bundle (next sequence) when its keys differ from the stored one and returns it.</summary>
    private async Task<TrustBundle?> PersistAsync(CaJournalDocument journal, CancellationToken ct)
    {
        var data = JsonSerializer.SerializeToUtf8Bytes(journal, CaJournalJsonContext.Default.CaJournalDocument);
        await _store.CaJournal.PutAsync(new CaJournal(JournalName, data, _time.GetUtcNow()), ct).ConfigureAwait(false);

        var roots = journal.X509.SelectMany(TrustAnchorsOf).DistinctBy(c => c.Thumbprint).ToList();
        var jwtKeys = journal.Jwt.Select(a => new JwtAuthority(a.Kid, ImportPublic(a.PublicKeySpkiBase64))).ToList();
        var candidate = new TrustBundle(_td, roots, jwtKeys, _sequence, _options.RefreshHint);
        var storedBundle = await _store.Bundles.GetAsync(_td.Name, ct).ConfigureAwait(false);
        // Compare with what is published, not with whether this pass changed the journal: a restart that dropped
        // authorities (lost keys) must publish too, and a status change alone (prepared -> active) must not.
        if (storedBundle is not null && SameKeys(storedBundle.SpiffeBundleJson, candidate))
        {
            _bundle ??= TrustBundle.ParseSpiffeJson(_td, storedBundle.SpiffeBundleJson);
            Interlocked.Exchange(ref _sequence, storedBundle.Sequence);
            return null;
        }
        var seq = (storedBundle?.Sequence ?? 0) + 1;
        candidate = new TrustBundle(_td, roots, jwtKeys, seq, _options.RefreshHint);
        await _store.Bundles.PutAsync(new StoredBundle(_td.Name, candidate.ToSpiffeJson(), seq, _time.GetUtcNow()), ct).ConfigureAwait(false);
        Interlocked.Exchange(ref _sequence, seq);
        _bundle = candidate;
        return candidate;
    }

    /// <summary>
    /// The bundle certificates for one authority: itself when self-signed; with an upstream CA the root its recorded chain
    /// ends in (journals record the upstream file's certificates with each authority, so a renewed upstream root is
    /// published alongside the old one until the old one's authorities are pruned).
    /// </summary>
    private IEnumerable<X509Certificate2> TrustAnchorsOf(X509AuthorityRecord a)
    {
        var chain = a.ChainDerBase64.Select(b => X509CertificateLoader.LoadCertificate(Convert.FromBase64String(b))).ToList();
        if (IsSelfSigned(chain[0]))
        {
            return [chain[0]];
        }
        // Journals from before roots were recorded with each authority: the configured upstream's root.
        return chain.Count > 1 ? [chain[^1]] : _upstreamRoots.Where(IsSelfSigned);
    }

    private bool SameKeys(string storedJson, TrustBundle candidate)
    {
        var stored = TrustBundle.ParseSpiffeJson(_td, storedJson);
        return stored.X509Authorities.Select(c => c.Thumbprint).Order().SequenceEqual(candidate.X509Authorities.Select(c => c.Thumbprint).Order())
            && stored.JwtAuthorities.Keys.Order().SequenceEqual(candidate.JwtAuthorities.Keys.Order());
    }

    /// <summary>
    /// The trust domain the CA journal in <paramref name="store"/> was made for (the URI SAN of its X.509 authorities),
    /// or null when the store has no CA yet. Data from before the trust domain was recorded is bound by this.
    /// </summary>
    public static async Task<TrustDomain?> JournalTrustDomainAsync(IWritStore store, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(store);
        var stored = await store.CaJournal.GetAsync(JournalName, ct).ConfigureAwait(false);
        if (stored is null)
        {
            return null;
        }
        foreach (var a in ParseJournal(stored.Data).X509)
        {
            using var cert = X509CertificateLoader.LoadCertificate(Convert.FromBase64String(a.ChainDerBase64[0]));
            if (X509Authorities.TrustDomainOf(cert) is { } td)
            {
                return td;
            }
        }
        return null;
    }

    /// <summary>A CA signs only inside its own trust domain, whatever a caller (or a bug above it) asks for.</summary>
    private void RequireOwnTrustDomain(SpiffeId id)
    {
        if (id.TrustDomain != _td)
        {
            throw new ArgumentException($"the CA of trust domain {_td.Name} refuses to sign {id}: it is outside its trust domain");
        }
    }

    /// <summary>Signs an X.509-SVID for the subject key with the active authority. Returns the chain, leaf first.</summary>
    public IReadOnlyList<X509Certificate2> SignX509Svid(SpiffeId id, PublicKey subjectKey, TimeSpan ttl, IReadOnlyList<string>? dnsNames = null)
    {
        RequireOwnTrustDomain(id);
        var (s, now) = ActiveX509Signer();
        var leaf = X509SvidMinter.SignLeaf(s.Certificate, s.Key, id, subjectKey, now, ttl, dnsNames);
        return [leaf, .. s.ChainAboveLeaf.Where(c => !IsSelfSigned(c))];
    }

    /// <summary>
    /// The same signing, returning DER (leaf, then the intermediates) — what goes on the wire — without parsing the
    /// signed certificate back into an object: that parse costs more than both ECDSA operations of an issuance.
    /// </summary>
    public (SignedX509Leaf Leaf, IReadOnlyList<byte[]> ChainAboveLeaf) SignX509SvidDer(SpiffeId id, PublicKey subjectKey, TimeSpan ttl,
        IReadOnlyList<string>? dnsNames = null)
    {
        RequireOwnTrustDomain(id);
        var (s, now) = ActiveX509Signer();
        var leaf = X509SvidMinter.SignLeafDer(s.Certificate, s.Key, id, subjectKey, now, ttl, dnsNames);
        return (leaf, [.. s.ChainAboveLeaf.Where(c => !IsSelfSigned(c)).Select(c => c.RawData)]);
    }

    private (Signer Signer, DateTimeOffset Now) ActiveX509Signer()
    {
        var s = _x509Signer ?? throw new InvalidOperationException("the CA is not initialized: call InitializeAsync first");
        var now = _time.GetUtcNow();
        var caNotAfter = new DateTimeOffset(s.Certificate.NotAfter.ToUniversalTime());
        if (caNotAfter <= now)
        {
            throw new InvalidOperationException($"the active X.509 CA authority expired at {caNotAfter:u} and was not rotated: check the server log for CA rotation failures (event 1401) and the store");
        }
        return (s, now);
    }

    /// <summary>Mints a JWT-SVID with the active JWT key. TTL is capped by the key's own lifetime.</summary>
    public (string Token, DateTimeOffset ExpiresAt) MintJwtSvid(SpiffeId id, IReadOnlyList<string> audience, TimeSpan ttl,
        IReadOnlyDictionary<string, object>? extraClaims = null)
    {
        RequireOwnTrustDomain(id);
        var signer = _jwtSigner ?? throw new InvalidOperationException("the CA is not initialized: call InitializeAsync first");
        var now = _time.GetUtcNow();
        if (signer.NotAfter <= now)
        {
            throw new InvalidOperationException($"the active JWT signing key expired at {signer.NotAfter:u} and was not rotated: check the server log for CA rotation failures (event 1401) and the store");
        }
        if (ttl <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(ttl), ttl, "a JWT-SVID TTL must be positive");
        }
        var exp = now + ttl;
        if (exp > signer.NotAfter)
        {
            exp = signer.NotAfter;
        }
        // The token carries whole seconds; return exactly what it says.
        exp = DateTimeOffset.FromUnixTimeSeconds(Math.Max(exp.ToUnixTimeSeconds(), now.ToUnixTimeSeconds() + 1));
        return (JwtSvidMinter.Mint(signer.Key, id, audience, now, exp, extraClaims), exp);
    }

    /// <summary>
    /// A JWT-SVID with a fresh <c>jti</c> (128 random bits, base64url) and, when <paramref name="boundCertSha256"/> is
    /// given, bound to that X.509 certificate: claim <c>cnf</c> = {"x5t#S256": base64url(SHA-256 of the leaf DER)}
    /// (RFC 8705 §3.1). Without it the token is a bearer token.
    /// </summary>
    public (string Token, DateTimeOffset ExpiresAt, string Jti) MintJwtSvidWithId(SpiffeId id, IReadOnlyList<string> audience, TimeSpan ttl, byte[]? boundCertSha256)
    {
        if (boundCertSha256 is { Length: not 32 })
        {
            throw new ArgumentException("a certificate thumbprint (x5t#S256) is the 32-byte SHA-256 of the leaf DER", nameof(boundCertSha256));
        }
        var jti = Base64Url(RandomNumberGenerator.GetBytes(16));
        var claims = new Dictionary<string, object>(StringComparer.Ordinal) { ["jti"] = jti };
        if (boundCertSha256 is not null)
        {
            claims["cnf"] = new Dictionary<string, object>(StringComparer.Ordinal) { ["x5t#S256"] = Base64Url(boundCertSha256) };
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
            var s = _x509Signer ?? throw new InvalidOperationException("the CA is not initialized: call InitializeAsync first");
            return (s.KeyId, s.Certificate, s.Key);
        }
    }

    public DateTimeOffset ActiveX509NotAfter => new(_x509Signer?.Certificate.NotAfter.ToUniversalTime() ?? DateTime.MinValue);

    private static AsymmetricAlgorithm ImportPublic(string spkiBase64)
    {
        var spki = Convert.FromBase64String(spkiBase64);
        try
        {
            var ec = ECDsa.Create();
            ec.ImportSubjectPublicKeyInfo(spki, out _);
            return ec;
        }
        catch (CryptographicException)
        {
            var rsa = RSA.Create();
            rsa.ImportSubjectPublicKeyInfo(spki, out _);
            return rsa;
        }
    }

    private static bool IsSelfSigned(X509Certificate2 c) => c.SubjectName.RawData.AsSpan().SequenceEqual(c.IssuerName.RawData);

    private static string Base64Url(byte[] b) => Convert.ToBase64String(b).TrimEnd('=').Replace('+', '-').Replace('/', '_');

    private static List<X509Certificate2> LoadUpstreamCertificates(string path)
    {
        if (!File.Exists(path))
        {
            throw new InvalidOperationException($"upstream CA certificate file '{path}' does not exist: check ca.upstream.certificate");
        }
        var col = new X509Certificate2Collection();
        try
        {
            col.ImportFromPemFile(path);
        }
        catch (Exception e) when (e is CryptographicException or IOException or UnauthorizedAccessException)
        {
            throw new InvalidOperationException($"upstream CA certificate file '{path}' could not be read as PEM certificates: give the upstream CA's certificate in PEM (-----BEGIN CERTIFICATE-----)");
        }
        if (col.Count == 0)
        {
            throw new InvalidOperationException($"upstream CA certificate file '{path}' holds no PEM certificate: give the upstream CA's certificate in PEM (-----BEGIN CERTIFICATE-----)");
        }
        return [.. col];
    }

    /// <summary>
    /// The upstream CA's signing certificate (the file's first), its private key, and all certificates of the file. Every way the
    /// files can be wrong is an <see cref="InvalidOperationException"/> naming the file and what to do.
    /// </summary>
    private static (X509Certificate2? Cert, AsymmetricAlgorithm? Key, IReadOnlyList<X509Certificate2> Certs) LoadUpstream(UpstreamCaOptions up, DateTimeOffset now)
    {
        var certs = LoadUpstreamCertificates(up.CertificatePath);
        var cert = certs[0];
        // The bundle must hold a root relying parties can anchor on (SPIFFE bundles hold roots; an intermediate as anchor
        // fails path validation), so the file has to carry the chain up to it.
        if (!IsSelfSigned(certs[^1]))
        {
            throw new InvalidOperationException($"upstream CA certificate file '{up.CertificatePath}' does not end with a self-signed root: append the root CA certificate (and any certificates between) after the upstream CA's certificate");
        }
        if (!CertificatesLinkUp(certs))
        {
            throw new InvalidOperationException($"the certificates in upstream CA file '{up.CertificatePath}' do not form one chain: list the upstream CA's certificate first, then each issuer up to the root");
        }
        if (cert.Extensions.OfType<X509BasicConstraintsExtension>().FirstOrDefault() is not { CertificateAuthority: true })
        {
            throw new InvalidOperationException($"the first certificate in upstream CA file '{up.CertificatePath}' is not a CA (no basicConstraints cA=true): put the upstream CA's own certificate first");
        }
        if (new DateTimeOffset(cert.NotAfter.ToUniversalTime()) <= now)
        {
            throw new InvalidOperationException($"the upstream CA certificate in '{up.CertificatePath}' expired at {cert.NotAfter.ToUniversalTime():u}: renew the upstream CA");
        }
        if (!File.Exists(up.KeyPath))
        {
            throw new InvalidOperationException($"upstream CA key file '{up.KeyPath}' does not exist: check ca.upstream.key");
        }
        string pem;
        try
        {
            pem = File.ReadAllText(up.KeyPath);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new InvalidOperationException($"upstream CA key file '{up.KeyPath}' could not be read: make it readable by the server's user");
        }
        if (pem.Contains("ENCRYPTED", StringComparison.Ordinal))
        {
            throw new InvalidOperationException($"upstream CA key file '{up.KeyPath}' is encrypted: give the key as unencrypted PEM (PKCS#8, EC or RSA), readable only by the server's user");
        }
        AsymmetricAlgorithm key;
        try
        {
            var ec = ECDsa.Create();
            ec.ImportFromPem(pem);
            key = ec;
        }
        catch (Exception e) when (e is CryptographicException or ArgumentException)
        {
            try
            {
                var rsa = RSA.Create();
                rsa.ImportFromPem(pem);
                key = rsa;
            }
            catch (Exception e2) when (e2 is CryptographicException or ArgumentException)
            {
                throw new InvalidOperationException($"upstream CA key file '{up.KeyPath}' is not a PEM EC or RSA private key: give the upstream CA's private key as unencrypted PEM");
            }
        }
        var certSpki = cert.PublicKey.ExportSubjectPublicKeyInfo();
        if (!certSpki.AsSpan().SequenceEqual(key.ExportSubjectPublicKeyInfo()))
        {
            key.Dispose();
            throw new InvalidOperationException($"upstream CA key file '{up.KeyPath}' does not hold the private key of the certificate in '{up.CertificatePath}': give the matching key pair");
        }
        return (cert, key, certs);
    }

    private sealed record JwtSigner(JwtSigningKey Key, DateTimeOffset NotAfter);

    private sealed record Signer(string KeyId, X509Certificate2 Certificate, AsymmetricAlgorithm Key, IReadOnlyList<X509Certificate2> ChainAboveLeaf);
}
