namespace Writ.Spiffe.Bundles;

/// <summary>Where validators find the trust bundle of a trust domain.</summary>
public interface IBundleSource
{
    /// <summary>The bundle for <paramref name="td"/>, or null when the trust domain is unknown.</summary>
    TrustBundle? GetBundle(TrustDomain td);
}
