using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Writ.Server.Discovery;

namespace Writ.Server.Tests.Discovery;

/// <summary>
/// `writ oidc-discovery run --tls-cert/--tls-key` serves a renewed certificate without a restart (cert-manager, certbot
/// replace the files), checks the files at most once a second, and keeps the pair it has when the new files cannot be
/// used (a half-written file, a key that is not the certificate's, an expired certificate).
/// </summary>
public sealed class DiscoveryTlsReloadTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("writ-tls-").FullName;
    private readonly FakeTimeProvider _time = new(DateTimeOffset.UtcNow);

    private string Cert => Path.Combine(_dir, "tls.crt");
    private string Key => Path.Combine(_dir, "tls.key");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void A_renewed_pair_is_served_after_the_next_check_and_not_before()
    {
        Write("first", TimeSpan.FromDays(30));
        var tls = DiscoveryTls.Load(Cert, Key, _time, NullLogger.Instance);
        Assert.Equal("CN=first", tls.Current.TargetCertificate.Subject);

        Write("second", TimeSpan.FromDays(30));
        Assert.Equal("CN=first", tls.Current.TargetCertificate.Subject);   // checked at most once a second
        _time.Advance(TimeSpan.FromSeconds(1.5));
        Assert.Equal("CN=second", tls.Current.TargetCertificate.Subject);
    }

    [Fact]
    public void A_half_written_certificate_leaves_the_previous_pair_in_place()
    {
        Write("first", TimeSpan.FromDays(30));
        var tls = DiscoveryTls.Load(Cert, Key, _time, NullLogger.Instance);
        File.WriteAllText(Cert, "-----BEGIN CERTIFICATE-----\nMIIB");
        _time.Advance(TimeSpan.FromSeconds(2));
        Assert.Equal("CN=first", tls.Current.TargetCertificate.Subject);
    }

    [Fact]
    public void A_key_that_is_not_the_certificates_leaves_the_previous_pair_in_place()
    {
        // An attacker (or a botched renewal) who can replace only the key must not get the listener to present a
        // certificate with a key it does not hold, nor stop it serving.
        Write("first", TimeSpan.FromDays(30));
        var tls = DiscoveryTls.Load(Cert, Key, _time, NullLogger.Instance);
        using var other = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        File.WriteAllText(Key, other.ExportPkcs8PrivateKeyPem());
        _time.Advance(TimeSpan.FromSeconds(2));
        Assert.Equal("CN=first", tls.Current.TargetCertificate.Subject);
    }

    [Fact]
    public void An_expired_replacement_leaves_the_previous_pair_in_place()
    {
        Write("first", TimeSpan.FromDays(30));
        var tls = DiscoveryTls.Load(Cert, Key, _time, NullLogger.Instance);
        Write("expired", TimeSpan.FromMinutes(-1));
        _time.Advance(TimeSpan.FromSeconds(2));
        Assert.Equal("CN=first", tls.Current.TargetCertificate.Subject);

        // A good pair written after the bad one is picked up.
        Write("third", TimeSpan.FromDays(30));
        _time.Advance(TimeSpan.FromSeconds(2));
        Assert.Equal("CN=third", tls.Current.TargetCertificate.Subject);
    }

    private void Write(string cn, TimeSpan validFor)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=" + cn, key, HashAlgorithmName.SHA256);
        var now = _time.GetUtcNow();
        var from = validFor < TimeSpan.Zero ? now.AddDays(-1) : now.AddMinutes(-1);
        using var cert = request.CreateSelfSigned(from, now + validFor);
        File.WriteAllText(Cert, cert.ExportCertificatePem());
        File.WriteAllText(Key, key.ExportPkcs8PrivateKeyPem());
    }
}
