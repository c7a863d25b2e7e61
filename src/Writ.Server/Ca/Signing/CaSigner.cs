using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Writ.Protocol.Errors;
using Writ.Server.Keys;
using Writ.Spiffe;
using Writ.Spiffe.Jwt;
using Writ.Spiffe.X509;

namespace Writ.Server.Ca.Signing;

/// <summary>An X.509 authority's certificate and private key, as the CRL of its SVIDs is signed with (Revocation/).</summary>
/// <param name="SvidsValidUntil">Until when SVIDs it signed may be valid: a leaf never outlives its authority.</param>
internal sealed record X509AuthorityKey(string KeyId, X509Certificate2 Certificate, AsymmetricAlgorithm Key, DateTimeOffset SvidsValidUntil);

/// <summary>
/// Signs X.509-SVIDs and JWT-SVIDs with the active authorities of the CA journal, inside the CA's trust domain only, and
/// never with an authority past its expiry. <see cref="LoadAsync"/> picks up the authorities after each rotation pass.
/// </summary>
internal sealed class CaSigner(TrustDomain td, IKeyManager keys, TimeProvider time)
{
    private const string NotInitialized = "the CA is not initialized: call InitializeAsync first";
    private X509Signer? _x509;
    private JwtSigner? _jwt;
    private IReadOnlyList<X509AuthorityKey> _retired = [];

    /// <summary>The <c>iss</c> claim of every JWT-SVID (<c>jwt_issuer</c>, served by `writ oidc-discovery run`); null: none.</summary>
    public string? Issuer { get; init; }

    /// <summary>Every non-root certificate of the journal's X.509 authorities, the active one's first (see <see cref="WritCa.Intermediates"/>).</summary>
    public IReadOnlyList<X509Certificate2> Intermediates { get; private set; } = [];

    /// <summary>Loads the keys of the journal's active authorities, and of the retired X.509 authorities (their CRLs), when they changed.</summary>
    public async Task LoadAsync(CaJournalDocument journal, CancellationToken ct)
    {
        var activeX509 = journal.X509.First(a => a.Status == AuthorityStatus.Active);
        if (_x509?.Authority.KeyId != activeX509.KeyId)
        {
            var chain = CaCertificates.LoadAll(activeX509.ChainDerBase64);
            _x509 = new X509Signer(new X509AuthorityKey(activeX509.KeyId, chain[0], await KeyAsync(activeX509.KeyId, "CA", ct).ConfigureAwait(false), activeX509.NotAfter), chain);
        }
        var activeJwt = journal.Jwt.First(a => a.Status == AuthorityStatus.Active);
        if (_jwt?.Key.KeyId != activeJwt.Kid)
        {
            _jwt = new JwtSigner(new JwtSigningKey(activeJwt.Kid, await KeyAsync(activeJwt.KeyId, "JWT", ct).ConfigureAwait(false)), activeJwt.NotAfter);
        }
        var retired = new List<X509AuthorityKey>();
        foreach (var a in journal.X509.Where(a => a.Status == AuthorityStatus.Old))
        {
            // A retired authority's key is still in the key manager until the authority is pruned; one lost meanwhile only
            // costs its CRL, never the pass.
            if (_retired.FirstOrDefault(r => r.KeyId == a.KeyId) is { } known)
            {
                retired.Add(known);
            }
            else if (await keys.GetAsync(a.KeyId, ct).ConfigureAwait(false) is { } key)
            {
                retired.Add(new X509AuthorityKey(a.KeyId, CaCertificates.Load(a.ChainDerBase64[0]), key, a.NotAfter));
            }
        }
        _retired = retired;
        Intermediates = journal.X509
            .OrderBy(a => a.Status == AuthorityStatus.Active ? 0 : 1)
            .SelectMany(a => a.ChainDerBase64)
            .Distinct(StringComparer.Ordinal)
            .Select(CaCertificates.Load)
            .Where(c => !CaCertificates.IsSelfSigned(c))
            .ToList();
    }

    private async Task<AsymmetricAlgorithm> KeyAsync(string keyId, string what, CancellationToken ct) =>
        await keys.GetAsync(keyId, ct).ConfigureAwait(false)
        ?? throw new CaException(CaException.KeyLost, WritErrorKind.Unavailable,
            $"the {keys.Name} key manager lost {what} key '{keyId}': restart the server so it drops the authority and publishes a new one");

