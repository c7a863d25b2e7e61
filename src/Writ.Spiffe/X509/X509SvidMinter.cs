using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Writ.Spiffe.Internal;

namespace Writ.Spiffe.X509;

/// <summary>
/// A leaf signed by <see cref="X509SvidMinter.SignLeafDer"/>: its DER and the fields callers need without parsing it —
/// the serial as upper-case hex (as <see cref="X509Certificate.SerialNumber"/>) and the validity as encoded (whole seconds, UTC).
/// </summary>
public sealed record SignedX509Leaf(byte[] Der, string SerialNumber, DateTimeOffset NotBefore, DateTimeOffset NotAfter);

/// <summary>Signs X.509-SVID leaf certificates (X509-SVID.md §3.1, §4), the way SPIRE does.</summary>
public static class X509SvidMinter
{
    /// <summary>Backdating of NotBefore, to tolerate clock skew between parties.</summary>
    public static readonly TimeSpan Backdate = TimeSpan.FromSeconds(10);

    internal static readonly Oid ServerAuth = new("1.3.6.1.5.5.7.3.1", "Server Authentication");
    internal static readonly Oid ClientAuth = new("1.3.6.1.5.5.7.3.2", "Client Authentication");

    /// <summary>The subject of every leaf: O=Writ (the identity is in the URI SAN).</summary>
    internal static readonly X500DistinguishedName LeafSubject = BuildLeafSubject();

    /// <summary>
    /// Signs a leaf for <paramref name="id"/> and <paramref name="subjectKey"/>: NotBefore = now − 10 s, NotAfter = min(now + ttl, CA NotAfter),
    /// exactly one URI SAN (the ID) plus optional DNS SANs, KeyUsage digitalSignature (critical), EKU serverAuth+clientAuth,
    /// BasicConstraints cA=false (critical), SKI and AKI, random serial.
    /// </summary>
    /// <remarks>
    /// ECDSA CA keys take the fast path (<see cref="X509LeafTemplate"/>): the fixed parts of the TBSCertificate are encoded once
    /// per CA and each call encodes only serial, validity, subject key, SKI and SANs around one signature. Other keys (RSA) go
    /// through <see cref="SignLeafWithCertificateRequest"/>. Both produce the same certificate profile, byte for byte.
    /// </remarks>
    public static X509Certificate2 SignLeaf(X509Certificate2 caCert, AsymmetricAlgorithm caKey, SpiffeId id, PublicKey subjectKey,
        DateTimeOffset now, TimeSpan ttl, IReadOnlyList<string>? dnsNames = null)
    {
        if (caKey is not ECDsa)
        {
            var (notBefore, notAfter) = Check(caCert, caKey, id, subjectKey, now, ttl, dnsNames);
            return Create(caCert, caKey, id, subjectKey, notBefore, notAfter, dnsNames, KeyAlgorithms.RandomSerial());
        }
        return X509CertificateLoader.LoadCertificate(SignLeafDer(caCert, caKey, id, subjectKey, now, ttl, dnsNames).Der);
    }

    /// <summary>
    /// The same leaf as <see cref="SignLeaf"/>, as DER with the fields a server logs and returns, for callers that only send
    /// it on: skips parsing it back into an <see cref="X509Certificate2"/>, which with OpenSSL 3.0 costs several times the
    /// signature itself.
    /// </summary>
    public static SignedX509Leaf SignLeafDer(X509Certificate2 caCert, AsymmetricAlgorithm caKey, SpiffeId id, PublicKey subjectKey,
        DateTimeOffset now, TimeSpan ttl, IReadOnlyList<string>? dnsNames = null)
    {
        var (notBefore, notAfter) = Check(caCert, caKey, id, subjectKey, now, ttl, dnsNames);
        if (caKey is not ECDsa ec)
        {
            using var slow = Create(caCert, caKey, id, subjectKey, notBefore, notAfter, dnsNames, KeyAlgorithms.RandomSerial());
            return new SignedX509Leaf(slow.RawData, slow.SerialNumber, WholeSeconds(notBefore), WholeSeconds(notAfter));
        }
        var template = X509LeafTemplate.For(caCert, ec);
        Span<byte> serial = stackalloc byte[16];
        RandomSerial(serial);
        var der = template.Sign(serial, notBefore, notAfter, subjectKey.ExportSubjectPublicKeyInfo(), subjectKey.EncodedKeyValue.RawData,
            id.ToString(), dnsNames);
        return new SignedX509Leaf(der, Convert.ToHexString(serial), WholeSeconds(notBefore), WholeSeconds(notAfter));
    }

    private static DateTimeOffset WholeSeconds(DateTimeOffset t)
    {
        var u = t.ToUniversalTime();
        return u.AddTicks(-(u.Ticks % TimeSpan.TicksPerSecond));
    }

    /// <summary>
    /// The same leaf as <see cref="SignLeaf"/>, built with .NET's <see cref="CertificateRequest"/>: the reference encoder, used for
    /// RSA CA keys and as the baseline the fast path is tested and benchmarked against.
    /// </summary>
    public static X509Certificate2 SignLeafWithCertificateRequest(X509Certificate2 caCert, AsymmetricAlgorithm caKey, SpiffeId id,
        PublicKey subjectKey, DateTimeOffset now, TimeSpan ttl, IReadOnlyList<string>? dnsNames = null)
    {
        var (notBefore, notAfter) = Check(caCert, caKey, id, subjectKey, now, ttl, dnsNames);
        return Create(caCert, caKey, id, subjectKey, notBefore, notAfter, dnsNames, KeyAlgorithms.RandomSerial());
    }

    /// <summary>Random positive serial in place: 16 bytes, first byte non-zero and below 0x80 (minimal DER, ≥ 120 random bits).</summary>
    internal static void RandomSerial(Span<byte> serial)
    {
        RandomNumberGenerator.Fill(serial);
        serial[0] = (byte)((serial[0] & 0x7F) | 0x01);
    }

    private static X500DistinguishedName BuildLeafSubject()
    {
        var subject = new X500DistinguishedNameBuilder();
        subject.AddOrganizationName("Writ");
        return subject.Build();
    }

    private static (DateTimeOffset NotBefore, DateTimeOffset NotAfter) Check(X509Certificate2 caCert, AsymmetricAlgorithm caKey, SpiffeId id,
        PublicKey subjectKey, DateTimeOffset now, TimeSpan ttl, IReadOnlyList<string>? dnsNames)
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
        return (notBefore, notAfter);
    }

    /// <summary>The reference encoding with .NET's CertificateRequest; internal so tests can give it a fixed serial.</summary>
    internal static X509Certificate2 Create(X509Certificate2 caCert, AsymmetricAlgorithm caKey, SpiffeId id, PublicKey subjectKey,
        DateTimeOffset notBefore, DateTimeOffset notAfter, IReadOnlyList<string>? dnsNames, byte[] serial)
    {
        var req = new CertificateRequest(LeafSubject, subjectKey, KeyAlgorithms.HashFor(caKey));
        req.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        req.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        req.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([ServerAuth, ClientAuth], false));
        req.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(subjectKey, false));
        req.CertificateExtensions.Add(X509Authorities.AuthorityKeyIdOf(caCert));
        req.CertificateExtensions.Add(SanExtension.Build(id.ToString(), dnsNames, critical: false));
        // The CA key is shared by concurrent issuances; .NET does not promise key objects are thread-safe.
        lock (caKey)
        {
            return req.Create(caCert.SubjectName, KeyAlgorithms.GeneratorFor(caKey), notBefore, notAfter, serial);
        }
    }
}
