using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Writ.Protocol.Errors;
using Writ.Protocol.Evidence;
using Writ.Server.Oidc;
using Writ.Server.Storage;
using Writ.Spiffe;

namespace Writ.Server.NodeAttestation.K8sPsat;

/// <summary>
/// <c>k8s_psat</c>: the agent (a DaemonSet pod) proves its node with its projected service-account token, bound to its
/// pod and node. The evidence is <c>{"cluster": NAME, "token": JWT}</c>. The token is checked either by the cluster's
/// TokenReview API (kubeconfig or in-cluster credentials; the pod is then looked up too: it must still exist with the
/// token's uid on the token's node) or offline against the cluster's service-account issuer (discovery + JWKS, through
/// <see cref="IOidcTokenValidator"/>). It must be pod-bound, for an allowed <c>ns:sa</c>, and name its node's uid (the
/// token's node claim, Kubernetes ≥ 1.30, or the API). Agent ID <c>spiffe://TD/writ/agent/k8s_psat/CLUSTER/NODE-UID</c>,
/// so a DaemonSet pod restarted on the same node attests again under the same ID; a re-attestation needs a token other
/// than, and not older than, the last one that attested the node (the kubelet rotates the token).
/// </summary>
public sealed class K8sPsatNodeAttestor : INodeAttestor, IDisposable
{
    public const string TypeName = "k8s_psat";

    /// <summary>Characters of a token (Kubernetes' tokens are 1–2 KB).</summary>
    public const int MaxTokenChars = 16 * 1024;

    private const string ExtraPrefix = "authentication.kubernetes.io/";

    private readonly Dictionary<string, K8sPsatCluster> _clusters;
    private readonly IOidcTokenValidator? _oidc;
    private readonly Dictionary<string, K8sPsatApi> _apis;
    private readonly ILogger _log;

    /// <param name="clusters">The configured clusters (at least one).</param>
    /// <param name="oidc">The validator for offline clusters; required when one validates offline.</param>
    /// <param name="apis">The API of every cluster that <see cref="K8sPsatCluster.UsesApi"/>, by cluster name; the attestor disposes them.</param>
    public K8sPsatNodeAttestor(IReadOnlyList<K8sPsatCluster> clusters, IOidcTokenValidator? oidc, IReadOnlyDictionary<string, K8sPsatApi> apis, ILogger log)
    {
        ArgumentNullException.ThrowIfNull(clusters);
        ArgumentNullException.ThrowIfNull(apis);
        ArgumentNullException.ThrowIfNull(log);
        if (clusters.Count == 0)
        {
            throw new ArgumentException("k8s_psat needs at least one cluster", nameof(clusters));
        }
        _clusters = clusters.ToDictionary(c => c.Name, StringComparer.Ordinal);
        _apis = apis.ToDictionary(a => a.Key, a => a.Value, StringComparer.Ordinal);
        foreach (var c in clusters)
        {
            if (c.UsesApi && !_apis.ContainsKey(c.Name))
            {
                throw new ArgumentException($"cluster '{c.Name}' validates through the API but has no API client", nameof(apis));
            }
            if (!c.UsesApi && oidc is null)
            {
                throw new ArgumentException($"cluster '{c.Name}' validates offline but no OIDC token validator was given", nameof(oidc));
            }
        }
        _oidc = oidc;
        _log = log;
    }

    /// <summary>The attestor of <paramref name="options"/>: an API client per cluster that uses the API (refuses the start when one cannot be loaded).</summary>
    public static K8sPsatNodeAttestor Create(K8sPsatOptions options, IOidcTokenValidator? oidc, ILogger log)
    {
        ArgumentNullException.ThrowIfNull(options);
        Dictionary<string, K8sPsatApi> apis = [];
        try
        {
            foreach (var c in options.Clusters.Where(c => c.UsesApi))
            {
                apis[c.Name] = K8sPsatApi.Create(c, log);
            }
            return new K8sPsatNodeAttestor(options.Clusters, oidc, apis, log);
        }
        catch
        {
            foreach (var a in apis.Values)
            {
                a.Dispose();
            }
            throw;
        }
    }

