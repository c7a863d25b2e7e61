using System.Formats.Asn1;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Writ.Spiffe.Internal;

namespace Writ.Spiffe.X509;

/// <summary>
/// Creates SPIFFE signing (CA) certificates (X509-SVID.md §3.2, §4): URI SAN <c>spiffe://&lt;td&gt;</c>,
/// BasicConstraints cA=true (critical), KeyUsage keyCertSign|cRLSign (critical), SKI, random serial.
/// Returned certificates carry no private key.
/// </summary>
public static class X509Authorities
{
    /// <summary>A self-signed root CA for the trust domain.</summary>
    public static X509Certificate2 CreateSelfSignedCa(TrustDomain td, AsymmetricAlgorithm key, DateTimeOffset notBefore, DateTimeOffset notAfter)
    {
        RequireTd(td);
        ArgumentNullException.ThrowIfNull(key);
        RequireWindow(notBefore, notAfter);
        var serial = KeyAlgorithms.RandomSerial();
        var subject = CaSubject(td, serial);
        var pub = KeyAlgorithms.PublicKeyOf(key);
        var req = new CertificateRequest(subject, pub, KeyAlgorithms.HashFor(key));
        AddCaExtensions(req, td, pub, aki: null);
        var ski = new X509SubjectKeyIdentifierExtension(pub, false);
        req.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromSubjectKeyIdentifier(ski));
        return req.Create(subject, KeyAlgorithms.GeneratorFor(key), notBefore, notAfter, serial);
    }

    /// <summary>
    /// An intermediate CA signed by an upstream CA. NotAfter is capped at the upstream's NotAfter; AKI is the upstream's SKI.
    /// </summary>
    public static X509Certificate2 CreateIntermediateCa(TrustDomain td, AsymmetricAlgorithm key, X509Certificate2 upstreamCert,
        AsymmetricAlgorithm upstreamKey, DateTimeOffset notBefore, DateTimeOffset notAfter)
    {
        RequireTd(td);
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(upstreamCert);
        ArgumentNullException.ThrowIfNull(upstreamKey);
        var upstreamNotAfter = new DateTimeOffset(upstreamCert.NotAfter.ToUniversalTime());
        if (notAfter > upstreamNotAfter)
        {
            notAfter = upstreamNotAfter;
        }
        RequireWindow(notBefore, notAfter);
        var upstreamPub = KeyAlgorithms.Spki(upstreamCert.PublicKey);
        if (!upstreamPub.AsSpan().SequenceEqual(KeyAlgorithms.Spki(KeyAlgorithms.PublicKeyOf(upstreamKey))))
        {
            throw new ArgumentException("the upstream key does not match the upstream certificate: give the key pair of that certificate", nameof(upstreamKey));
        }
        var serial = KeyAlgorithms.RandomSerial();
        var subject = CaSubject(td, serial);
        var pub = KeyAlgorithms.PublicKeyOf(key);
        var req = new CertificateRequest(subject, pub, KeyAlgorithms.HashFor(upstreamKey));
        AddCaExtensions(req, td, pub, AuthorityKeyIdOf(upstreamCert));
        return req.Create(upstreamCert.SubjectName, KeyAlgorithms.GeneratorFor(upstreamKey), notBefore, notAfter, serial);
    }

    /// <summary>AKI for certificates issued by <paramref name="issuer"/>: its SKI, or one computed from its key.</summary>
    internal static X509AuthorityKeyIdentifierExtension AuthorityKeyIdOf(X509Certificate2 issuer)
    {
        var ski = issuer.Extensions.OfType<X509SubjectKeyIdentifierExtension>().FirstOrDefault()
            ?? new X509SubjectKeyIdentifierExtension(issuer.PublicKey, false);
        return X509AuthorityKeyIdentifierExtension.CreateFromSubjectKeyIdentifier(ski);
    }

    private static void AddCaExtensions(CertificateRequest req, TrustDomain td, PublicKey pub, X509AuthorityKeyIdentifierExtension? aki)
    {
        req.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        req.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        req.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(pub, false));
        if (aki is not null)
        {
            req.CertificateExtensions.Add(aki);
        }
        req.CertificateExtensions.Add(SanExtension.Build(td.IdString, null, critical: false));
    }

    /// <summary>O=Writ, CN=&lt;td&gt;, serialNumber=&lt;hex&gt; — the serial keeps rotated CAs' subjects distinct.</summary>
    private static X500DistinguishedName CaSubject(TrustDomain td, byte[] serial)
    {
        var b = new X500DistinguishedNameBuilder();
        b.AddOrganizationName("Writ");
        b.AddCommonName(td.Name);
        b.Add("2.5.4.5", Convert.ToHexStringLower(serial), UniversalTagNumber.PrintableString);
        return b.Build();
    }

    private static void RequireTd(TrustDomain td)
    {
        if (td.IsZero)
        {
            throw new ArgumentException("trust domain is the zero value: parse a trust domain first", nameof(td));
        }
    }

    private static void RequireWindow(DateTimeOffset notBefore, DateTimeOffset notAfter)
    {
        if (notAfter <= notBefore)
        {
            throw new ArgumentException($"certificate validity is empty (notBefore {notBefore:O} is not before notAfter {notAfter:O}): check the TTL and the upstream CA's lifetime", nameof(notAfter));
        }
    }

    /// <summary>The trust domain a CA certificate names in its URI SAN (<c>spiffe://td</c>), as Writ's CAs do; null if none.</summary>
    public static TrustDomain? TrustDomainOf(X509Certificate2 ca)
    {
        var uris = Internal.SanExtension.ReadUris(ca, out _);
        foreach (var uri in uris ?? [])
        {
            if (SpiffeId.TryParse(uri, out var id, out _) && id.Path.Length == 0)
            {
                return id.TrustDomain;
            }
        }
        return null;
    }
}
