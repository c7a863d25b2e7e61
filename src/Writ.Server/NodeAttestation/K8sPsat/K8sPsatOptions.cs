using System.Text.Json;
using System.Text.RegularExpressions;
using Writ.Server.Configuration;
using Writ.Server.Oidc;

namespace Writ.Server.NodeAttestation.K8sPsat;

/// <summary>
/// The <c>k8s_psat</c> node attestor's clusters (<c>k8s_clusters</c>, a JSON list of objects; docs/kubernetes.md): each
/// names a cluster, how its tokens are validated (the TokenReview API with a kubeconfig or in-cluster credentials, or
/// offline against its service-account issuer) and which service accounts (<c>ns:sa</c>) may attest agents.
/// </summary>
public sealed partial record K8sPsatOptions
{
    public static K8sPsatOptions None { get; } = new();

    public static readonly IReadOnlyList<ConfigKey> Keys =
    [
        new("k8s_clusters", "", "Kubernetes clusters whose agents attest with k8s_psat: a JSON list of {name, service_accounts, audience?, issuer? | kubeconfig? | in_cluster?, ...} (docs/kubernetes.md).") { IsJson = true },
    ];

    /// <summary>The configured clusters, by unique name.</summary>
    public IReadOnlyList<K8sPsatCluster> Clusters { get; init; } = [];

    public bool Enabled => Clusters.Count > 0;

    /// <summary>The fields a cluster object may have.</summary>
    private static readonly string[] Fields = ["name", "service_accounts", "audience", "issuer", "jwks_uri", "ca_file", "kubeconfig", "in_cluster", "node_label_keys"];

    /// <summary>Parses <c>k8s_clusters</c>; problems go to <see cref="ConfigSources.Errors"/>.</summary>
    public static K8sPsatOptions Build(ConfigSources c)
    {
        ArgumentNullException.ThrowIfNull(c);
        if (c.Json("k8s_clusters") is not { } json)
        {
            return None;
        }
        var source = c.SourceOf("k8s_clusters");
        var from = source == "default" ? "" : $" (from {source})";
        if (json.ValueKind != JsonValueKind.Array)
        {
            c.Errors.Add($"{K8sPsatCodes.ConfigClusters}: k8s_clusters must be a JSON list of cluster objects, got {Kind(json)}: give [{{\"name\": \"prod\", \"service_accounts\": [\"writ:writ-agent\"], \"in_cluster\": true}}]{from}");
            return None;
        }
        List<K8sPsatCluster> clusters = [];
        var index = -1;
        foreach (var item in json.EnumerateArray())
        {
            index++;
            List<string> errors = [];
            var cluster = Parse(item, $"k8s_clusters[{index}]", errors);
            if (cluster is not null && errors.Count == 0 && clusters.Any(k => k.Name == cluster.Name))
            {
                errors.Add($"{K8sPsatCodes.ConfigName}: k8s_clusters[{index}].name '{cluster.Name}' names a cluster already configured: give each cluster a unique name");
            }
            // Each error names the cluster's index and field, then where the list came from.
            c.Errors.AddRange(errors.Select(e => e + from));
            if (cluster is null || errors.Count != 0)
            {
                continue;
            }
            clusters.Add(cluster);
        }
        return new K8sPsatOptions { Clusters = clusters };
    }

