using System.Net.Security;
using System.Security.Authentication;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Writ.Spiffe.Bundles;

namespace Writ.Workload.Http;

/// <summary>
/// mTLS for <see cref="HttpClient"/> with SPIFFE identities: the client presents the CURRENT X.509-SVID of its source
/// at every new connection (so rotation needs no new client) and accepts a server only when its certificate is an
/// X.509-SVID that verifies to the bundle of its trust domain and the authorizer accepts its SPIFFE ID. The host name
/// is never checked: the SPIFFE ID is the server's name.
/// </summary>
public static class SpiffeMtls
{
    /// <summary>
    /// A handler for <c>new HttpClient(handler)</c>: presents <paramref name="source"/>'s SVID, verifies the server with
    /// <paramref name="bundles"/> and <paramref name="authorizer"/>. A request made before the source has an SVID
    /// fails with <see cref="WorkloadApiException"/> WRIT-SDK-NO-SVID; a refused server fails the request with an
    /// <see cref="HttpRequestException"/> (the reason is logged, event 5003). With <paramref name="revocations"/> a
    /// server whose certificate is revoked is refused at the next connection.
    /// </summary>
    public static HttpMessageHandler CreateHandler(IX509SvidSource source, IBundleSource bundles, SpiffeIdAuthorizer authorizer,
        TimeProvider? timeProvider = null, ILogger? logger = null, IRevocationSource? revocations = null)
    {
        ArgumentNullException.ThrowIfNull(source);
        var verifier = new SpiffeCertificateVerifier(bundles, authorizer, timeProvider, revocations, logger ?? NullLogger.Instance);
        var certificates = new SvidCertificateCache();
        var sockets = new SocketsHttpHandler
        {
            SslOptions = new SslClientAuthenticationOptions
            {
                EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
                // Called for each new TLS connection: the SVID of now, not of when the handler was made.
                LocalCertificateSelectionCallback = (_, _, _, _, _) => certificates.For(source.GetX509Svid()).Leaf,
                RemoteCertificateValidationCallback = (_, certificate, chain, _) => verifier.Verify(certificate, chain).IsValid,
            },
            PooledConnectionLifetime = TimeSpan.FromMinutes(5),
        };
        return new SpiffeHttpHandler(source, sockets);
    }
}

/// <summary>
/// Fails a request early and clearly when the source has no SVID to present (instead of a TLS error from inside the
/// connection pool); the TLS work is done by the inner <see cref="SocketsHttpHandler"/> of <see cref="SpiffeMtls.CreateHandler"/>.
/// </summary>
public sealed class SpiffeHttpHandler : DelegatingHandler
{
    private readonly IX509SvidSource _source;

    /// <summary>Wraps <paramref name="inner"/>, which presents <paramref name="source"/>'s SVID.</summary>
    public SpiffeHttpHandler(IX509SvidSource source, HttpMessageHandler inner) : base(inner)
    {
        ArgumentNullException.ThrowIfNull(source);
        _source = source;
    }

    /// <inheritdoc />
    protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        _ = _source.GetX509Svid();      // throws WRIT-SDK-NO-SVID when there is none (yet, or any more)
        return base.SendAsync(request, cancellationToken);
    }

    /// <inheritdoc />
    protected override HttpResponseMessage Send(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        _ = _source.GetX509Svid();
        return base.Send(request, cancellationToken);
    }
}