    /// <summary>The active X.509 authority: the CRL is signed with it. The key never leaves the server assembly.</summary>
    public X509AuthorityKey ActiveX509 => (_x509 ?? throw new InvalidOperationException(NotInitialized)).Authority;

    /// <summary>The retired X.509 authorities whose SVIDs may still be valid at <paramref name="now"/>: each publishes a CRL too.</summary>
    public IReadOnlyList<X509AuthorityKey> RetiredX509(DateTimeOffset now) => [.. _retired.Where(r => r.SvidsValidUntil > now)];

    public DateTimeOffset ActiveX509NotAfter => _x509 is { } s ? CaCertificates.NotAfterOf(s.Authority.Certificate) : new DateTimeOffset(DateTime.MinValue);

    /// <summary>A CA signs only inside its own trust domain, whatever a caller (or a bug above it) asks for.</summary>
    private void RequireOwnTrustDomain(SpiffeId id)
    {
        if (id.TrustDomain != td)
        {
            throw new ArgumentException($"the CA of trust domain {td.Name} refuses to sign {id}: it is outside its trust domain");
        }
    }

    public IReadOnlyList<X509Certificate2> SignX509Svid(SpiffeId id, PublicKey subjectKey, TimeSpan ttl, IReadOnlyList<string>? dnsNames)
    {
        RequireOwnTrustDomain(id);
        var (s, now) = ActiveX509Signer();
        var leaf = X509SvidMinter.SignLeaf(s.Authority.Certificate, s.Authority.Key, id, subjectKey, now, ttl, dnsNames);
        return [leaf, .. s.Chain.Where(c => !CaCertificates.IsSelfSigned(c))];
    }

    public (SignedX509Leaf Leaf, IReadOnlyList<byte[]> ChainAboveLeaf) SignX509SvidDer(SpiffeId id, PublicKey subjectKey, TimeSpan ttl,
        IReadOnlyList<string>? dnsNames)
    {
        RequireOwnTrustDomain(id);
        var (s, now) = ActiveX509Signer();
        var leaf = X509SvidMinter.SignLeafDer(s.Authority.Certificate, s.Authority.Key, id, subjectKey, now, ttl, dnsNames);
        return (leaf, [.. s.Chain.Where(c => !CaCertificates.IsSelfSigned(c)).Select(c => c.RawData)]);
    }

    private (X509Signer Signer, DateTimeOffset Now) ActiveX509Signer()
    {
        var s = _x509 ?? throw new InvalidOperationException(NotInitialized);
        var now = time.GetUtcNow();
        var caNotAfter = CaCertificates.NotAfterOf(s.Authority.Certificate);
        if (caNotAfter <= now)
        {
            throw Expired($"the active X.509 CA authority expired at {caNotAfter:u}");
        }
        return (s, now);
    }

    public (string Token, DateTimeOffset ExpiresAt) MintJwtSvid(SpiffeId id, IReadOnlyList<string> audience, TimeSpan ttl,
        IReadOnlyDictionary<string, object>? extraClaims)
    {
        RequireOwnTrustDomain(id);
        var signer = _jwt ?? throw new InvalidOperationException(NotInitialized);
        var now = time.GetUtcNow();
        if (signer.NotAfter <= now)
        {
            throw Expired($"the active JWT signing key expired at {signer.NotAfter:u}");
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
        if (Issuer is not null)
        {
            extraClaims = new Dictionary<string, object>(extraClaims ?? new Dictionary<string, object>(), StringComparer.Ordinal) { ["iss"] = Issuer };
        }
        return (JwtSvidMinter.Mint(signer.Key, id, audience, now, exp, extraClaims), exp);
    }

    private static CaException Expired(string what) => new(CaException.AuthorityExpired, WritErrorKind.Unavailable,
        $"{what} and was not rotated: check the server log for CA rotation failures (event 1401) and the store");

    private sealed record JwtSigner(JwtSigningKey Key, DateTimeOffset NotAfter);

    private sealed record X509Signer(X509AuthorityKey Authority, IReadOnlyList<X509Certificate2> Chain);
}