    public string Type => TypeName;

    /// <summary>The node alias every agent of <paramref name="cluster"/> has: <c>spiffe://TD/writ/agent/k8s_psat/CLUSTER</c>.</summary>
    public static string ClusterAlias(TrustDomain td, string cluster) => $"spiffe://{td.Name}/writ/agent/{TypeName}/{cluster}";

    /// <summary>A DaemonSet pod restarted or replaced on the same node keeps the node's agent ID.</summary>
    public bool Reattestable => true;

    /// <summary>
    /// A token attests a node once: a re-attestation needs another token, not issued before the last one (a token copied
    /// from the node, or recorded, cannot attest it again while the agent runs with a newer one).
    /// </summary>
    public string? ReattestConflict(AttestedNode node, AttestedNodeFacts facts)
    {
        ArgumentNullException.ThrowIfNull(node);
        ArgumentNullException.ThrowIfNull(facts);
        if (TokenState.Parse(node.AttestorState) is not { } before || TokenState.Parse(facts.AttestorState) is not { } now)
        {
            return null;
        }
        if (string.Equals(before.TokenSha256, now.TokenSha256, StringComparison.Ordinal))
        {
            return "this token already attested it; the agent attests again with a newer token (the kubelet rotates the projected token)";
        }
        return now.IssuedAt < before.IssuedAt ? "this token was issued before the one that last attested it; the agent attests again with its current token" : null;
    }

    public async Task<AttestedNodeFacts> AttestAsync(NodeEvidence evidence, NodeChallenge challenge, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(evidence);
        var (clusterName, token) = ParseEvidence(evidence.Payload);
        if (!_clusters.TryGetValue(clusterName, out var cluster))
        {
            throw new WritException(K8sPsatCodes.UnknownCluster, WritErrorKind.PermissionDenied,
                $"cluster '{Printable(clusterName)}' is not in the server's k8s_clusters: give the agent --k8s-psat-cluster with a configured cluster's name");
        }
        var claims = cluster.UsesApi ? await ReviewAsync(cluster, _apis[cluster.Name], token, ct).ConfigureAwait(false)
            : await ValidateOfflineAsync(cluster, token, ct).ConfigureAwait(false);

        if (claims.PodName is null || claims.PodUid is null)
        {
            throw new WritException(K8sPsatCodes.NotPodBound, WritErrorKind.PermissionDenied,
                $"the token of {claims.Namespace}:{claims.ServiceAccount} is not bound to a pod (a legacy secret token, or one from kubectl create token): " +
                "mount a projected service-account token volume in the agent DaemonSet (docs/node-attestation.md)");
        }
        if (!cluster.ServiceAccounts.Contains($"{claims.Namespace}:{claims.ServiceAccount}", StringComparer.Ordinal))
        {
            throw new WritException(K8sPsatCodes.ServiceAccountNotAllowed, WritErrorKind.PermissionDenied,
                $"service account {claims.Namespace}:{claims.ServiceAccount} may not attest agents of cluster '{cluster.Name}': run the agent DaemonSet under one of its service_accounts ({string.Join(", ", cluster.ServiceAccounts)})");
        }

        var nodeName = claims.NodeName;
        var nodeUid = claims.NodeUid;
        List<string> labels = [];
        if (cluster.UsesApi)
        {
            (nodeName, nodeUid, labels) = await CheckPodAndNodeAsync(cluster, _apis[cluster.Name], claims, ct).ConfigureAwait(false);
        }
        if (nodeUid is null)
        {
            throw new WritException(K8sPsatCodes.NoNodeUid, WritErrorKind.FailedPrecondition,
                $"the token of pod {claims.Namespace}/{claims.PodName} names no node uid: enable the ServiceAccountTokenPodNodeInfo feature (Kubernetes 1.30+) or give cluster '{cluster.Name}' the API (kubeconfig or in_cluster)");
        }
        if (!SpiffeId.TryParse($"spiffe://{evidence.TrustDomain.Name}/writ/agent/{TypeName}/{cluster.Name}/{nodeUid}", out var agentId, out _))
        {
            throw new WritException(K8sPsatCodes.TokenInvalid, WritErrorKind.PermissionDenied,
                $"the node uid of the token of pod {claims.Namespace}/{claims.PodName} cannot be part of an agent ID: check the cluster's tokens");
        }

        List<string> values =
        [
            $"cluster:{cluster.Name}",
            $"agent_ns:{claims.Namespace}",
            $"agent_sa:{claims.ServiceAccount}",
            $"agent_pod_name:{claims.PodName}",
            $"agent_pod_uid:{claims.PodUid}",
            $"agent_node_uid:{nodeUid}",
        ];
        if (nodeName is not null)
        {
            values.Add($"agent_node_name:{nodeName}");
        }
        values.AddRange(labels);
        var selectors = values.Where(Selector.IsValidValue).Distinct(StringComparer.Ordinal).Select(v => new Selector(TypeName, v)).ToList();
        K8sPsatLog.TokenAccepted(_log, cluster.Name, claims.Namespace, claims.PodName, claims.ServiceAccount, nodeName ?? "(unnamed)", nodeUid, claims.TokenSha256[..12]);
        // Every agent of the cluster also serves entries parented to the cluster's alias (one entry for a DaemonSet's nodes).
        return new AttestedNodeFacts(TypeName, agentId, selectors, [ClusterAlias(evidence.TrustDomain, cluster.Name)], null)
        {
            AttestorState = new TokenState(claims.TokenSha256, claims.IssuedAt).Serialize(),
        };
    }

