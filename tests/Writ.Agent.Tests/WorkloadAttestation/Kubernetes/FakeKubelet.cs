using System.Net;
using k8s;
using k8s.Models;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Writ.Agent.WorkloadAttestation.Kubernetes;
using Writ.Tests.Shared;

namespace Writ.Agent.Tests.WorkloadAttestation.Kubernetes;

/// <summary>
/// A kubelet as the agent sees it: <c>GET /pods</c> answers a <see cref="V1PodList"/> serialized by the official
/// KubernetesClient models, on HTTPS (<see cref="LoopbackHttps"/>, a test CA) checking a bearer token as the kubelet's
/// webhook authentication would, or on plain HTTP without authentication (the read-only port). Counts requests;
/// <see cref="Gate"/> holds answers back; <see cref="Override"/> answers instead (errors, attacks).
/// </summary>
internal sealed class FakeKubelet : IAsyncDisposable
{
    public const string NodeName = "node-a";
    private readonly LoopbackHttps? _https;
    private readonly WebApplication? _http;
    private readonly Lock _lock = new();
    private List<V1Pod> _pods = [];
    private int _requests;

    private FakeKubelet(LoopbackHttps? https, WebApplication? http, string dir)
    {
        _https = https;
        _http = http;
        Dir = dir;
        Directory.CreateDirectory(dir);
        TokenPath = Path.Combine(dir, "token");
        File.WriteAllText(TokenPath, Token + "\n");
    }

    public string Dir { get; }

    /// <summary>The token the kubelet accepts (and the agent's token file holds at first).</summary>
    public string Token { get; set; } = "eyJhbGciOiJSUzI1NiJ9.agent-token.sig";

    public string TokenPath { get; }

    /// <summary>Authorization headers received, in order (null: none).</summary>
    public System.Collections.Concurrent.ConcurrentQueue<string?> Authorizations { get; } = new();

    public int Requests => Volatile.Read(ref _requests);

    /// <summary>While set and not completed, answers wait for it.</summary>
    public TaskCompletionSource? Gate { get; set; }

    /// <summary>Answers every request instead of the pod list (after counting it).</summary>
    public Func<HttpContext, Task>? Override { get; set; }

    public int Port => _https?.Port ?? new Uri(_http!.Urls.First()).Port;

    public string? CaPemPath => _https?.CaPemPath;

    public void SetPods(params V1Pod[] pods)
    {
        lock (_lock)
        {
            _pods = [.. pods];
        }
    }

    public static async Task<FakeKubelet> StartHttpsAsync(string dir)
    {
        var https = await LoopbackHttps.StartAsync(dir, name: "kubelet");
        var kubelet = new FakeKubelet(https, null, dir);
        https.Handler = kubelet.HandleAsync;
        return kubelet;
    }

    /// <summary>A read-only port: plain HTTP on 127.0.0.1, no authentication.</summary>
    public static async Task<FakeKubelet> StartHttpAsync(string dir)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0));
        var app = builder.Build();
        var kubelet = new FakeKubelet(null, app, dir);
        app.Run(kubelet.HandleAsync);
        await app.StartAsync();
        return kubelet;
    }

    /// <summary>The agent's options for this kubelet (secure port with its CA, or the read-only port).</summary>
    public K8sWorkloadOptions Options(TimeSpan? ttl = null) => _https is not null
        ? new K8sWorkloadOptions { KubeletPort = Port, KubeletCaPath = CaPemPath, TokenPath = TokenPath, NodeName = NodeName, PodCacheTtl = ttl ?? TimeSpan.FromSeconds(5) }
        : new K8sWorkloadOptions { KubeletReadOnlyPort = Port, TokenPath = TokenPath, NodeName = NodeName, PodCacheTtl = ttl ?? TimeSpan.FromSeconds(5) };

    private async Task HandleAsync(HttpContext ctx)
    {
        Interlocked.Increment(ref _requests);
        string? auth = ctx.Request.Headers.Authorization.Count > 0 ? ctx.Request.Headers.Authorization.ToString() : null;
        Authorizations.Enqueue(auth);
        if (Gate is { } gate)
        {
            await gate.Task;
        }

        if (Override is { } answer)
        {
            await answer(ctx);
            return;
        }

        if (ctx.Request.Path != "/pods" || ctx.Request.Method != "GET")
        {
            ctx.Response.StatusCode = 404;
            return;
        }

        if (_https is not null && auth != "Bearer " + Token)
        {
            ctx.Response.StatusCode = 401;   // the kubelet's webhook token authentication said no
            return;
        }

        List<V1Pod> pods;
        lock (_lock)
        {
            pods = [.. _pods];
        }

        ctx.Response.ContentType = "application/json";
        await ctx.Response.WriteAsync(KubernetesJson.Serialize(new V1PodList { ApiVersion = "v1", Kind = "PodList", Metadata = new V1ListMeta(), Items = pods }));
    }

    public async ValueTask DisposeAsync()
    {
        if (_https is not null)
        {
            await _https.DisposeAsync();
        }

        if (_http is not null)
        {
            await _http.StopAsync();
            await _http.DisposeAsync();
        }
    }
}

/// <summary>Pods in the shape a kubelet reports them (metadata, spec, status with container ids and resolved image ids).</summary>
internal static class Pods
{
    public const string ImageHex = "4c0fdaa8b6341bfdeca5f18f7837462c80cff90527ee35ef185571e1c327beac";
    public const string OtherImageHex = "9a1c3f5e7b2d4f6a8c0e1b3d5f7a9c2e4b6d8f0a1c3e5b7d9f2a4c6e8b0d1f3a";

    public static V1Pod Make(string uid, string name, string ns, string serviceAccount, string containerId, string node = FakeKubelet.NodeName,
        string containerName = "app", string image = "registry.example/team/web:1.2", string? imageId = null, IDictionary<string, string>? labels = null)
    {
        return new V1Pod
        {
            ApiVersion = "v1",
            Kind = "Pod",
            Metadata = new V1ObjectMeta
            {
                Name = name,
                NamespaceProperty = ns,
                Uid = uid,
                Labels = labels ?? new Dictionary<string, string> { ["app"] = "web", ["tier"] = "front" },
                OwnerReferences = [new V1OwnerReference { ApiVersion = "apps/v1", Kind = "ReplicaSet", Name = name + "-rs", Uid = Guid.NewGuid().ToString(), Controller = true }],
            },
            Spec = new V1PodSpec
            {
                NodeName = node,
                ServiceAccountName = serviceAccount,
                Containers = [new V1Container { Name = containerName, Image = image }],
            },
            Status = new V1PodStatus
            {
                Phase = "Running",
                ContainerStatuses =
                [
                    new V1ContainerStatus
                    {
                        Name = containerName,
                        ContainerID = "containerd://" + containerId,
                        Image = image,
                        ImageID = imageId ?? "registry.example/team/web@sha256:" + ImageHex,
                        Ready = true,
                        RestartCount = 0,
                    },
                ],
            },
        };
    }

    public static string NewUid() => Guid.NewGuid().ToString();

    public static string NewContainerId() => Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(32));
}
