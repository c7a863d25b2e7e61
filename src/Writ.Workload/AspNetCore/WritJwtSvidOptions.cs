using Microsoft.AspNetCore.Authentication;
using Writ.Spiffe.Bundles;
using Writ.Spiffe.Jwt;

namespace Writ.Workload.AspNetCore;

/// <summary>
/// Options of the JWT-SVID scheme: an <c>Authorization: Bearer</c> JWT-SVID for <see cref="Audience"/>, verified with the JWT
/// bundle of its trust domain, not revoked, not replayed by another presenter, and — when it is certificate-bound — presented
/// over mTLS with the certificate it is bound to.
/// </summary>
public sealed class WritJwtSvidOptions : AuthenticationSchemeOptions
{
    /// <summary>The audience this service accepts (required): the tokens' <c>aud</c> must contain it (or one of <see cref="AdditionalAudiences"/>).</summary>
    public string? Audience { get; set; }

    /// <summary>Further accepted audiences (e.g. the old name while renaming a service).</summary>
    public IList<string> AdditionalAudiences { get; } = [];

    /// <summary>
    /// The trust bundles (usually the SDK's <c>BundleSource</c>). When it is an <see cref="IWatchedBundleSource"/>, the JWT bundle
    /// of the token's trust domain (<see cref="IWatchedBundleSource.GetJwtBundle"/>) is used; else its bundle's JWT authorities.
    /// When null, a bundle source from DI.
    /// </summary>
    public IBundleSource? Bundles { get; set; }

    /// <summary>The revoked credentials (the SDK's <c>RevocationSource</c>); when null, an <see cref="IRevocationSource"/> from DI; required unless <see cref="AllowWithoutRevocations"/>.</summary>
    public IRevocationSource? Revocations { get; set; }

    /// <summary>Accept tokens without consulting any revocation set (not recommended).</summary>
    public bool AllowWithoutRevocations { get; set; }

    /// <summary>Which verified SPIFFE IDs may call. Required: say <c>Authorize.Any()</c> to accept every trusted caller.</summary>
    public SpiffeIdAuthorizer? Authorizer { get; set; }

    /// <summary>
    /// Accept bearer tokens (no <c>cnf</c> binding). Default true: every JWT-SVID the Workload API hands out is a bearer token
    /// unless the workload asked for a bound one. Set false to accept only certificate-bound tokens presented over mTLS.
    /// </summary>
    public bool AllowBearerTokens { get; set; } = true;

    /// <summary>
    /// Accept a certificate-bound token on a connection without a client certificate (the binding then proves nothing).
    /// Default false: a bound token is refused unless presented with the certificate it is bound to.
    /// </summary>
    public bool AllowBoundTokenWithoutMtls { get; set; }

    /// <summary>
    /// Which presenter first showed each token. A token shown again by another presenter (another client certificate, or
    /// without mTLS another remote address) is refused. When null, one cache per scheme (capacity 100 000).
    /// </summary>
    public JwtReplayCache? ReplayCache { get; set; }

    /// <summary>Validation knobs (clock leeway, longest token, missing kid). Default: go-spiffe's.</summary>
    public JwtSvidValidationOptions Validation { get; set; } = new();

    /// <inheritdoc />
    public override void Validate()
    {
        base.Validate();
        if (string.IsNullOrEmpty(Audience))
        {
            throw new InvalidOperationException("WritJwtSvidOptions.Audience is not set: a JWT-SVID relying party must say which audience it is (usually its own SPIFFE ID)");
        }
        if (Bundles is null)
        {
            throw new InvalidOperationException("WritJwtSvidOptions.Bundles is not set and no IBundleSource is registered: give the scheme the trust bundles (the SDK's BundleSource)");
        }
        if (Authorizer is null)
        {
            throw new InvalidOperationException("WritJwtSvidOptions.Authorizer is not set: say which callers are accepted (Authorize.Id, OneOf, MemberOf, or Authorize.Any())");
        }
        if (Revocations is null && !AllowWithoutRevocations)
        {
            throw new InvalidOperationException("WritJwtSvidOptions.Revocations is not set and no IRevocationSource is registered: give the scheme the agent's revocations (the SDK's RevocationSource), or set AllowWithoutRevocations");
        }
    }
}
