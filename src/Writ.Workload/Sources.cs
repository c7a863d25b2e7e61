using Writ.Spiffe;
using Writ.Spiffe.Bundles;
using Writ.Spiffe.Jwt;
using Writ.Spiffe.X509;

namespace Writ.Workload;

/// <summary>Where a workload gets its current X.509-SVID (go-spiffe's <c>x509svid.Source</c>).</summary>
public interface IX509SvidSource
{
    /// <summary>The current X.509-SVID (the first the agent sent, or the one a picker chose). Throws <see cref="WorkloadApiException"/> when there is none (yet).</summary>
    X509Svid GetX509Svid();

    /// <summary>Raised after the SVID changed (rotation, a new identity).</summary>
    event EventHandler? Changed;
}

/// <summary>Where a workload gets JWT-SVIDs for an audience (go-spiffe's <c>jwtsvid.Source</c>).</summary>
public interface IJwtSvidSource
{
    /// <summary>A JWT-SVID for <paramref name="audience"/> (its first audience is the relying party), of <paramref name="subject"/> when the workload has several identities.</summary>
    Task<JwtSvid> FetchJwtSvidAsync(IReadOnlyList<string> audience, SpiffeId? subject = null, CancellationToken cancellationToken = default);
}

/// <summary>A bundle source that says when its bundles changed (rotation of the trust domain's keys, federation).</summary>
public interface IWatchedBundleSource : IBundleSource
{
    /// <summary>The JWT bundle (JWKS authorities) of <paramref name="td"/>, or null when unknown.</summary>
    TrustBundle? GetJwtBundle(TrustDomain td);

    /// <summary>Raised after any bundle changed.</summary>
    event EventHandler? Changed;
}

/// <summary>
/// The credentials revoked before they expire, as the local agent pushes them (its revocation set, synced from the
/// server in milliseconds). A relying party refuses a credential listed here.
/// </summary>
public interface IRevocationSource
{
    /// <summary>True when the X.509 certificate of this serial (hex, any case, leading zeros and ':' ignored) is revoked.</summary>
    bool IsSerialRevoked(string serialHex);

    /// <summary>True when the JWT-SVID of this jti is revoked.</summary>
    bool IsJtiRevoked(string jti);

    /// <summary>Raised after the set changed (new revocations).</summary>
    event EventHandler? Changed;
}

/// <summary>A Workload API call failed or has nothing to give: the message is one line, the code stable (WRIT-SDK-…).</summary>
public sealed class WorkloadApiException(string code, string message, Exception? inner = null) : Exception($"{code}: {message}", inner)
{
    public string Code { get; } = code;
}