    /// <summary>What a validated token says about its pod; node fields may be null (older clusters).</summary>
    private sealed record PsatClaims(string Namespace, string ServiceAccount, string? PodName, string? PodUid, string? NodeName, string? NodeUid, string TokenSha256, long IssuedAt);

    private async Task<PsatClaims> ValidateOfflineAsync(K8sPsatCluster cluster, string token, CancellationToken ct)
    {
        ValidatedToken valid;
        try
        {
            valid = await _oidc!.ValidateAsync(token, cluster.IssuerConfig!, ct).ConfigureAwait(false);
        }
        catch (WritException e) when (e.Kind == WritErrorKind.Unavailable)
        {
            throw new WritException(K8sPsatCodes.Unavailable, WritErrorKind.Unavailable,
                $"the service-account issuer of cluster '{cluster.Name}' cannot be reached ({e.Code}: {e.Message}): the agent retries; check the issuer URL and the server's network path to it");
        }
        catch (WritException e)
        {
            throw new WritException(K8sPsatCodes.TokenInvalid, WritErrorKind.PermissionDenied,
                $"the token is not a valid token of cluster '{cluster.Name}' for audience '{cluster.Audience}' ({e.Code}: {e.Message})");
        }
        // The kubernetes.io claim of a bound token (KEP-1205; node since 1.30): namespace, serviceaccount, pod, node.
        if (valid.Claims.ValueKind != JsonValueKind.Object || !valid.Claims.TryGetProperty("kubernetes.io", out var k8s) || k8s.ValueKind != JsonValueKind.Object
            || Str(k8s, "namespace") is not { } ns || Obj(k8s, "serviceaccount") is not { } sa || Str(sa, "name") is not { } saName)
        {
            throw new WritException(K8sPsatCodes.NotPodBound, WritErrorKind.PermissionDenied,
                $"the token of cluster '{cluster.Name}' has no kubernetes.io claim naming a namespace and service account: the agent must send its projected service-account token");
        }
        if (!string.Equals(valid.Subject, $"system:serviceaccount:{ns}:{saName}", StringComparison.Ordinal))
        {
            throw new WritException(K8sPsatCodes.TokenInvalid, WritErrorKind.PermissionDenied,
                $"the token of cluster '{cluster.Name}' names service account {ns}:{saName} in its kubernetes.io claim but another subject: it is no service-account token");
        }
        var pod = Obj(k8s, "pod");
        var node = Obj(k8s, "node");
        return new PsatClaims(ns, saName, pod is { } p ? Str(p, "name") : null, pod is { } p2 ? Str(p2, "uid") : null,
            node is { } n ? Str(n, "name") : null, node is { } n2 ? Str(n2, "uid") : null, Oidc.OidcTokenValidator.SignedPartSha256(token), (valid.IssuedAt ?? valid.ExpiresAt).ToUnixTimeSeconds());
    }

