using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using k8s;
using k8s.KubeConfigModels;
using k8s.Models;
using Microsoft.AspNetCore.Http;
using Writ.Server.Configuration;
using Writ.Server.NodeAttestation.K8sPsat;
using Writ.Tests.Shared;

namespace Writ.Server.Tests.NodeAttestation.K8sPsat;

/// <summary>A pod of the test cluster an agent runs in (the DaemonSet's), with its node.</summary>
internal sealed record TestPod(string Namespace, string ServiceAccount, string ServiceAccountUid, string Name, string Uid, string NodeName, string NodeUid);

/// <summary>
/// A Kubernetes cluster as k8s_psat meets it, on loopback HTTPS: an API server answering
/// <c>POST /apis/authentication.k8s.io/v1/tokenreviews</c>, <c>GET /api/v1/namespaces/NS/pods/NAME</c> and
/// <c>GET /api/v1/nodes/NAME</c> with JSON built from the KubernetesClient models (V1TokenReview, V1Pod, V1Node, V1Status
/// for a 404), as the Kubernetes API reference documents them; a kubeconfig for it (written with the KubernetesClient
/// kubeconfig model: the loopback CA, a bearer token); and the cluster's service-account issuer (discovery + JWKS) that
/// mints tokens with the exact claims of a bound projected token (the <c>kubernetes.io</c> claim with namespace,
/// serviceaccount, pod and, since 1.30, node).
/// </summary>
internal sealed class K8sTestCluster : IAsyncDisposable
{
    /// <summary>The bearer token of the Writ server's own service account in the kubeconfig.</summary>
    public const string ServerBearer = "writ-server-sa-token-7b1e";

    /// <summary>The API server's own audience (tokens for it are not for Writ).</summary>
    public const string ApiAudience = "https://kubernetes.default.svc.cluster.local";

    private readonly ConcurrentDictionary<string, IssuedToken> _tokens = new(StringComparer.Ordinal);

    private K8sTestCluster(string dir, LoopbackHttps api, OidcTestIssuer issuer, string kubeconfig)
    {
        Dir = dir;
        Api = api;
        Issuer = issuer;
        KubeconfigPath = kubeconfig;
        api.Handler = HandleAsync;
    }

    public string Dir { get; }
    public LoopbackHttps Api { get; }
    public OidcTestIssuer Issuer { get; }
    public string KubeconfigPath { get; }

    public ConcurrentDictionary<string, V1Pod> Pods { get; } = new(StringComparer.Ordinal);
    public ConcurrentDictionary<string, V1Node> Nodes { get; } = new(StringComparer.Ordinal);

    /// <summary>The Authorization header of every API request.</summary>
    public ConcurrentQueue<string> Authorizations { get; } = new();

    /// <summary>
    /// As the real API server, a TokenReview of a pod-bound token fails once its pod is gone or replaced. Switched off, the
    /// review answers from the token alone (a review racing the pod's deletion), so the attestor's own pod check is tested.
    /// </summary>
    public bool CheckBoundObjects { get; set; } = true;

    /// <summary>An API server that is not audience-aware: it ignores spec.audiences and echoes the token's own audiences.</summary>
    public bool IgnoreRequestedAudiences { get; set; }

    /// <summary>When set, every API request is answered with this status (e.g. 403 for missing RBAC, 503).</summary>
    public int? FailWith { get; set; }

    public static async Task<K8sTestCluster> StartAsync(string dir)
    {
        var api = await LoopbackHttps.StartAsync(Path.Combine(dir, "api"), name: "kube-apiserver");
        var issuer = await OidcTestIssuer.StartAsync(Path.Combine(dir, "issuer"), keyType: "RS256");
        var kubeconfig = Path.Combine(dir, "kubeconfig");
        var config = new K8SConfiguration
        {
            CurrentContext = "test",
            Clusters = [new Cluster { Name = "test", ClusterEndpoint = new ClusterEndpoint { Server = api.BaseUri.ToString(), CertificateAuthority = api.CaPemPath } }],
            Users = [new User { Name = "writ-server", UserCredentials = new UserCredentials { Token = ServerBearer } }],
            Contexts = [new Context { Name = "test", ContextDetails = new ContextDetails { Cluster = "test", User = "writ-server" } }],
        };
        await File.WriteAllTextAsync(kubeconfig, "apiVersion: v1\nkind: Config\n" + KubernetesYaml.Serialize(config));
        return new K8sTestCluster(dir, api, issuer, kubeconfig);
    }

