using System.Formats.Asn1;
using System.Numerics;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Writ.Spiffe;
using Writ.Spiffe.Bundles;
using Writ.Spiffe.Jwt;
using Writ.Spiffe.X509;

namespace Writ.Workload.Tests.Fakes;

/// <summary>
/// A test certificate authority for one trust domain, built with System.Security.Cryptography (CertificateRequest):
/// a self-signed root with the trust domain's URI SAN, leaves with a SPIFFE URI SAN (and deliberately broken ones for
/// attacker tests), a JWT signing key, and CRLs.
/// </summary>
public sealed class TestCa : IDisposable
{
    private static readonly Oid ServerAuth = new("1.3.6.1.5.5.7.3.1");
    private static readonly Oid ClientAuth = new("1.3.6.1.5.5.7.3.2");
    private readonly ECDsa _key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
    private int _crlNumber;

    public TestCa(string trustDomain, TimeProvider? time = null)
    {
        Time = time ?? TimeProvider.System;
        TrustDomain = TrustDomain.Parse(trustDomain);
        var now = Time.GetUtcNow();
        var req = new CertificateRequest($"CN={trustDomain} test CA, O=Writ tests", _key, HashAlgorithmName.SHA256);
        req.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        req.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign | X509KeyUsageFlags.DigitalSignature, true));
        req.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(req.PublicKey, false));
        var san = new SubjectAlternativeNameBuilder();
        san.AddUri(new Uri(TrustDomain.IdString));
        req.CertificateExtensions.Add(san.Build());
        Certificate = req.CreateSelfSigned(now.AddHours(-1), now.AddDays(30));
        JwtKey = new JwtSigningKey("test-" + trustDomain, ECDsa.Create(ECCurve.NamedCurves.nistP256));
    }

    public TimeProvider Time { get; }

    public TrustDomain TrustDomain { get; }

    public X509Certificate2 Certificate { get; }

    public JwtSigningKey JwtKey { get; }

    /// <summary>The X.509 bundle (the root) and the JWT authority of this trust domain.</summary>
    public TrustBundle Bundle => new(TrustDomain, [Certificate], [new JwtAuthority(JwtKey.KeyId, JwtKey.Key)]);

    /// <summary>The X.509 bundle only.</summary>
    public TrustBundle X509Bundle => new(TrustDomain, [Certificate], []);

    /// <summary>
    /// An X.509-SVID for <paramref name="path"/> in this trust domain (or a full SPIFFE ID of another one, which this CA
    /// then signs: a forgery), valid from <paramref name="notBefore"/> (default 1 min ago) for <paramref name="ttl"/>
    /// (default 1 h). No DNS SAN unless given.
    /// </summary>
    public X509Svid Issue(string pathOrId, TimeSpan? ttl = null, DateTimeOffset? notBefore = null, string[]? dnsNames = null,
        bool asCa = false, bool withUriSan = true)
    {
        var id = pathOrId.StartsWith("spiffe://", StringComparison.Ordinal) ? SpiffeId.Parse(pathOrId) : SpiffeId.Parse(TrustDomain.IdString + pathOrId);
        var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var req = new CertificateRequest("O=Writ tests", key, HashAlgorithmName.SHA256);
        req.CertificateExtensions.Add(new X509BasicConstraintsExtension(asCa, false, 0, true));
        req.CertificateExtensions.Add(new X509KeyUsageExtension(
            asCa ? X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.DigitalSignature : X509KeyUsageFlags.DigitalSignature, true));
        req.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([ServerAuth, ClientAuth], false));
        req.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(req.PublicKey, false));
        var san = new SubjectAlternativeNameBuilder();
        if (withUriSan)
        {
            san.AddUri(new Uri(id.ToString()));
        }
        foreach (var d in dnsNames ?? [])
        {
            san.AddDnsName(d);
        }
        if (withUriSan || dnsNames is { Length: > 0 })
        {
            req.CertificateExtensions.Add(san.Build());
        }
        var nb = notBefore ?? Time.GetUtcNow().AddMinutes(-1);
        var serial = new byte[16];
        RandomNumberGenerator.Fill(serial);
        serial[0] &= 0x7f;
        serial[0] |= 0x01;
        using var cert = req.Create(Certificate, nb, nb + (ttl ?? TimeSpan.FromHours(1)), serial);
        var leaf = X509CertificateLoader.LoadCertificate(cert.RawData);
        return new X509Svid(id, [leaf], key);
    }

    /// <summary>A JWT-SVID of <paramref name="subject"/> for <paramref name="audience"/>, signed by this trust domain's JWT key.</summary>
    public string MintJwt(SpiffeId subject, IReadOnlyList<string> audience, TimeSpan ttl, DateTimeOffset? issuedAt = null)
    {
        var iat = issuedAt ?? Time.GetUtcNow();
        return JwtSvidMinter.Mint(JwtKey, subject, audience, iat, iat + ttl);
    }

    /// <summary>A DER CRL of this CA listing <paramref name="revoked"/>.</summary>
    public byte[] Crl(params X509Svid[] revoked)
    {
        var builder = new CertificateRevocationListBuilder();
        var now = Time.GetUtcNow();
        foreach (var s in revoked)
        {
            builder.AddEntry(s.Leaf, now.AddMinutes(-1));
        }
        return builder.Build(Certificate, new BigInteger(Interlocked.Increment(ref _crlNumber)), now.AddHours(1), HashAlgorithmName.SHA256);
    }

    /// <summary>DER of an ASN.1 value that is not a CRL.</summary>
    public static byte[] NotACrl()
    {
        var w = new AsnWriter(AsnEncodingRules.DER);
        w.WriteInteger(42);
        return w.Encode();
    }

    public void Dispose()
    {
        _key.Dispose();
        Certificate.Dispose();
    }
}
