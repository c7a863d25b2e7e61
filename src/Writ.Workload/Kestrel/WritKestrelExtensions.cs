using System.Net.Security;
using System.Security.Authentication;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Writ.Spiffe.Bundles;

namespace Writ.Workload.Kestrel;

/// <summary>Kestrel endpoints that serve this workload's X.509-SVID and check callers' SPIFFE identities.</summary>
public static class WritKestrelExtensions
{
    /// <summary>
    /// HTTPS on this endpoint with the CURRENT SVID of <paramref name="source"/> (read at each handshake: a rotation is
    /// used by the next connection, no restart) and its intermediates. Client certificates are requested and verified
    /// as X.509-SVIDs against <paramref name="bundles"/>, then by <paramref name="clientAuthorizer"/> (null: any
    /// verified SPIFFE ID of a trust domain in <paramref name="bundles"/>); a refused client fails the handshake. With
    /// <paramref name="requireClientCertificate"/> false a client without a certificate is let in (the application
    /// decides), but a client WITH a certificate that fails verification is still refused.
    /// </summary>
    public static ListenOptions UseWritServerCertificate(this ListenOptions listenOptions, IX509SvidSource source, IBundleSource bundles,
        SpiffeIdAuthorizer? clientAuthorizer = null, bool requireClientCertificate = true)
        => UseWritServerCertificate(listenOptions, source, bundles, clientAuthorizer, requireClientCertificate, null, null);

    /// <summary>
    /// As the other overload, with the clock used for expiry checks, the logger of refusals (event 5003) and the revoked
    /// credentials (<paramref name="revocations"/>, e.g. a <see cref="RevocationSource"/>): a revoked client certificate
    /// fails the handshake of every new connection.
    /// </summary>
    public static ListenOptions UseWritServerCertificate(this ListenOptions listenOptions, IX509SvidSource source, IBundleSource bundles,
        SpiffeIdAuthorizer? clientAuthorizer, bool requireClientCertificate, TimeProvider? timeProvider, ILogger? logger,
        IRevocationSource? revocations = null)
    {
        ArgumentNullException.ThrowIfNull(listenOptions);
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(bundles);
        var verifier = new SpiffeCertificateVerifier(bundles, clientAuthorizer ?? Authorize.Any(), timeProvider, revocations, logger ?? NullLogger.Instance);
        var certificates = new SvidCertificateCache();
        return listenOptions.UseHttps(new TlsHandshakeCallbackOptions
        {
            OnConnection = _ =>
            {
                var entry = certificates.For(source.GetX509Svid());
                return ValueTask.FromResult(new SslServerAuthenticationOptions
                {
                    ServerCertificateContext = entry.Context,
                    EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
                    // Always ask: an optional certificate must still be verified when it is sent.
                    ClientCertificateRequired = true,
                    CertificateRevocationCheckMode = System.Security.Cryptography.X509Certificates.X509RevocationMode.NoCheck,
                    RemoteCertificateValidationCallback = (_, certificate, chain, _) =>
                        certificate is null ? !requireClientCertificate : verifier.Verify(certificate, chain).IsValid,
                    ApplicationProtocols = Alpn(listenOptions.Protocols),
                });
            },
        });
    }

    private static List<SslApplicationProtocol> Alpn(HttpProtocols protocols)
    {
        var list = new List<SslApplicationProtocol>();
        if ((protocols & HttpProtocols.Http2) != 0)
        {
            list.Add(SslApplicationProtocol.Http2);
        }
        if ((protocols & HttpProtocols.Http1) != 0)
        {
            list.Add(SslApplicationProtocol.Http11);
        }
        return list;
    }
}
