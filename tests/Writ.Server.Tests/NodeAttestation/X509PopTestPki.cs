using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Google.Protobuf;
using Writ.Protocol.X509Pop;

namespace Writ.Server.Tests.NodeAttestation;

/// <summary>A machine PKI made in the test with <see cref="CertificateRequest"/>: CAs, intermediates and node certificates.</summary>
internal static class X509PopTestPki
{
    public const string ClientAuth = "1.3.6.1.5.5.7.3.2";
    public const string ServerAuth = "1.3.6.1.5.5.7.3.1";

    /// <summary>A CA (self-signed without <paramref name="issuer"/>); <paramref name="isCa"/> false makes a "CA" whose basicConstraints say it is none.</summary>
    public static X509Certificate2 CaCert(string cn, DateTimeOffset notBefore, DateTimeOffset notAfter, X509Certificate2? issuer = null, bool isCa = true)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var req = new CertificateRequest($"CN={cn}", key, HashAlgorithmName.SHA256);
        req.CertificateExtensions.Add(new X509BasicConstraintsExtension(isCa, false, 0, true));
        req.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign | X509KeyUsageFlags.DigitalSignature, true));
        req.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(req.PublicKey, false));
        return issuer is null ? req.CreateSelfSigned(notBefore, notAfter) : Issue(req, issuer, key, notBefore, notAfter);
    }

    /// <summary>A node certificate with <paramref name="key"/> (default a new P-256 key), issued by <paramref name="issuer"/>.</summary>
    public static X509Certificate2 Node(X509Certificate2 issuer, string cn, DateTimeOffset notBefore, DateTimeOffset notAfter,
        X509KeyUsageFlags keyUsage = X509KeyUsageFlags.DigitalSignature, string[]? eku = null, string[]? dns = null, AsymmetricAlgorithm? key = null)
    {
        using var owned = key is null ? ECDsa.Create(ECCurve.NamedCurves.nistP256) : null;
        var k = key ?? owned!;
        var req = k switch
        {
            ECDsa ec => new CertificateRequest($"CN={cn}", ec, HashAlgorithmName.SHA256),
            RSA rsa => new CertificateRequest($"CN={cn}", rsa, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1),
            _ => throw new ArgumentException("EC or RSA", nameof(key)),
        };
        req.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, false));
        if (keyUsage != X509KeyUsageFlags.None)
        {
            req.CertificateExtensions.Add(new X509KeyUsageExtension(keyUsage, true));
        }
        var usages = new OidCollection();
        foreach (var o in eku ?? [ClientAuth])
        {
            usages.Add(new Oid(o));
        }
        req.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(usages, false));
        var san = new SubjectAlternativeNameBuilder();
        foreach (var d in dns ?? [$"{cn}.fleet.example"])
        {
            san.AddDnsName(d);
        }
        req.CertificateExtensions.Add(san.Build());
        return Issue(req, issuer, k, notBefore, notAfter);
    }

    /// <summary>Signs <paramref name="req"/> with the issuer's key without .NET's issuer checks (so a non-CA can "issue").</summary>
    private static X509Certificate2 Issue(CertificateRequest req, X509Certificate2 issuer, AsymmetricAlgorithm subjectKey, DateTimeOffset notBefore, DateTimeOffset notAfter)
    {
        using var issuerKey = issuer.GetECDsaPrivateKey() ?? throw new ArgumentException("the test PKI's issuers have EC keys", nameof(issuer));
        req.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(issuer, includeKeyIdentifier: true, includeIssuerAndSerial: false));
        var serial = RandomNumberGenerator.GetBytes(16);
        serial[0] &= 0x7f;
        using var cert = req.Create(issuer.SubjectName, X509SignatureGenerator.CreateForECDsa(issuerKey), notBefore, notAfter, serial);
        return subjectKey switch
        {
            ECDsa ec => cert.CopyWithPrivateKey(ec),
            RSA rsa => cert.CopyWithPrivateKey(rsa),
            _ => throw new ArgumentException("EC or RSA", nameof(subjectKey)),
        };
    }

    /// <summary>The evidence payload for a chain (leaf first).</summary>
    public static byte[] Evidence(params X509Certificate2[] chain)
    {
        var e = new X509PopEvidence();
        e.Chain.AddRange(chain.Select(c => ByteString.CopyFrom(c.RawData)));
        return e.ToByteArray();
    }

    /// <summary>An honest agent's answer: the key's proof over the challenge's nonce and CSR digest.</summary>
    public static Func<ReadOnlyMemory<byte>, byte[]> Answer(AsymmetricAlgorithm key, Func<X509PopChallenge, byte[]>? csrDigest = null) => c =>
    {
        var challenge = X509PopChallenge.Parser.ParseFrom(c.Span);
        var message = X509PopProof.Message(challenge.Nonce.Span, csrDigest is null ? challenge.CsrSha256.Span : csrDigest(challenge));
        return new X509PopAnswer { Signature = ByteString.CopyFrom(X509PopProof.Sign(key, message)) }.ToByteArray();
    };
}
