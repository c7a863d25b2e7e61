using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging;
using Writ.Protocol.Errors;

namespace Writ.Server.Discovery;

/// <summary>
/// The HTTPS certificate of the discovery provider, from PEM files (<c>--tls-cert</c>: the certificate, then any
/// intermediates; <c>--tls-key</c>: its private key). The files are checked again at most once a second when a
/// connection arrives: a renewed certificate (cert-manager, certbot) is served without a restart; one that cannot be used
/// leaves the previous in place, with a warning (event 1975).
/// </summary>
public sealed class DiscoveryTls
{
    private readonly string _certPath;
    private readonly string _keyPath;
    private readonly TimeProvider _time;
    private readonly ILogger _log;
    private readonly Lock _gate = new();
    private SslStreamCertificateContext _current;
    private (DateTime, long, DateTime, long) _stamp;
    private DateTimeOffset _checkedAt;

    private DiscoveryTls(string certPath, string keyPath, TimeProvider time, ILogger log, SslStreamCertificateContext first, (DateTime, long, DateTime, long) stamp)
    {
        _certPath = certPath;
        _keyPath = keyPath;
        _time = time;
        _log = log;
        _current = first;
        _stamp = stamp;
        _checkedAt = time.GetUtcNow();
    }

    /// <summary>Loads the pair; a pair that cannot be used refuses the start (<see cref="DiscoveryCodes.Tls"/>).</summary>
    public static DiscoveryTls Load(string certPath, string keyPath, TimeProvider time, ILogger log)
    {
        try
        {
            var stamp = Stamp(certPath, keyPath);
            return new DiscoveryTls(certPath, keyPath, time, log, Read(certPath, keyPath, time.GetUtcNow()), stamp);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or CryptographicException or ArgumentException or FormatException)
        {
            throw new WritException(DiscoveryCodes.Tls, WritErrorKind.InvalidArgument,
                $"cannot use --tls-cert {certPath} with --tls-key {keyPath}: {e.Message.Split('\n')[0].Trim()}; give a PEM certificate (then its intermediates) and the PEM private key that matches it");
        }
    }

    /// <summary>The certificate to present now (reloaded first when its files changed).</summary>
    public SslStreamCertificateContext Current
    {
        get
        {
            var now = _time.GetUtcNow();
            if (now - _checkedAt < TimeSpan.FromSeconds(1))
            {
                return _current;
            }
            lock (_gate)
            {
                if (now - _checkedAt < TimeSpan.FromSeconds(1))
                {
                    return _current;
                }
                _checkedAt = now;
                try
                {
                    var stamp = Stamp(_certPath, _keyPath);
                    if (stamp != _stamp)
                    {
                        _stamp = stamp;
                        _current = Read(_certPath, _keyPath, now);
                        ServerLog.DiscoveryTlsReloaded(_log, _certPath, _current.TargetCertificate.Subject, _current.TargetCertificate.NotAfter.ToUniversalTime());
                    }
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException or CryptographicException or ArgumentException or FormatException)
                {
                    ServerLog.DiscoveryTlsReloadFailed(_log, _certPath, e.Message.Split('\n')[0].Trim());
                }
                return _current;
            }
        }
    }

    private static (DateTime, long, DateTime, long) Stamp(string cert, string key)
    {
        var c = new FileInfo(cert);
        var k = new FileInfo(key);
        if (!c.Exists || !k.Exists)
        {
            throw new IOException($"'{(c.Exists ? key : cert)}' does not exist");
        }
        return (c.LastWriteTimeUtc, c.Length, k.LastWriteTimeUtc, k.Length);
    }

    private static SslStreamCertificateContext Read(string certPath, string keyPath, DateTimeOffset now)
    {
        var all = new X509Certificate2Collection();
        all.ImportFromPemFile(certPath);
        if (all.Count == 0)
        {
            throw new FormatException($"'{certPath}' holds no PEM certificate");
        }
        using var pair = X509Certificate2.CreateFromPemFile(certPath, keyPath);
        if (pair.NotAfter.ToUniversalTime() <= now.UtcDateTime)
        {
            throw new FormatException($"the certificate expired at {pair.NotAfter.ToUniversalTime():u}");
        }
        // An ephemeral key is not usable by every TLS back end: hand over an imported copy.
        var leaf = X509CertificateLoader.LoadPkcs12(pair.Export(X509ContentType.Pkcs12), null);
        var intermediates = new X509Certificate2Collection();
        foreach (var c in all.Skip(1))
        {
            intermediates.Add(c);
        }
        return SslStreamCertificateContext.Create(leaf, intermediates, offline: true);
    }
}