    private static K8sPsatCluster? Parse(JsonElement item, string at, List<string> errors)
    {
        if (item.ValueKind != JsonValueKind.Object)
        {
            errors.Add($"{K8sPsatCodes.ConfigClusters}: {at} must be a JSON object, got {Kind(item)}");
            return null;
        }
        foreach (var p in item.EnumerateObject())
        {
            if (!Fields.Contains(p.Name, StringComparer.Ordinal))
            {
                errors.Add($"{K8sPsatCodes.ConfigClusters}: {at} has unknown field '{p.Name}': the fields are {string.Join(", ", Fields)}");
            }
        }

        var name = String(item, "name", at, errors);
        if (name is null)
        {
            errors.Add($"{K8sPsatCodes.ConfigName}: {at}.name is missing: name the cluster (lower-case letters, digits and '-'), as agents give it in --k8s-psat-cluster");
        }
        else if (!NamePattern().IsMatch(name))
        {
            errors.Add($"{K8sPsatCodes.ConfigName}: {at}.name '{name}' must be 1-63 lower-case letters, digits and '-' (it becomes part of agent IDs)");
        }

        List<string> accounts = [];
        var sas = StringList(item, "service_accounts", at, errors);
        if (sas is null || sas.Count == 0)
        {
            errors.Add($"{K8sPsatCodes.ConfigServiceAccounts}: {at}.service_accounts must be a non-empty list of \"namespace:service-account\" (the agent DaemonSet's), e.g. [\"writ:writ-agent\"]");
        }
        else
        {
            foreach (var sa in sas)
            {
                var parts = sa.Split(':');
                if (parts.Length != 2 || !DnsLabel().IsMatch(parts[0]) || !DnsSubdomain().IsMatch(parts[1]))
                {
                    errors.Add($"{K8sPsatCodes.ConfigServiceAccounts}: {at}.service_accounts entry '{sa}' is not \"namespace:service-account\" (Kubernetes names, e.g. writ:writ-agent)");
                }
                else
                {
                    accounts.Add(sa);
                }
            }
        }

        var audience = String(item, "audience", at, errors) ?? K8sPsatCluster.DefaultAudience;
        if (audience.Length == 0 || audience.Any(ch => char.IsWhiteSpace(ch) || char.IsControl(ch)))
        {
            errors.Add($"{K8sPsatCodes.ConfigAudience}: {at}.audience '{audience}' must be a non-empty audience without spaces, the one the DaemonSet's projected token is requested for (default {K8sPsatCluster.DefaultAudience})");
        }

        var issuer = String(item, "issuer", at, errors);
        var jwks = String(item, "jwks_uri", at, errors);
        var caFile = String(item, "ca_file", at, errors);
        var kubeconfig = String(item, "kubeconfig", at, errors);
        var inCluster = false;
        if (item.TryGetProperty("in_cluster", out var ic))
        {
            if (ic.ValueKind is JsonValueKind.True or JsonValueKind.False)
            {
                inCluster = ic.GetBoolean();
            }
            else
            {
                errors.Add($"{K8sPsatCodes.ConfigClusters}: {at}.in_cluster must be true or false, got {Kind(ic)}");
            }
        }
        var modes = (issuer is not null ? 1 : 0) + (kubeconfig is not null ? 1 : 0) + (inCluster ? 1 : 0);
        if (modes != 1)
        {
            errors.Add($"{K8sPsatCodes.ConfigMode}: {at} must set exactly one of issuer (offline: the cluster's service-account issuer URL), kubeconfig (a kubeconfig file for the TokenReview API) or in_cluster: true, " +
                $"but sets {(modes == 0 ? "none" : "more than one")}");
        }
        Uri? issuerUri = null;
        Uri? jwksUri = null;
        if (issuer is not null && !IsHttps(issuer, out issuerUri))
        {
            errors.Add($"{K8sPsatCodes.ConfigIssuer}: {at}.issuer '{issuer}' is not an https URL: give the cluster's service-account issuer (kubectl get --raw /.well-known/openid-configuration, field issuer)");
        }
        // The API server's own audience (its issuer, or kubernetes.default.svc) is in every pod's default token, which the
        // agent also shows its kubelet on each pod-list request: with it, a replayed default token would attest the node.
        if (string.Equals(audience.TrimEnd('/'), issuer?.TrimEnd('/'), StringComparison.Ordinal) || ApiServerAudiences.Contains(audience.TrimEnd('/'), StringComparer.Ordinal))
        {
            errors.Add($"{K8sPsatCodes.ConfigAudience}: {at}.audience '{audience}' is the API server's own audience, which every pod's default service-account token carries (and the agent sends its default token to the kubelet): give a dedicated audience such as {K8sPsatCluster.DefaultAudience} and request the DaemonSet's projected token for it");
        }
        if (jwks is not null && (issuer is null || !IsHttps(jwks, out jwksUri)))
        {
            errors.Add($"{K8sPsatCodes.ConfigIssuer}: {at}.jwks_uri '{jwks}' {(issuer is null ? "is only used with issuer (offline validation)" : "is not an https URL")}");
        }
        if (kubeconfig is not null && !File.Exists(kubeconfig))
        {
            errors.Add($"{K8sPsatCodes.ConfigKubeconfig}: {at}.kubeconfig '{kubeconfig}' does not exist: give the path of a kubeconfig file for the cluster's API (its current context is used)");
        }
        if (caFile is not null && issuer is not null && !File.Exists(caFile))
        {
            errors.Add($"{K8sPsatCodes.ConfigIssuer}: {at}.ca_file '{caFile}' does not exist: give a PEM file of the CA certificates of the issuer's HTTPS certificate");
        }
        if (caFile is not null && issuer is null)
        {
            errors.Add($"{K8sPsatCodes.ConfigIssuer}: {at}.ca_file is only used with issuer (the CA of the issuer's HTTPS certificate); a kubeconfig carries its own CA");
        }

        var labelKeys = StringList(item, "node_label_keys", at, errors) ?? [];
        foreach (var key in labelKeys.Where(k => !LabelKey().IsMatch(k)))
        {
            errors.Add($"{K8sPsatCodes.ConfigNodeLabels}: {at}.node_label_keys entry '{key}' is not a Kubernetes label key ([prefix/]name, e.g. topology.kubernetes.io/zone)");
        }
        if (labelKeys.Count > 0 && kubeconfig is null && !inCluster)
        {
            errors.Add($"{K8sPsatCodes.ConfigNodeLabels}: {at}.node_label_keys needs the Kubernetes API to read node labels: set kubeconfig or in_cluster: true, or remove node_label_keys");
        }

        if (name is null)
        {
            return null;
        }
        return new K8sPsatCluster
        {
            Name = name,
            ServiceAccounts = accounts,
            Audience = audience,
            Issuer = issuerUri is null ? null : issuer,
            JwksUri = jwksUri,
            CaFile = caFile is null ? null : Path.GetFullPath(caFile),
            Kubeconfig = kubeconfig is null ? null : Path.GetFullPath(kubeconfig),
            InCluster = inCluster,
            NodeLabelKeys = [.. labelKeys.Distinct(StringComparer.Ordinal)],
        };
    }

