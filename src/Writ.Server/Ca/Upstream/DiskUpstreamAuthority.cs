using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Writ.Server.Keys;
using Writ.Spiffe;
using Writ.Spiffe.X509;

namespace Writ.Server.Ca.Upstream;

/// <summary>
/// An upstream CA held in two PEM files (<c>ca.upstream.certificate</c>: its certificate first, up to the root;
/// <c>ca.upstream.key</c>: its unencrypted private key). The files are read on every use, so a renewed upstream is picked
/// up without a restart, and the private key is not kept in memory between signings.
/// </summary>
public sealed class DiskUpstreamAuthority(UpstreamCaOptions options) : IUpstreamAuthority
{
    private readonly UpstreamCaOptions _options = options ?? throw new ArgumentNullException(nameof(options));

    public string Name => _options.CertificatePath;

    public Task VerifyAsync(DateTimeOffset now, CancellationToken ct)
    {
        var (_, key) = Load(now);
        key.Dispose();
        return Task.CompletedTask;
    }

    public Task<IReadOnlyList<X509Certificate2>> ChainAsync(CancellationToken ct) => Task.FromResult<IReadOnlyList<X509Certificate2>>(LoadCertificates());

    public Task<IReadOnlyList<X509Certificate2>> MintIntermediateAsync(TrustDomain td, PublicKey subjectKey, DateTimeOffset notBefore,
        DateTimeOffset notAfter, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(subjectKey);
        var (certs, key) = Load(notBefore);
        using (key)
        using (AsymmetricAlgorithm subject = subjectKey.GetECDsaPublicKey() as AsymmetricAlgorithm ?? subjectKey.GetRSAPublicKey()
            ?? throw new ArgumentException("the intermediate's key must be EC or RSA", nameof(subjectKey)))
        {
            return Task.FromResult<IReadOnlyList<X509Certificate2>>(
                [X509Authorities.CreateIntermediateCa(td, subject, certs[0], key, notBefore, notAfter), .. certs]);
        }
    }

    private List<X509Certificate2> LoadCertificates()
    {
        var path = _options.CertificatePath;
        if (!File.Exists(path))
        {
            throw CaException.Upstream(CaException.UpstreamMissing, $"upstream CA certificate file '{path}' does not exist: check ca.upstream.certificate");
        }
        var col = new X509Certificate2Collection();
        try
        {
            col.ImportFromPemFile(path);
        }
        catch (Exception e) when (e is CryptographicException or IOException or UnauthorizedAccessException)
        {
            throw CaException.Upstream(CaException.UpstreamUnreadable, $"upstream CA certificate file '{path}' could not be read as PEM certificates: give the upstream CA's certificate in PEM (-----BEGIN CERTIFICATE-----)");
        }
        if (col.Count == 0)
        {
            throw CaException.Upstream(CaException.UpstreamUnreadable, $"upstream CA certificate file '{path}' holds no PEM certificate: give the upstream CA's certificate in PEM (-----BEGIN CERTIFICATE-----)");
        }
        return [.. col];
    }

    /// <summary>The upstream's certificates (signing certificate first) and its private key, every way the files can be wrong checked.</summary>
    private (List<X509Certificate2> Certs, AsymmetricAlgorithm Key) Load(DateTimeOffset now)
    {
        var up = _options;
        var certs = LoadCertificates();
        var cert = certs[0];
        // The bundle must hold a root relying parties can anchor on (SPIFFE bundles hold roots; an intermediate as anchor
        // fails path validation), so the file has to carry the chain up to it.
        if (!CaCertificates.IsSelfSigned(certs[^1]))
        {
            throw CaException.Upstream(CaException.UpstreamInvalid, $"upstream CA certificate file '{up.CertificatePath}' does not end with a self-signed root: append the root CA certificate (and any certificates between) after the upstream CA's certificate");
        }
        if (!CaCertificates.LinkUp(certs))
        {
            throw CaException.Upstream(CaException.UpstreamInvalid, $"the certificates in upstream CA file '{up.CertificatePath}' do not form one chain: list the upstream CA's certificate first, then each issuer up to the root");
        }
        if (cert.Extensions.OfType<X509BasicConstraintsExtension>().FirstOrDefault() is not { CertificateAuthority: true })
        {
            throw CaException.Upstream(CaException.UpstreamInvalid, $"the first certificate in upstream CA file '{up.CertificatePath}' is not a CA (no basicConstraints cA=true): put the upstream CA's own certificate first");
        }
        if (CaCertificates.NotAfterOf(cert) <= now)
        {
            throw CaException.Upstream(CaException.UpstreamExpired, $"the upstream CA certificate in '{up.CertificatePath}' expired at {cert.NotAfter.ToUniversalTime():u}: renew the upstream CA");
        }
        if (!File.Exists(up.KeyPath))
        {
            throw CaException.Upstream(CaException.UpstreamMissing, $"upstream CA key file '{up.KeyPath}' does not exist: check ca.upstream.key");
        }
        string pem;
        try
        {
            pem = File.ReadAllText(up.KeyPath);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw CaException.Upstream(CaException.UpstreamUnreadable, $"upstream CA key file '{up.KeyPath}' could not be read: make it readable by the server's user");
        }
        if (pem.Contains("ENCRYPTED", StringComparison.Ordinal))
        {
            throw CaException.Upstream(CaException.UpstreamUnreadable, $"upstream CA key file '{up.KeyPath}' is encrypted: give the key as unencrypted PEM (PKCS#8, EC or RSA), readable only by the server's user");
        }
        var key = KeyTypes.ImportEcOrRsa(k => k.ImportFromPem(pem)) ?? throw CaException.Upstream(CaException.UpstreamUnreadable,
            $"upstream CA key file '{up.KeyPath}' is not a PEM EC or RSA private key: give the upstream CA's private key as unencrypted PEM");
        if (!CaCertificates.SameSpki(key, cert.PublicKey.ExportSubjectPublicKeyInfo()))
        {
            key.Dispose();
            throw CaException.Upstream(CaException.UpstreamInvalid, $"upstream CA key file '{up.KeyPath}' does not hold the private key of the certificate in '{up.CertificatePath}': give the matching key pair");
        }
        return (certs, key);
    }
}
