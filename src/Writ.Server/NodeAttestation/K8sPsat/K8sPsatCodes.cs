namespace Writ.Server.NodeAttestation.K8sPsat;

/// <summary>The stable error codes of k8s_psat node attestation and of its configuration (listed in docs/errors.md).</summary>
public static class K8sPsatCodes
{
    /// <summary><c>k8s_clusters</c> is not a list of objects, or a field has the wrong type or is unknown.</summary>
    public const string ConfigClusters = "WRIT-CONFIG-K8S-CLUSTERS";

    /// <summary>A cluster's name is missing, malformed or used twice.</summary>
    public const string ConfigName = "WRIT-CONFIG-K8S-NAME";

    public const string ConfigServiceAccounts = "WRIT-CONFIG-K8S-SERVICE-ACCOUNTS";

    public const string ConfigAudience = "WRIT-CONFIG-K8S-AUDIENCE";

    /// <summary>Not exactly one of issuer, kubeconfig, in_cluster.</summary>
    public const string ConfigMode = "WRIT-CONFIG-K8S-MODE";

    /// <summary>issuer, jwks_uri or ca_file malformed or given without issuer.</summary>
    public const string ConfigIssuer = "WRIT-CONFIG-K8S-ISSUER";

    public const string ConfigNodeLabels = "WRIT-CONFIG-K8S-NODE-LABELS";

    /// <summary>The kubeconfig file does not exist.</summary>
    public const string ConfigKubeconfig = "WRIT-CONFIG-K8S-KUBECONFIG";

    /// <summary>Start-up: the kubeconfig cannot be loaded, or in_cluster is set outside a pod.</summary>
    public const string ApiConfig = "WRIT-K8S-PSAT-API-CONFIG";

    /// <summary>The evidence is not <c>{"cluster": "...", "token": "..."}</c>.</summary>
    public const string Malformed = "WRIT-K8S-PSAT-MALFORMED";

    public const string UnknownCluster = "WRIT-K8S-PSAT-UNKNOWN-CLUSTER";

    /// <summary>The token failed validation (offline: the WRIT-OIDC-… code is in the message; API: TokenReview refused it or its audience).</summary>
    public const string TokenInvalid = "WRIT-K8S-PSAT-TOKEN-INVALID";

    /// <summary>The token is a service-account token bound to no pod (a legacy secret token, or one made by kubectl create token).</summary>
    public const string NotPodBound = "WRIT-K8S-PSAT-NOT-POD-BOUND";

    public const string ServiceAccountNotAllowed = "WRIT-K8S-PSAT-SERVICE-ACCOUNT-NOT-ALLOWED";

    /// <summary>The token names no node uid and the API is not configured to look it up.</summary>
    public const string NoNodeUid = "WRIT-K8S-PSAT-NO-NODE-UID";

    /// <summary>The pod the token is bound to no longer exists (or is another pod of the same name).</summary>
    public const string PodGone = "WRIT-K8S-PSAT-POD-GONE";

    /// <summary>The pod runs on another node than the token says, or the node is gone or another node of that name.</summary>
    public const string PodNode = "WRIT-K8S-PSAT-POD-NODE";

    /// <summary>The cluster's API or issuer cannot be reached or refused the server's own credentials.</summary>
    public const string Unavailable = "WRIT-K8S-PSAT-UNAVAILABLE";
}