    /// <summary>The <c>k8s_clusters</c> options of one cluster object (parsed as the server parses its configuration).</summary>
    public static K8sPsatOptions Options(params JsonObject[] clusters)
    {
        var c = new ConfigSources(K8sPsatOptions.Keys);
        c.Set("k8s_clusters", new JsonArray([.. clusters]).ToJsonString(), "test");
        var options = K8sPsatOptions.Build(c);
        Assert.True(c.Errors.Count == 0, string.Join("; ", c.Errors));
        return options;
    }

    private int _pods;

    /// <summary>A new pod on a new node (or on <paramref name="nodeName"/>, made when missing), stored in the API.</summary>
    public TestPod AddPod(string ns = "writ", string sa = "writ-agent", string? nodeName = null, IDictionary<string, string>? nodeLabels = null)
    {
        var n = Interlocked.Increment(ref _pods);
        nodeName ??= $"node-{n}";
        var node = Nodes.GetOrAdd(nodeName, name => new V1Node
        {
            ApiVersion = "v1",
            Kind = "Node",
            Metadata = new V1ObjectMeta { Name = name, Uid = Guid.NewGuid().ToString(), Labels = nodeLabels ?? new Dictionary<string, string> { ["kubernetes.io/hostname"] = name } },
            Status = new V1NodeStatus { NodeInfo = new V1NodeSystemInfo { KubeletVersion = "v1.31.2" } },
        });
        var pod = new TestPod(ns, sa, Guid.NewGuid().ToString(), $"writ-agent-{n:x5}", Guid.NewGuid().ToString(), nodeName, node.Metadata.Uid);
        Pods[$"{ns}/{pod.Name}"] = new V1Pod
        {
            ApiVersion = "v1",
            Kind = "Pod",
            Metadata = new V1ObjectMeta { Name = pod.Name, NamespaceProperty = ns, Uid = pod.Uid, Labels = new Dictionary<string, string> { ["app"] = "writ-agent" } },
            Spec = new V1PodSpec { NodeName = nodeName, ServiceAccountName = sa, Containers = [new V1Container { Name = "agent", Image = "ghcr.io/writ/writ:1" }] },
            Status = new V1PodStatus { Phase = "Running" },
        };
        return pod;
    }

    /// <summary>
    /// A projected token of <paramref name="pod"/> as the API server knows it (JWT-shaped, with iat): TokenReview
    /// authenticates it for <paramref name="audiences"/> between <paramref name="notBefore"/> and its expiry.
    /// </summary>
    public string ApiToken(TestPod pod, string[]? audiences = null, bool podBound = true, bool nodeInfo = true, TimeSpan? expiresIn = null, DateTimeOffset? notBefore = null)
    {
        var now = DateTimeOffset.UtcNow;
        var iat = notBefore ?? now;
        var token = OidcTestIssuer.B64("{\"alg\":\"RS256\",\"kid\":\"api\"}"u8) + "." + OidcTestIssuer.B64(Encoding.UTF8.GetBytes(
            new JsonObject { ["iat"] = iat.ToUnixTimeSeconds(), ["jti"] = Guid.NewGuid().ToString() }.ToJsonString())) + "." + OidcTestIssuer.B64(RandomNumberGenerator.GetBytes(64));
        _tokens[token] = new IssuedToken(pod, audiences ?? ["writ"], podBound, nodeInfo, iat, now + (expiresIn ?? TimeSpan.FromHours(1)));
        return token;
    }

    /// <summary>
    /// A bound projected token signed by the cluster's issuer (or <paramref name="issuer"/>), with the claims Kubernetes
    /// puts in one (1.30+: node too): iss, sub system:serviceaccount:NS:SA, aud list, exp, iat, nbf, jti and kubernetes.io.
    /// </summary>
    public string OfflineToken(TestPod pod, string audience = "writ", bool podBound = true, bool nodeInfo = true, TimeSpan? lifetime = null, OidcTestIssuer? issuer = null,
        IDictionary<string, object?>? extra = null, DateTimeOffset? issuedAt = null, OidcTestIssuer.SigningKey? key = null) =>
        (issuer ?? Issuer).Mint(OfflineClaims(pod, audience, podBound, nodeInfo, lifetime, issuer, extra, issuedAt), key);

