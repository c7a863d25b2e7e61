using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Writ.Spiffe.Internal;

namespace Writ.Spiffe.X509;

/// <summary>Signs X.509-SVID leaf certificates (X509-SVID.md §3.1, §4), the way SPIRE does.</summary>
public static class X509SvidMinter
{
    /// <summary>Backdating of NotBefore, to tolerate clock skew between parties.</summary>
    public static readonly TimeSpan Backdate = TimeSpan.FromSeconds(10);

    private static readonly Oid ServerAuth = new("1.3.6.1.5.5.7.3.1", "Server Authentication");
    private static readonly Oid ClientAuth = new("1.3.6.1.5.5.7.3.2", "Client Authentication");

    /// <summary>
    /// Signs a leaf for <paramref name="id"/> and <paramref name="subjectKey"/>: NotBefore = now − 10 s, NotAfter = min(now + ttl, CA NotAfter),
    /// exactly one URI SAN (the ID) plus optional DNS SANs, KeyUsage digitalSignature (critical), EKU serverAuth+clientAuth,
    /// BasicConstraints cA=false (critical), SKI and AKI, random serial.
    /// </summary>
    public static X509Certificate2 SignLeaf(X509Certificate2 caCert, AsymmetricAlgorithm caKey, SpiffeId id, PublicKey subjectKey,
        DateTimeOffset now, TimeSpan ttl, IReadOnlyList<string>? dnsNames = null)
    {
        ArgumentNullException.ThrowIfNull(caCert);
        ArgumentNullException.ThrowIfNull(caKey);
        ArgumentNullException.ThrowIfNull(id);
        ArgumentNullException.ThrowIfNull(subjectKey);
        if (id.IsRoot)
        {
            throw new ArgumentException($"'{id}' has no path and names the trust domain itself: an X.509-SVID leaf needs a workload path (X509-SVID §3.1)", nameof(id));
        }
        if (ttl <= TimeSpan.Zero)
        {
            throw new ArgumentException("ttl must be positive", nameof(ttl));
        }
        foreach (var dns in dnsNames ?? [])
        {
            if (string.IsNullOrEmpty(dns) || dns.Any(c => c > 0x7E || c <= 0x20))
            {
                throw new ArgumentException("a DNS SAN is empty or has non-ASCII characters: give plain DNS names", nameof(dnsNames));
            }
        }
        var notBefore = now - Backdate;
        var notAfter = now + ttl;
        var caNotAfter = new DateTimeOffset(caCert.NotAfter.ToUniversalTime());
        if (notAfter > caNotAfter)
        {
            notAfter = caNotAfter;
        }
        if (notAfter <= notBefore)
        {
            throw new ArgumentException("the CA certificate expires before the SVID could start: rotate the CA", nameof(caCert));
        }

        var subject = new X500DistinguishedNameBuilder();
        subject.AddOrganizationName("Writ");
        var req = new CertificateRequest(subject.Build(), subjectKey, KeyAlgorithms.HashFor(caKey));
        req.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        req.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        req.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([ServerAuth, ClientAuth], false));
        req.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(subjectKey, false));
        req.CertificateExtensions.Add(X509Authorities.AuthorityKeyIdOf(caCert));
        req.CertificateExtensions.Add(SanExtension.Build(id.ToString(), dnsNames, critical: false));
        // The CA key is shared by concurrent issuances; .NET does not promise key objects are thread-safe.
        lock (caKey)
        {
            return req.Create(caCert.SubjectName, KeyAlgorithms.GeneratorFor(caKey), notBefore, notAfter, KeyAlgorithms.RandomSerial());
        }
    }
}