    private static async Task<PsatClaims> ReviewAsync(K8sPsatCluster cluster, K8sPsatApi api, string token, CancellationToken ct)
    {
        var review = await api.ReviewAsync(token, cluster.Audience, ct).ConfigureAwait(false);
        var status = review.Status;
        if (status is not { Authenticated: true } || status.User is not { } user)
        {
            throw new WritException(K8sPsatCodes.TokenInvalid, WritErrorKind.PermissionDenied,
                $"the TokenReview API of cluster '{cluster.Name}' did not authenticate the token for audience '{cluster.Audience}'{(status?.Error is { Length: > 0 } err ? $" ({Printable(err)})" : "")}: " +
                "the agent must send a current projected token of this cluster requested for that audience");
        }
        // An audience-aware API server echoes the requested audience; an empty list means the API server's own audience.
        if (status.Audiences is null || !status.Audiences.Contains(cluster.Audience, StringComparer.Ordinal))
        {
            throw new WritException(K8sPsatCodes.TokenInvalid, WritErrorKind.PermissionDenied,
                $"the TokenReview API of cluster '{cluster.Name}' did not confirm audience '{cluster.Audience}' for the token: request the projected token for audience '{cluster.Audience}'");
        }
        var parts = (user.Username ?? "").Split(':');
        if (parts is not ["system", "serviceaccount", { Length: > 0 } ns, { Length: > 0 } sa])
        {
            throw new WritException(K8sPsatCodes.TokenInvalid, WritErrorKind.PermissionDenied,
                $"the token of cluster '{cluster.Name}' authenticates '{Printable(user.Username ?? "")}', which is no service account: the agent must send its projected service-account token");
        }
        string? Extra(string key) => user.Extra is { } extra && extra.TryGetValue(ExtraPrefix + key, out var v) && v is [{ Length: > 0 } one] ? one : null;
        var sha = Oidc.OidcTokenValidator.SignedPartSha256(token);
        return new PsatClaims(ns, sa, Extra("pod-name"), Extra("pod-uid"), Extra("node-name"), Extra("node-uid"), sha, IssuedAt(token));
    }

