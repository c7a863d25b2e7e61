using System.Runtime.CompilerServices;
using System.Security.Claims;
using System.Security.Cryptography.X509Certificates;
using System.Text.Encodings.Web;
using Microsoft.AspNetCore.Authentication;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Writ.Spiffe;
using Writ.Spiffe.Bundles;
using Writ.Spiffe.X509;

namespace Writ.Workload.AspNetCore;

/// <summary>
/// The X.509-SVID scheme: the client certificate of the TLS connection (never a header), validated as an X.509-SVID of a
/// trusted trust domain, accepted by the authorizer and not revoked. Everything is checked on every request, so a credential
/// revoked while its connection stays open is refused on the connection's next request.
/// </summary>
public sealed class WritX509SvidHandler(IOptionsMonitor<WritX509SvidOptions> options, ILoggerFactory logger, UrlEncoder encoder)
    : AuthenticationHandler<WritX509SvidOptions>(options, logger, encoder)
{
    /// <inheritdoc />
    protected override Task<AuthenticateResult> HandleAuthenticateAsync()
    {
        var cert = Context.Connection.ClientCertificate;
        if (cert is null)
        {
            return Task.FromResult(AuthenticateResult.NoResult());
        }
        var id = ValidatedId(cert, out var error);
        if (id is null)
        {
            return Task.FromResult(Refuse(IdForLog(cert), WritAuthCodes.InvalidX509Svid, error!));
        }
        if (Options.Authorizer!(id) is { } why)
        {
            return Task.FromResult(Refuse(id.ToString(), WritAuthCodes.NotAuthorized, why));
        }
        var serial = cert.SerialNumber;
        if (Options.Revocations?.IsSerialRevoked(serial) == true)
        {
            return Task.FromResult(Refuse(id.ToString(), WritAuthCodes.Revoked, $"the X.509-SVID of {id} (serial {serial}) is revoked: the caller must get a new SVID from its agent"));
        }
        var identity = new ClaimsIdentity(
        [
            new Claim(ClaimTypes.NameIdentifier, id.ToString(), ClaimValueTypes.String, ClaimsIssuer),
            new Claim(WritClaimTypes.SpiffeId, id.ToString(), ClaimValueTypes.String, ClaimsIssuer),
            new Claim(WritClaimTypes.TrustDomain, id.TrustDomain.Name, ClaimValueTypes.String, ClaimsIssuer),
            new Claim(WritClaimTypes.Serial, serial, ClaimValueTypes.String, ClaimsIssuer),
            new Claim(WritClaimTypes.Credential, WritClaimTypes.X509Credential, ClaimValueTypes.String, ClaimsIssuer),
        ], Scheme.Name, ClaimTypes.NameIdentifier, ClaimTypes.Role);
        return Task.FromResult(AuthenticateResult.Success(new AuthenticationTicket(new ClaimsPrincipal(identity), Scheme.Name)));
    }

    /// <summary>
    /// The certificate's SPIFFE ID when it is a valid X.509-SVID now. The chain check (hundreds of microseconds) is
    /// remembered per connection (per client certificate object) for the same certificate and the same trust bundle object (sources swap whole, immutable
    /// bundles on every change, so a rotated or removed bundle is seen at once); the validity window is checked on every
    /// request against the clock, the authorizer and the revocations by the caller.
    /// </summary>
    private SpiffeId? ValidatedId(X509Certificate2 cert, out string? error)
    {
        var now = TimeProvider.GetUtcNow();
        if (Validated.TryGetValue(cert, out var known) && now >= known.NotBefore && now <= known.NotAfter
            && ReferenceEquals(Options.Bundles!.GetBundle(known.Id.TrustDomain), known.Bundle))
        {
            error = null;
            return known.Id;
        }
        var validation = X509SvidValidator.Validate([cert], Options.Bundles!, now);
        if (!validation.IsValid)
        {
            Validated.Remove(cert);
            error = validation.Error;
            return null;
        }
        var id = validation.Id!;
        if (Options.Bundles!.GetBundle(id.TrustDomain) is { } bundle)
        {
            // Valid while the leaf and every authority of the bundle are (an expired root makes every request check again).
            var notAfter = bundle.X509Authorities.Select(a => new DateTimeOffset(a.NotAfter.ToUniversalTime()))
                .Append(new DateTimeOffset(cert.NotAfter.ToUniversalTime())).Min();
            Validated.AddOrUpdate(cert, new ValidatedCertificate(bundle, id, new DateTimeOffset(cert.NotBefore.ToUniversalTime()), notAfter));
        }
        error = null;
        return id;
    }

    /// <summary>
    /// Chain checks already done, keyed by the certificate object of a connection (Kestrel keeps one per connection; the
    /// entry goes with it). Thread-safe: HTTP/2 runs a connection's requests concurrently.
    /// </summary>
    private static readonly ConditionalWeakTable<X509Certificate2, ValidatedCertificate> Validated = new();

    private sealed record ValidatedCertificate(TrustBundle Bundle, SpiffeId Id, DateTimeOffset NotBefore, DateTimeOffset NotAfter);

    private AuthenticateResult Refuse(string caller, string code, string reason)
    {
        var failure = new WritAuthFailure(code, reason);
        AspNetCoreLog.X509CallerRefused(Logger, Scheme.Name, caller, code, reason);
        return AuthenticateResult.Fail(failure);
    }

    private static string IdForLog(X509Certificate2 cert)
    {
        var leaf = X509SvidValidator.ValidateLeaf(cert);
        return leaf.Id?.ToString() ?? "(no SPIFFE ID)";
    }

    /// <inheritdoc />
    protected override async Task HandleChallengeAsync(AuthenticationProperties properties)
    {
        var result = await HandleAuthenticateOnceSafeAsync();
        var failure = result.Failure as WritAuthFailure
            ?? new WritAuthFailure(WritAuthCodes.NoClientCertificate, "no client certificate on this connection: call over mTLS with your X.509-SVID");
        await ChallengeWriter.WriteAsync(Context, failure, wwwAuthenticate: null);
    }
}
