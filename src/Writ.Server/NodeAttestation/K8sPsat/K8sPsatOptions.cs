using Writ.Server.Configuration;

namespace Writ.Server.NodeAttestation.K8sPsat;

/// <summary>
/// The <c>k8s_psat</c> node attestor's clusters (<c>k8s_clusters</c>, a JSON list of objects; docs/kubernetes.md): each
/// names a cluster, how its tokens are validated (the TokenReview API with a kubeconfig or in-cluster credentials, or
/// offline against its service-account issuer) and which service accounts (<c>ns:sa</c>) may attest agents.
/// </summary>
public sealed record K8sPsatOptions
{
    public static K8sPsatOptions None { get; } = new();

    public static readonly IReadOnlyList<ConfigKey> Keys =
    [
        new("k8s_clusters", "", "Kubernetes clusters whose agents attest with k8s_psat: a JSON list of {name, service_accounts, audience?, issuer? | kubeconfig? | in_cluster?, ...} (docs/kubernetes.md).") { IsJson = true },
    ];

    public bool Enabled => false;

    /// <summary>Parses <c>k8s_clusters</c>; problems go to <see cref="ConfigSources.Errors"/>.</summary>
    public static K8sPsatOptions Build(ConfigSources c)
    {
        ArgumentNullException.ThrowIfNull(c);
        _ = c.Json("k8s_clusters");
        return None;   // the k8s_psat lane parses the list
    }
}