    /// <summary>
    /// Bound-token revalidation through the API: the pod exists with the token's uid and runs on the token's node, which
    /// exists with the token's node uid. Returns the node's name, uid and the label selectors of node_label_keys.
    /// </summary>
    private static async Task<(string NodeName, string NodeUid, List<string> Labels)> CheckPodAndNodeAsync(K8sPsatCluster cluster, K8sPsatApi api, PsatClaims claims, CancellationToken ct)
    {
        var where = $"pod {claims.Namespace}/{claims.PodName} of cluster '{cluster.Name}'";
        var pod = await api.PodAsync(claims.Namespace, claims.PodName!, ct).ConfigureAwait(false);
        if (pod is null || pod.Metadata?.Uid != claims.PodUid || pod.Status?.Phase is "Succeeded" or "Failed")
        {
            var why = pod is null ? "no longer exists" : pod.Metadata?.Uid != claims.PodUid ? "was replaced by another pod of that name" : $"has ended ({pod.Status!.Phase})";
            throw new WritException(K8sPsatCodes.PodGone, WritErrorKind.PermissionDenied,
                $"the {where} the token is bound to {why}: the agent attests with the token of its running pod");
        }
        var podNode = pod.Spec?.NodeName;
        if (podNode is null || (claims.NodeName is not null && podNode != claims.NodeName))
        {
            throw new WritException(K8sPsatCodes.PodNode, WritErrorKind.PermissionDenied,
                $"the {where} runs on node '{podNode ?? "(none)"}', not on node '{claims.NodeName}' the token names: the agent attests with the token of its running pod");
        }
        var node = await api.NodeAsync(podNode, ct).ConfigureAwait(false);
        if (node?.Metadata?.Uid is not { Length: > 0 } nodeUid || (claims.NodeUid is not null && nodeUid != claims.NodeUid))
        {
            throw new WritException(K8sPsatCodes.PodNode, WritErrorKind.PermissionDenied,
                $"node '{podNode}' of the {where} {(node is null ? "no longer exists" : "is another node than the token names (its uid differs)")}: the agent attests with the token of its running pod");
        }
        List<string> labels = [];
        foreach (var key in cluster.NodeLabelKeys)
        {
            if (node.Metadata.Labels is { } l && l.TryGetValue(key, out var value))
            {
                labels.Add($"agent_node_label:{key}:{value}");
            }
        }
        return (podNode, nodeUid, labels);
    }

    /// <summary>The token's iat (the API authenticated it; its payload is read only to order tokens), or 0 when it has none.</summary>
    private static long IssuedAt(string token)
    {
        try
        {
            var jwt = new Microsoft.IdentityModel.JsonWebTokens.JsonWebToken(token);
            return jwt.TryGetPayloadValue<long>("iat", out var iat) ? iat : 0;
        }
        catch (ArgumentException)
        {
            return 0;
        }
    }

    private static (string Cluster, string Token) ParseEvidence(ReadOnlyMemory<byte> payload)
    {
        try
        {
            using var doc = JsonDocument.Parse(payload);
            var root = doc.RootElement;
            if (root.ValueKind == JsonValueKind.Object && Str(root, "cluster") is { Length: > 0 and <= 63 } cluster
                && Str(root, "token") is { Length: > 0 and <= MaxTokenChars } token && root.EnumerateObject().Count() == 2)
            {
                return (cluster, token);
            }
        }
        catch (JsonException)
        {
        }
        throw new WritException(K8sPsatCodes.Malformed, WritErrorKind.InvalidArgument,
            "the k8s_psat evidence is not {\"cluster\": NAME, \"token\": TOKEN}: run a writ agent with --node-attestor k8s_psat --k8s-psat-cluster NAME");
    }

    private static string? Str(JsonElement e, string name) => e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String && v.GetString() is { Length: > 0 } s ? s : null;

    private static JsonElement? Obj(JsonElement e, string name) => e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Object ? v : null;

    /// <summary>Text from the agent or the API, made safe for a one-line message.</summary>
    private static string Printable(string s) => new([.. s.Take(200).Select(ch => char.IsControl(ch) ? '?' : ch)]);

    public void Dispose()
    {
        foreach (var a in _apis.Values)
        {
            a.Dispose();
        }
    }

    /// <summary>What the attestor keeps with the node: the SHA-256 and iat of the token that last attested it.</summary>
    private sealed record TokenState(string TokenSha256, long IssuedAt)
    {
        public byte[] Serialize() => JsonSerializer.SerializeToUtf8Bytes(new Dictionary<string, object> { ["token_sha256"] = TokenSha256, ["iat"] = IssuedAt });

        public static TokenState? Parse(byte[]? bytes)
        {
            if (bytes is null)
            {
                return null;
            }
            try
            {
                using var doc = JsonDocument.Parse(bytes);
                return Str(doc.RootElement, "token_sha256") is { } sha && doc.RootElement.TryGetProperty("iat", out var iat) && iat.TryGetInt64(out var at) ? new(sha, at) : null;
            }
            catch (JsonException)
            {
                return null;
            }
        }
    }
}