    /// <summary>The claims of <see cref="OfflineToken"/>, for tokens signed otherwise (alg none, HS256).</summary>
    public JsonObject OfflineClaims(TestPod pod, string audience = "writ", bool podBound = true, bool nodeInfo = true, TimeSpan? lifetime = null, OidcTestIssuer? issuer = null,
        IDictionary<string, object?>? extra = null, DateTimeOffset? issuedAt = null)
    {
        issuer ??= Issuer;
        var k8s = new JsonObject
        {
            ["namespace"] = pod.Namespace,
            ["serviceaccount"] = new JsonObject { ["name"] = pod.ServiceAccount, ["uid"] = pod.ServiceAccountUid },
        };
        if (podBound)
        {
            k8s["pod"] = new JsonObject { ["name"] = pod.Name, ["uid"] = pod.Uid };
            if (nodeInfo)
            {
                k8s["node"] = new JsonObject { ["name"] = pod.NodeName, ["uid"] = pod.NodeUid };
            }
        }
        var at = issuedAt ?? DateTimeOffset.UtcNow;
        var life = lifetime ?? TimeSpan.FromHours(1);
        k8s["warnafter"] = at.Add(life * 0.8).ToUnixTimeSeconds();
        var claims = issuer.Claims($"system:serviceaccount:{pod.Namespace}:{pod.ServiceAccount}", audience, life, new Dictionary<string, object?>
        {
            ["aud"] = new[] { audience },
            ["iat"] = at.ToUnixTimeSeconds(),
            ["nbf"] = at.ToUnixTimeSeconds(),
            ["exp"] = at.Add(life).ToUnixTimeSeconds(),
        });
        claims["kubernetes.io"] = k8s;
        foreach (var (k, v) in extra ?? new Dictionary<string, object?>())
        {
            if (v is null)
            {
                claims.Remove(k);
            }
            else
            {
                claims[k] = System.Text.Json.JsonSerializer.SerializeToNode(v);
            }
        }
        return claims;
    }

    /// <summary>The k8s_psat evidence an agent sends.</summary>
    public static byte[] Evidence(string cluster, string token) =>
        Encoding.UTF8.GetBytes(new JsonObject { ["cluster"] = cluster, ["token"] = token }.ToJsonString());

    private sealed record IssuedToken(TestPod Pod, string[] Audiences, bool PodBound, bool NodeInfo, DateTimeOffset NotBefore, DateTimeOffset ExpiresAt);

    private async Task HandleAsync(HttpContext ctx)
    {
        Authorizations.Enqueue(ctx.Request.Headers.Authorization.ToString());
        if (FailWith is { } status)
        {
            await WriteAsync(ctx, status, NotFound(status, "failure requested by the test"));
            return;
        }
        var path = ctx.Request.Path.Value ?? "";
        var parts = path.Split('/', StringSplitOptions.RemoveEmptyEntries);
        if (ctx.Request.Method == "POST" && path == "/apis/authentication.k8s.io/v1/tokenreviews")
        {
            using var reader = new StreamReader(ctx.Request.Body);
            var review = KubernetesJson.Deserialize<V1TokenReview>(await reader.ReadToEndAsync());
            review.Status = Review(review.Spec);
            await WriteAsync(ctx, 201, review);
        }
        else if (ctx.Request.Method == "GET" && parts is ["api", "v1", "namespaces", var ns, "pods", var name])
        {
            await (Pods.TryGetValue($"{ns}/{name}", out var pod) ? WriteAsync(ctx, 200, pod) : WriteAsync(ctx, 404, NotFound(404, $"pods \"{name}\" not found")));
        }
        else if (ctx.Request.Method == "GET" && parts is ["api", "v1", "nodes", var node])
        {
            await (Nodes.TryGetValue(node, out var n) ? WriteAsync(ctx, 200, n) : WriteAsync(ctx, 404, NotFound(404, $"nodes \"{node}\" not found")));
        }
        else
        {
            await WriteAsync(ctx, 404, NotFound(404, "the server could not find the requested resource"));
        }
    }

