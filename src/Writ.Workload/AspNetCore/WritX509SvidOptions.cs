using Microsoft.AspNetCore.Authentication;
using Writ.Spiffe.Bundles;

namespace Writ.Workload.AspNetCore;

/// <summary>
/// Options of the X.509-SVID scheme: the caller's TLS client certificate, validated against <see cref="Bundles"/>, accepted
/// by <see cref="Authorizer"/> and not in <see cref="Revocations"/> — all three checked on every request.
/// </summary>
public sealed class WritX509SvidOptions : AuthenticationSchemeOptions
{
    /// <summary>The trust bundles (usually the SDK's <c>BundleSource</c>). When null, an <see cref="IWatchedBundleSource"/> or <see cref="IBundleSource"/> from DI.</summary>
    public IBundleSource? Bundles { get; set; }

    /// <summary>
    /// The revoked credentials (usually the SDK's <c>RevocationSource</c>, fed by the agent's WatchRevocations stream). When
    /// null, an <see cref="IRevocationSource"/> from DI; when there is none, the scheme refuses to start unless
    /// <see cref="AllowWithoutRevocations"/> is set.
    /// </summary>
    public IRevocationSource? Revocations { get; set; }

    /// <summary>Accept callers without consulting any revocation set (not recommended: revoked SVIDs are accepted until they expire).</summary>
    public bool AllowWithoutRevocations { get; set; }

    /// <summary>Which verified SPIFFE IDs may call (<see cref="Authorize"/>). Required: say <c>Authorize.Any()</c> explicitly to accept every trusted caller.</summary>
    public SpiffeIdAuthorizer? Authorizer { get; set; }

    /// <inheritdoc />
    public override void Validate()
    {
        base.Validate();
        if (Bundles is null)
        {
            throw new InvalidOperationException("WritX509SvidOptions.Bundles is not set and no IBundleSource is registered: give the scheme the trust bundles (the SDK's BundleSource)");
        }
        if (Authorizer is null)
        {
            throw new InvalidOperationException("WritX509SvidOptions.Authorizer is not set: say which callers are accepted (Authorize.Id, OneOf, MemberOf, or Authorize.Any())");
        }
        if (Revocations is null && !AllowWithoutRevocations)
        {
            throw new InvalidOperationException("WritX509SvidOptions.Revocations is not set and no IRevocationSource is registered: give the scheme the agent's revocations (the SDK's RevocationSource), or set AllowWithoutRevocations");
        }
    }
}
