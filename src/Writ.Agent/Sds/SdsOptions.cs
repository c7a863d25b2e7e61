namespace Writ.Agent.Sds;

/// <summary>
/// Envoy SDS (<c>envoy.service.secret.v3.SecretDiscoveryService</c>) on the Workload API socket (<c>sds.*</c>), named as
/// SPIRE names its resources: the caller's X.509-SVID as <see cref="DefaultSvidName"/> (and by its SPIFFE ID), the trust
/// domain's bundle as <see cref="DefaultBundleName"/>, every bundle together as <see cref="DefaultAllBundlesName"/>, and
/// each trust domain's bundle by its SPIFFE ID (spiffe://td).
/// </summary>
public sealed record SdsOptions
{
    /// <summary><c>sds.default_svid_name</c>: the tls_certificate of the caller's default (first) identity.</summary>
    public string DefaultSvidName { get; init; } = "default";

    /// <summary><c>sds.default_bundle_name</c>: the validation_context of the agent's own trust domain.</summary>
    public string DefaultBundleName { get; init; } = "ROOTCA";

    /// <summary><c>sds.default_all_bundles_name</c>: one validation_context with every trust domain's roots.</summary>
    public string DefaultAllBundlesName { get; init; } = "ALL";
}