    /// <summary>The audiences Kubernetes API servers give default service-account tokens (besides their issuer URL).</summary>
    private static readonly string[] ApiServerAudiences = ["https://kubernetes.default.svc", "https://kubernetes.default.svc.cluster.local", "kubernetes.default.svc"];

    private static bool IsHttps(string text, out Uri? uri) =>
        Uri.TryCreate(text, UriKind.Absolute, out uri) && uri.Scheme == Uri.UriSchemeHttps && string.IsNullOrEmpty(uri.Query) && string.IsNullOrEmpty(uri.Fragment);

    private static string? String(JsonElement item, string field, string at, List<string> errors)
    {
        if (!item.TryGetProperty(field, out var v) || v.ValueKind == JsonValueKind.Null)
        {
            return null;
        }
        if (v.ValueKind != JsonValueKind.String)
        {
            errors.Add($"{K8sPsatCodes.ConfigClusters}: {at}.{field} must be a string, got {Kind(v)}");
            return null;
        }
        return v.GetString();
    }

    private static List<string>? StringList(JsonElement item, string field, string at, List<string> errors)
    {
        if (!item.TryGetProperty(field, out var v) || v.ValueKind == JsonValueKind.Null)
        {
            return null;
        }
        if (v.ValueKind != JsonValueKind.Array || v.EnumerateArray().Any(e => e.ValueKind != JsonValueKind.String))
        {
            errors.Add($"{K8sPsatCodes.ConfigClusters}: {at}.{field} must be a list of strings, got {Kind(v)}");
            return null;
        }
        return [.. v.EnumerateArray().Select(e => e.GetString()!)];
    }

    private static string Kind(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.Array => "a list",
        JsonValueKind.Object => "an object",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        _ => "null",
    };

    [GeneratedRegex("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]
    private static partial Regex NamePattern();

    [GeneratedRegex("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]
    private static partial Regex DnsLabel();

    [GeneratedRegex("^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$")]
    private static partial Regex DnsSubdomain();

    [GeneratedRegex("^([a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$")]
    private static partial Regex LabelKey();
}

/// <summary>One cluster of <c>k8s_clusters</c>: exactly one of <see cref="Issuer"/>, <see cref="Kubeconfig"/>, <see cref="InCluster"/>.</summary>
public sealed record K8sPsatCluster
{
    public const string DefaultAudience = "writ";

    public required string Name { get; init; }

    /// <summary>"namespace:service-account" pairs whose pods may attest agents.</summary>
    public required IReadOnlyList<string> ServiceAccounts { get; init; }

    public string Audience { get; init; } = DefaultAudience;

    /// <summary>Offline validation: the cluster's service-account issuer URL.</summary>
    public string? Issuer { get; init; }

    public Uri? JwksUri { get; init; }

    public string? CaFile { get; init; }

    /// <summary>TokenReview through the API with this kubeconfig file.</summary>
    public string? Kubeconfig { get; init; }

    /// <summary>TokenReview through the API with the server pod's own service account.</summary>
    public bool InCluster { get; init; }

    /// <summary>Node label keys that become <c>k8s_psat:agent_node_label:KEY:VALUE</c> selectors (needs the API).</summary>
    public IReadOnlyList<string> NodeLabelKeys { get; init; } = [];

    /// <summary>Whether tokens are checked through the Kubernetes API (TokenReview, pod and node lookups).</summary>
    public bool UsesApi => Kubeconfig is not null || InCluster;

    /// <summary>The issuer for offline validation through <see cref="IOidcTokenValidator"/>, or null in API mode.</summary>
    public OidcIssuerConfig? IssuerConfig => Issuer is null ? null : new OidcIssuerConfig
    {
        Issuer = Issuer,
        Audiences = [Audience],
        JwksUri = JwksUri,
        CaFile = CaFile,
    };
}
