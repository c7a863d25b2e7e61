using Writ.Spiffe;

namespace Writ.Workload;

/// <summary>
/// Decides whether a peer's SPIFFE ID (already verified against the trust bundle) is acceptable; returns null when it
/// is, else a one-line reason. Used for both sides of mTLS (go-spiffe's <c>tlsconfig.Authorizer</c>).
/// </summary>
public delegate string? SpiffeIdAuthorizer(SpiffeId peer);

/// <summary>The usual authorizers: one ID, any of some IDs, any member of a trust domain, a predicate, anyone.</summary>
public static class Authorize
{
    /// <summary>Only <paramref name="expected"/>.</summary>
    public static SpiffeIdAuthorizer Id(SpiffeId expected)
    {
        ArgumentNullException.ThrowIfNull(expected);
        return peer => peer == expected ? null : $"peer {peer} is not the expected {expected}";
    }

    /// <summary>Only <paramref name="expected"/> (parsed; throws on an invalid ID).</summary>
    public static SpiffeIdAuthorizer Id(string expected) => Id(SpiffeId.Parse(expected));

    /// <summary>Any one of <paramref name="allowed"/>.</summary>
    public static SpiffeIdAuthorizer OneOf(params SpiffeId[] allowed)
    {
        ArgumentNullException.ThrowIfNull(allowed);
        var set = allowed.ToHashSet();
        return peer => set.Contains(peer) ? null : $"peer {peer} is not one of the {set.Count} allowed identities";
    }

    /// <summary>Any identity of trust domain <paramref name="td"/>.</summary>
    public static SpiffeIdAuthorizer MemberOf(TrustDomain td)
    {
        return peer => peer.TrustDomain == td ? null : $"peer {peer} is not a member of trust domain {td.Name}";
    }

    /// <summary>Any identity of trust domain <paramref name="trustDomain"/> (parsed; throws when invalid).</summary>
    public static SpiffeIdAuthorizer MemberOf(string trustDomain) => MemberOf(TrustDomain.Parse(trustDomain));

    /// <summary>Identities <paramref name="predicate"/> accepts.</summary>
    public static SpiffeIdAuthorizer Matching(Func<SpiffeId, bool> predicate)
    {
        ArgumentNullException.ThrowIfNull(predicate);
        return peer => predicate(peer) ? null : $"peer {peer} does not match the authorization predicate";
    }

    /// <summary>Any verified SPIFFE identity (every trust domain the bundle source knows). Use with care.</summary>
    public static SpiffeIdAuthorizer Any() => _ => null;
}
