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
/// (prepare the next at half its lifetime and publish it in the bundle, activate at 1/6 remaining, prune expired
/// ones after a safety margin), and the trust bundle built from them.
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
    private JwtSigningKey? _jwtSigner;
    private TrustBundle? _bundle;
    private long _sequence;
    private IReadOnlyList<X509Certificate2> _upstreamRoots = [];

    public WritCa(TrustDomain td, CaOptions options, IKeyManager keys, IWritStore store, TimeProvider time, ILogger<WritCa> log)
    {
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

    public TrustBundle Bundle => _bundle ?? throw new InvalidOperationException("the CA is not initialized");

    public long BundleSequence => Interlocked.Read(ref _sequence);

    /// <summary>The certificates an agent SVID chain may carry between leaf and root (server CA intermediates).</summary>
    public IReadOnlyList<X509Certificate2> Intermediates =>
        _x509Signer?.ChainAboveLeaf.Where(c => !IsSelfSigned(c)).ToList() ?? [];

    public async Task InitializeAsync(CancellationToken ct)
    {
        if (_options.Upstream is { } up)
        {
            _upstreamRoots = LoadUpstreamCertificates(up.CertificatePath);
        }
        var stored = await _store.CaJournal.GetAsync(JournalName, ct).ConfigureAwait(false);
        if (stored is not null)
        {
            _journal = JsonSerializer.Deserialize(stored.Data, CaJournalJsonContext.Default.CaJournalDocument) ?? CaJournalDocument.Empty;
        }
        var storedBundle = await _store.Bundles.GetAsync(_td.Name, ct).ConfigureAwait(false);
        _sequence = storedBundle?.Sequence ?? 0;

        // Drop journal entries whose keys are gone (memory key manager after a restart, or a lost key file).
        var x509 = new List<X509AuthorityRecord>();
        foreach (var a in _journal.X509)
        {
            if (await _keys.GetAsync(a.KeyId, ct).ConfigureAwait(false) is not null)
            {
                x509.Add(a);
            }
        }
        var jwt = new List<JwtAuthorityRecord>();
        foreach (var a in _journal.Jwt)
        {
            if (await _keys.GetAsync(a.KeyId, ct).ConfigureAwait(false) is not null)
            {
                jwt.Add(a);
            }
        }
        _journal = new CaJournalDocument(x509, jwt);
        await RotateAsync(ct).ConfigureAwait(false);
    }

    /// <summary>One pass of the rotation state machine. Call periodically (e.g. every 10 s).</summary>
    public async Task RotateAsync(CancellationToken ct)
    {
        await _gate.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            var now = _time.GetUtcNow();
            var changed = false;
            var x509 = _journal.X509.ToList();
            var jwt = _journal.Jwt.ToList();

            changed |= await RotateX509Async(x509, now, ct).ConfigureAwait(false);
            changed |= await RotateJwtAsync(jwt, now, ct).ConfigureAwait(false);

            // Prune authorities that expired more than the margin ago.
            changed |= x509.RemoveAll(a => a.NotAfter + _options.PruneMargin < now) > 0;
            changed |= jwt.RemoveAll(a => a.NotAfter + _options.PruneMargin < now) > 0;

            _journal = new CaJournalDocument(x509, jwt);
            await LoadSignersAsync(ct).ConfigureAwait(false);
            if (changed || _bundle is null)
            {
                await PersistAsync(changed, ct).ConfigureAwait(false);
            }
        }
        finally
        {
            _gate.Release();
        }
    }

    private async Task<bool> RotateX509Async(List<X509AuthorityRecord> list, DateTimeOffset now, CancellationToken ct)
    {
        var changed = false;
        var active = list.FirstOrDefault(a => a.Status == AuthorityStatus.Active && a.NotAfter > now);
        if (active is null)
        {
            var prepared = list.FirstOrDefault(a => a.Status == AuthorityStatus.Prepared && a.NotAfter > now);
            if (prepared is not null)
            {
                list[list.IndexOf(prepared)] = prepared with { Status = AuthorityStatus.Active };
            }
            else
            {
                list.Add(await CreateX509AuthorityAsync(AuthorityStatus.Active, now, ct).ConfigureAwait(false));
            }
            Demote(list, a => a.Status, (a, s) => a with { Status = s });
            _log.LogInformation("X.509 CA authority activated (no usable active authority)");
            return true;
        }
        var lifetime = active.NotAfter - active.NotBefore;
        var next = list.FirstOrDefault(a => a.Status == AuthorityStatus.Prepared);
        if (next is null && now >= active.NotBefore + (lifetime / 2))
        {
            list.Add(await CreateX509AuthorityAsync(AuthorityStatus.Prepared, now, ct).ConfigureAwait(false));
            _log.LogInformation("X.509 CA authority prepared and published; it will sign from 1/6 of the current one's lifetime remaining");
            changed = true;
            next = list[^1];
        }
        if (next is not null && active.NotAfter - now <= lifetime / 6)
        {
            list[list.IndexOf(active)] = active with { Status = AuthorityStatus.Old };
            list[list.IndexOf(next)] = next with { Status = AuthorityStatus.Active };
            _log.LogInformation("X.509 CA authority rotated: the prepared authority now signs");
            changed = true;
        }
        return changed;
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
            }
            else
            {
                list.Add(await CreateJwtAuthorityAsync(AuthorityStatus.Active, now, ct).ConfigureAwait(false));
            }
            Demote(list, a => a.Status, (a, s) => a with { Status = s });
            return true;
        }
        var changed = false;
        var lifetime = active.NotAfter - active.NotBefore;
        var next = list.FirstOrDefault(a => a.Status == AuthorityStatus.Prepared);
        if (next is null && now >= active.NotBefore + (lifetime / 2))
        {
            list.Add(await CreateJwtAuthorityAsync(AuthorityStatus.Prepared, now, ct).ConfigureAwait(false));
            next = list[^1];
            changed = true;
        }
        if (next is not null && active.NotAfter - now <= lifetime / 6)
        {
            list[list.IndexOf(active)] = active with { Status = AuthorityStatus.Old };
            list[list.IndexOf(next)] = next with { Status = AuthorityStatus.Active };
            changed = true;
        }
        return changed;
    }

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
        var key = await _keys.GenerateAsync(keyId, _options.KeyType, ct).ConfigureAwait(false);
        var notBefore = now - TimeSpan.FromSeconds(10);
        var notAfter = now + _options.CaTtl;
        List<X509Certificate2> chain;
        if (_options.Upstream is { } up)
        {
            var (upCert, upKey) = LoadUpstream(up);
            var ca = X509Authorities.CreateIntermediateCa(_td, key, upCert, upKey, notBefore, notAfter);
            chain = [ca, .. _upstreamRoots.Where(c => !IsSelfSigned(c))];
            notAfter = ca.NotAfter;
        }
        else
        {
            chain = [X509Authorities.CreateSelfSignedCa(_td, key, notBefore, notAfter)];
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
                ?? throw new InvalidOperationException($"the key manager lost CA key '{activeX509.KeyId}'");
            var chain = activeX509.ChainDerBase64.Select(b => X509CertificateLoader.LoadCertificate(Convert.FromBase64String(b))).ToList();
            _x509Signer = new Signer(activeX509.KeyId, chain[0], key, chain);
        }
        var activeJwt = _journal.Jwt.First(a => a.Status == AuthorityStatus.Active);
        if (_jwtSigner?.KeyId != activeJwt.Kid)
        {
            var key = await _keys.GetAsync(activeJwt.KeyId, ct).ConfigureAwait(false)
                ?? throw new InvalidOperationException($"the key manager lost JWT key '{activeJwt.KeyId}'");
            _jwtSigner = new JwtSigningKey(activeJwt.Kid, key);
        }
    }

    private async Task PersistAsync(bool changed, CancellationToken ct)
    {
        var data = JsonSerializer.SerializeToUtf8Bytes(_journal, CaJournalJsonContext.Default.CaJournalDocument);
        await _store.CaJournal.PutAsync(new CaJournal(JournalName, data, _time.GetUtcNow()), ct).ConfigureAwait(false);

        var roots = _options.Upstream is null
            ? _journal.X509.Select(a => X509CertificateLoader.LoadCertificate(Convert.FromBase64String(a.ChainDerBase64[0]))).ToList()
            : _upstreamRoots.Where(IsSelfSigned).DefaultIfEmpty(_upstreamRoots[^1]).ToList();
        var jwtKeys = _journal.Jwt.Select(a => new JwtAuthority(a.Kid, ImportPublic(a.PublicKeySpkiBase64))).ToList();
        var candidate = new TrustBundle(_td, roots, jwtKeys, _sequence, _options.RefreshHint);
        var storedBundle = await _store.Bundles.GetAsync(_td.Name, ct).ConfigureAwait(false);
        if (storedBundle is null || (changed && !SameKeys(storedBundle.SpiffeBundleJson, candidate)))
        {
            var seq = (storedBundle?.Sequence ?? 0) + 1;
            candidate = new TrustBundle(_td, roots, jwtKeys, seq, _options.RefreshHint);
            await _store.Bundles.PutAsync(new StoredBundle(_td.Name, candidate.ToSpiffeJson(), seq, _time.GetUtcNow()), ct).ConfigureAwait(false);
            Interlocked.Exchange(ref _sequence, seq);
            _bundle = candidate;
            BundleChanged?.Invoke(candidate);
            return;
        }
        _bundle ??= TrustBundle.ParseSpiffeJson(_td, storedBundle.SpiffeBundleJson);
        Interlocked.Exchange(ref _sequence, storedBundle.Sequence);
    }

    private bool SameKeys(string storedJson, TrustBundle candidate)
    {
        var stored = TrustBundle.ParseSpiffeJson(_td, storedJson);
        return stored.X509Authorities.Select(c => c.Thumbprint).Order().SequenceEqual(candidate.X509Authorities.Select(c => c.Thumbprint).Order())
            && stored.JwtAuthorities.Keys.Order().SequenceEqual(candidate.JwtAuthorities.Keys.Order());
    }

    /// <summary>Signs an X.509-SVID for the subject key with the active authority. Returns the chain, leaf first.</summary>
    public IReadOnlyList<X509Certificate2> SignX509Svid(SpiffeId id, PublicKey subjectKey, TimeSpan ttl, IReadOnlyList<string>? dnsNames = null)
    {
        var s = _x509Signer ?? throw new InvalidOperationException("the CA is not initialized");
        var leaf = X509SvidMinter.SignLeaf(s.Certificate, s.Key, id, subjectKey, _time.GetUtcNow(), ttl, dnsNames);
        return [leaf, .. s.ChainAboveLeaf.Where(c => !IsSelfSigned(c))];
    }

    /// <summary>Mints a JWT-SVID with the active JWT key. TTL is capped by the key's own lifetime.</summary>
    public (string Token, DateTimeOffset ExpiresAt) MintJwtSvid(SpiffeId id, IReadOnlyList<string> audience, TimeSpan ttl,
        IReadOnlyDictionary<string, object>? extraClaims = null)
    {
        var key = _jwtSigner ?? throw new InvalidOperationException("the CA is not initialized");
        var now = _time.GetUtcNow();
        var keyExpiry = _journal.Jwt.First(a => a.Kid == key.KeyId).NotAfter;
        var exp = now + ttl;
        if (exp > keyExpiry)
        {
            exp = keyExpiry;
        }
        return (JwtSvidMinter.Mint(key, id, audience, now, exp, extraClaims), exp);
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
        catch (CryptographicException)
        {
            throw new InvalidOperationException($"upstream CA certificate file '{path}' is not PEM certificates: give the upstream CA's certificate in PEM");
        }
        if (col.Count == 0)
        {
            throw new InvalidOperationException($"upstream CA certificate file '{path}' holds no certificate");
        }
        return [.. col];
    }

    private static (X509Certificate2 Cert, AsymmetricAlgorithm Key) LoadUpstream(UpstreamCaOptions up)
    {
        var certs = LoadUpstreamCertificates(up.CertificatePath);
        var pem = File.ReadAllText(up.KeyPath);
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
                throw new InvalidOperationException($"upstream CA key file '{up.KeyPath}' is not an unencrypted PEM EC or RSA private key");
            }
        }
        return (certs[0], key);
    }

    private sealed record Signer(string KeyId, X509Certificate2 Certificate, AsymmetricAlgorithm Key, IReadOnlyList<X509Certificate2> ChainAboveLeaf);
}
