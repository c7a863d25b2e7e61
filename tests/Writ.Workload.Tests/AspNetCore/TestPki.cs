using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Writ.Spiffe;
using Writ.Spiffe.Bundles;
using Writ.Spiffe.Jwt;
using Writ.Spiffe.X509;

namespace Writ.Workload.Tests.AspNetCore;

/// <summary>A test CA for one trust domain (real X.509 from Writ.Spiffe's minter) with a JWT signing key.</summary>
internal sealed class TestTrustDomain
{
    public TestTrustDomain(string td)
    {
        TrustDomain = TrustDomain.Parse(td);
        var now = DateTimeOffset.UtcNow;
        RootKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        Root = X509Authorities.CreateSelfSignedCa(TrustDomain, RootKey, now.AddDays(-1), now.AddDays(30));
        JwtKey = new JwtSigningKey("k-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(6)), ECDsa.Create(ECCurve.NamedCurves.nistP256));
    }

    public TrustDomain TrustDomain { get; }
    public ECDsa RootKey { get; }
    public X509Certificate2 Root { get; }
    public JwtSigningKey JwtKey { get; }

    public TrustBundle Bundle => new(TrustDomain, [Root], [new JwtAuthority(JwtKey.KeyId, JwtKey.Key)]);

    public SpiffeId Id(string path) => SpiffeId.Parse(TrustDomain.IdString + path);

    /// <summary>An X.509-SVID with its private key, loadable by SslStream as a client or server certificate.</summary>
    public X509Certificate2 Svid(string path, DateTimeOffset? issuedAt = null, TimeSpan? ttl = null)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var leaf = X509SvidMinter.SignLeaf(Root, RootKey, Id(path), new PublicKey(key), issuedAt ?? DateTimeOffset.UtcNow, ttl ?? TimeSpan.FromHours(1), ["localhost"]);
        return WithKey(leaf, key);
    }

    public string Jwt(string path, string audience, TimeSpan? ttl = null, DateTimeOffset? issuedAt = null, string? jti = null, X509Certificate2? boundTo = null, JwtSigningKey? signWith = null)
    {
        var iat = issuedAt ?? DateTimeOffset.UtcNow;
        var claims = new Dictionary<string, object> { ["jti"] = jti ?? Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(11)) };
        if (boundTo is not null)
        {
            claims["cnf"] = new Dictionary<string, object> { ["x5t#S256"] = CertificateBinding.Thumbprint(boundTo) };
        }
        return JwtSvidMinter.Mint(signWith ?? JwtKey, Id(path), [audience], iat, iat + (ttl ?? TimeSpan.FromMinutes(5)), claims);
    }

    /// <summary>A self-signed certificate that claims <paramref name="id"/> (an attacker's forgery: no CA signed it).</summary>
    public static X509Certificate2 SelfSigned(string id)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var req = new CertificateRequest("O=Forger", key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddUri(new Uri(id));
        req.CertificateExtensions.Add(san.Build());
        req.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        req.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        var now = DateTimeOffset.UtcNow;
        using var cert = req.CreateSelfSigned(now.AddHours(-1), now.AddHours(1));
        return X509CertificateLoader.LoadPkcs12(cert.Export(X509ContentType.Pkcs12), null);
    }

    private static X509Certificate2 WithKey(X509Certificate2 leaf, ECDsa key)
    {
        using var withKey = leaf.CopyWithPrivateKey(key);
        // SslStream on Linux wants an exportable, re-imported certificate.
        return X509CertificateLoader.LoadPkcs12(withKey.Export(X509ContentType.Pkcs12), null);
    }
}

/// <summary>A bundle source a test changes at will.</summary>
internal sealed class MutableBundles : IWatchedBundleSource
{
    private volatile BundleSet _set;

    public MutableBundles(params TrustBundle[] bundles) => _set = new BundleSet(bundles);

    public event EventHandler? Changed;

    public TrustBundle? GetBundle(TrustDomain td) => _set.GetBundle(td);

    public TrustBundle? GetJwtBundle(TrustDomain td) => _set.GetBundle(td);

    public void Set(params TrustBundle[] bundles)
    {
        _set = new BundleSet(bundles);
        Changed?.Invoke(this, EventArgs.Empty);
    }
}

/// <summary>A revocation set a test changes at will (the real one is fed by the agent's WatchRevocations stream).</summary>
internal sealed class MutableRevocations : IRevocationSource
{
    private volatile IReadOnlySet<string> _serials = new HashSet<string>();
    private volatile IReadOnlySet<string> _jtis = new HashSet<string>();

    public event EventHandler? Changed;

    public bool IsSerialRevoked(string serialHex) => _serials.Contains(serialHex.Replace(":", "", StringComparison.Ordinal).TrimStart('0').ToUpperInvariant());

    public bool IsJtiRevoked(string jti) => _jtis.Contains(jti);

    public void RevokeSerial(string serialHex)
    {
        _serials = new HashSet<string>(_serials) { serialHex.TrimStart('0').ToUpperInvariant() };
        Changed?.Invoke(this, EventArgs.Empty);
    }

    public void RevokeJti(string jti)
    {
        _jtis = new HashSet<string>(_jtis) { jti };
        Changed?.Invoke(this, EventArgs.Empty);
    }
}
