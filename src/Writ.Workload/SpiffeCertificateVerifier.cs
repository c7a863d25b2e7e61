using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Writ.Spiffe;
using Writ.Spiffe.Bundles;
using Writ.Spiffe.X509;

namespace Writ.Workload;

/// <summary>The outcome of <see cref="SpiffeCertificateVerifier"/>: the peer's ID when accepted, else a one-line reason.</summary>
public sealed record SpiffeCertificateVerification(bool IsValid, SpiffeId? Id, string? Error);

/// <summary>
/// Verifies a TLS peer's certificate as SPIFFE does (no hostname, no system roots): the chain must be an X.509-SVID
/// that verifies to the bundle of the trust domain in its own SPIFFE ID (<see cref="X509SvidValidator.Validate"/>),
/// be unexpired, not revoked (when a revocation source is given), and the authorizer must accept the ID. Used by the
/// mTLS <c>HttpClient</c> handler, by Kestrel, and by ASP.NET Core authentication.
/// </summary>
public sealed class SpiffeCertificateVerifier
{
    private readonly IBundleSource _bundles;
    private readonly SpiffeIdAuthorizer _authorizer;
    private readonly TimeProvider _time;
    private readonly IRevocationSource? _revocations;
    private readonly ILogger _logger;

    /// <summary>A verifier of peers against <paramref name="bundles"/>, authorized by <paramref name="authorizer"/>.</summary>
    public SpiffeCertificateVerifier(IBundleSource bundles, SpiffeIdAuthorizer authorizer, TimeProvider? timeProvider = null,
        IRevocationSource? revocations = null, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(bundles);
        ArgumentNullException.ThrowIfNull(authorizer);
        _bundles = bundles;
        _authorizer = authorizer;
        _time = timeProvider ?? TimeProvider.System;
        _revocations = revocations;
        _logger = logger ?? NullLogger.Instance;
    }

    /// <summary>Verifies a presented chain (leaf first, then any intermediates the peer sent).</summary>
    public SpiffeCertificateVerification Verify(IReadOnlyList<X509Certificate2> chain)
    {
        var result = VerifyCore(chain);
        if (!result.IsValid)
        {
            SdkLog.PeerRefused(_logger, result.Error!);
        }
        return result;
    }

    /// <summary>
    /// Verifies what a TLS validation callback receives: the peer's leaf and the platform's chain, whose extra store
    /// holds the certificates the peer sent. The platform's own verdict (hostname, system roots) is ignored.
    /// </summary>
    public SpiffeCertificateVerification Verify(X509Certificate? certificate, X509Chain? chain)
    {
        if (certificate is null)
        {
            return Refuse("the peer presented no certificate: an X.509-SVID is required");
        }
        var leaf = certificate as X509Certificate2 ?? X509CertificateLoader.LoadCertificate(certificate.GetRawCertData());
        var presented = new List<X509Certificate2> { leaf };
        if (chain is not null)
        {
            foreach (var c in chain.ChainPolicy.ExtraStore)
            {
                if (!c.RawDataMemory.Span.SequenceEqual(leaf.RawDataMemory.Span) && presented.Count <= X509SvidValidator.MaxChainLength)
                {
                    presented.Add(c);
                }
            }
        }
        return Verify(presented);
    }

    private SpiffeCertificateVerification Refuse(string reason)
    {
        SdkLog.PeerRefused(_logger, reason);
        return new SpiffeCertificateVerification(false, null, reason);
    }

    private SpiffeCertificateVerification VerifyCore(IReadOnlyList<X509Certificate2> chain)
    {
        if (chain is null || chain.Count == 0)
        {
            return new(false, null, "the peer presented no certificate: an X.509-SVID is required");
        }
        X509SvidValidation v;
        try
        {
            v = X509SvidValidator.Validate(chain, _bundles, _time.GetUtcNow());
        }
        catch (WorkloadApiException e)
        {
            // The bundle source has nothing yet (an X509Source before its first update).
            return new(false, null, e.Message);
        }
        if (!v.IsValid || v.Id is null)
        {
            return new(false, null, "the peer certificate is not a valid X.509-SVID: " + v.Error);
        }
        if (_revocations is not null && _revocations.IsSerialRevoked(chain[0].SerialNumber))
        {
            return new(false, v.Id, $"the peer certificate of {v.Id} (serial {SerialNumbers.Normalize(chain[0].SerialNumber)}) is revoked");
        }
        if (_authorizer(v.Id) is { } reason)
        {
            return new(false, v.Id, "the peer is not authorized: " + reason);
        }
        return new(true, v.Id, null);
    }
}
