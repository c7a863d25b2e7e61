using System.Security.Claims;
using System.Text.Encodings.Web;
using Microsoft.AspNetCore.Authentication;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
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
        var validation = X509SvidValidator.Validate([cert], Options.Bundles!, TimeProvider.GetUtcNow());
        if (!validation.IsValid)
        {
            return Task.FromResult(Refuse(IdForLog(cert), WritAuthCodes.InvalidX509Svid, validation.Error!));
        }
        var id = validation.Id!;
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

    private AuthenticateResult Refuse(string caller, string code, string reason)
    {
        var failure = new WritAuthFailure(code, reason);
        AspNetCoreLog.X509CallerRefused(Logger, Scheme.Name, caller, code, reason);
        return AuthenticateResult.Fail(failure);
    }

    private static string IdForLog(System.Security.Cryptography.X509Certificates.X509Certificate2 cert)
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
