using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Writ.Server.Ca;
using Writ.Spiffe;

namespace Writ.Server.Hosting;

/// <summary>
/// The server's own X.509-SVID (<c>spiffe://&lt;td&gt;/writ/server</c>) used as TLS certificate on the agent API.
/// Agents authenticate the server by this ID and the trust bundle, never by host name. Re-issued at half its life
/// or when the CA's signing authority changes.
/// </summary>
public sealed class ServerTlsCertificate(WritCa ca, SpiffeId serverId, TimeSpan ttl, TimeProvider time)
{
    private readonly Lock _lock = new();
    private SslStreamCertificateContext? _context;
    private DateTimeOffset _renewAt;
    private DateTimeOffset _caNotAfter;

    public SslStreamCertificateContext Current
    {
        get
        {
            lock (_lock)
            {
                if (_context is null || time.GetUtcNow() >= _renewAt || ca.ActiveX509NotAfter != _caNotAfter)
                {
                    _context = Issue();
                }
                return _context;
            }
        }
    }

    private SslStreamCertificateContext Issue()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var chain = ca.SignX509Svid(serverId, new PublicKey(key), ttl, ["localhost"]);
        // Round-trip through PKCS#12 so the private key is usable by the TLS stack on every platform.
        using var withKey = chain[0].CopyWithPrivateKey(key);
        var leaf = X509CertificateLoader.LoadPkcs12(withKey.Export(X509ContentType.Pkcs12), null);
        var now = time.GetUtcNow();
        _renewAt = now + ((new DateTimeOffset(leaf.NotAfter.ToUniversalTime()) - now) / 2);
        _caNotAfter = ca.ActiveX509NotAfter;
        return SslStreamCertificateContext.Create(leaf, new X509Certificate2Collection(chain.Skip(1).ToArray()), offline: true);
    }
}