    /// <summary>What the API server's authenticators answer (status fields as the TokenReview reference documents them).</summary>
    private V1TokenReviewStatus Review(V1TokenReviewSpec spec)
    {
        static V1TokenReviewStatus Unauthenticated(string error) => new() { Authenticated = false, Error = error, User = new V1UserInfo() };
        if (spec?.Token is not { } token || !_tokens.TryGetValue(token, out var t))
        {
            return Unauthenticated("[invalid bearer token, square/go-jose: error in cryptographic primitive]");
        }
        var now = DateTimeOffset.UtcNow;
        if (now > t.ExpiresAt)
        {
            return Unauthenticated("[invalid bearer token, service account token has expired]");
        }
        if (now < t.NotBefore.AddSeconds(-60))
        {
            return Unauthenticated("[invalid bearer token, service account token is not valid yet]");
        }
        var requested = spec.Audiences ?? [];
        var audiences = IgnoreRequestedAudiences || requested.Count == 0 ? t.Audiences : [.. t.Audiences.Intersect(requested, StringComparer.Ordinal)];
        if (audiences.Length == 0)
        {
            return Unauthenticated("[invalid bearer token, token audiences [\"" + string.Join("\",\"", t.Audiences) + "\"] is invalid for the target audiences]");
        }
        var p = t.Pod;
        if (CheckBoundObjects && t.PodBound && (!Pods.TryGetValue($"{p.Namespace}/{p.Name}", out var live) || live.Metadata.Uid != p.Uid))
        {
            return Unauthenticated($"[invalid bearer token, pods \"{p.Name}\" not found]");
        }
        var extra = new Dictionary<string, IList<string>> { ["authentication.kubernetes.io/credential-id"] = [$"JTI={Guid.NewGuid()}"] };
        if (t.PodBound)
        {
            extra["authentication.kubernetes.io/pod-name"] = [p.Name];
            extra["authentication.kubernetes.io/pod-uid"] = [p.Uid];
            if (t.NodeInfo)
            {
                extra["authentication.kubernetes.io/node-name"] = [p.NodeName];
                extra["authentication.kubernetes.io/node-uid"] = [p.NodeUid];
            }
        }
        return new V1TokenReviewStatus
        {
            Authenticated = true,
            Audiences = audiences,
            User = new V1UserInfo
            {
                Username = $"system:serviceaccount:{p.Namespace}:{p.ServiceAccount}",
                Uid = p.ServiceAccountUid,
                Groups = ["system:serviceaccounts", $"system:serviceaccounts:{p.Namespace}", "system:authenticated"],
                Extra = extra,
            },
        };
    }

    private static V1Status NotFound(int code, string message) => new()
    {
        ApiVersion = "v1",
        Kind = "Status",
        Status = "Failure",
        Reason = code == 404 ? "NotFound" : code == 403 ? "Forbidden" : "ServiceUnavailable",
        Code = code,
        Message = message,
    };

    private static readonly System.Text.Json.JsonSerializerOptions StatusJson = new() { DefaultIgnoreCondition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull };

    private static async Task WriteAsync(HttpContext ctx, int status, object body)
    {
        ctx.Response.StatusCode = status;
        ctx.Response.ContentType = "application/json";
        // KubernetesJson's V1Status converter only reads; the model's own JSON names write it.
        await ctx.Response.WriteAsync(body is V1Status s ? System.Text.Json.JsonSerializer.Serialize(s, StatusJson) : KubernetesJson.Serialize(body));
    }

    public async ValueTask DisposeAsync()
    {
        await Api.DisposeAsync();
        await Issuer.DisposeAsync();
    }
}

/// <summary>One test cluster (API server, kubeconfig, issuer) per test class, and a second cluster's issuer for the foreign-token attacks.</summary>
public sealed class K8sTestClusterFixture : IAsyncLifetime
{
    private readonly string _dir = Directory.CreateTempSubdirectory("writ-k8spsat-").FullName;

    internal K8sTestCluster Cluster { get; private set; } = null!;

    /// <summary>Another cluster's service-account issuer (its tokens must never attest as this cluster).</summary>
    internal OidcTestIssuer OtherIssuer { get; private set; } = null!;

    public async ValueTask InitializeAsync()
    {
        Cluster = await K8sTestCluster.StartAsync(_dir);
        OtherIssuer = await OidcTestIssuer.StartAsync(Path.Combine(_dir, "other"), keyType: "RS256");
    }

    public async ValueTask DisposeAsync()
    {
        await Cluster.DisposeAsync();
        await OtherIssuer.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
    }
}
