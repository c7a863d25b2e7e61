using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using k8s;
using k8s.Models;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Writ.Agent.PeerTracking;
using Writ.Agent.WorkloadAttestation;
using Writ.Agent.WorkloadAttestation.ImageSignatures;
using Writ.Agent.WorkloadAttestation.Kubernetes;

namespace Writ.Bench;

/// <summary>One variant of the k8s bench: its latency per attestation and the kubelet requests it made (warm-up included).</summary>
public sealed record K8sVariantFigures(
    [property: JsonPropertyName("attestors")] string Attestors,
    [property: JsonPropertyName("calls")] long Calls,
    [property: JsonPropertyName("p50_us")] double P50,
    [property: JsonPropertyName("p99_us")] double P99,
    [property: JsonPropertyName("mean_us")] double Mean,
    [property: JsonPropertyName("kubelet_requests")] int KubeletRequests);

public sealed record K8sBenchResult(
    [property: JsonPropertyName("benchmark")] string Benchmark,
    [property: JsonPropertyName("seconds")] double Seconds,
    [property: JsonPropertyName("cgroup")] string Cgroup,
    [property: JsonPropertyName("pods")] int Pods,
    [property: JsonPropertyName("pod_list_bytes")] int PodListBytes,
    [property: JsonPropertyName("unix_cgroup")] K8sVariantFigures UnixCgroup,
    [property: JsonPropertyName("k8s_warm")] K8sVariantFigures K8sWarm,
    [property: JsonPropertyName("k8s_uncached")] K8sVariantFigures K8sUncached,
    [property: JsonPropertyName("k8s_signed")] K8sVariantFigures K8sSigned,
    [property: JsonPropertyName("kubelet_requests_served")] int KubeletRequestsServed);

/// <summary>
/// `writ bench k8s`: what the k8s workload attestor adds to a workload's attestation. A child process (<c>sleep</c>) is
/// put in a real pod container cgroup (cgroupfs layout, <c>kubepods/besteffort/pod&lt;uid&gt;/&lt;container id&gt;</c>, the
/// v1 pids hierarchy or cgroup v2), a kubelet-shaped list of <see cref="PodCount"/> pods (KubernetesClient models,
/// serialized with <see cref="KubernetesJson"/>; that container is in one of them) is served on loopback over plain HTTP
/// (the kubelet's read-only-port mode), and <see cref="WorkloadAttestationRunner.AttestAsync(PeerCredentials, CancellationToken)"/>
/// is timed for the child with three attestor sets, interleaved: unix+cgroup (the reference), unix+cgroup+k8s with a
/// warm pod cache (a TTL longer than the run), and unix+cgroup+k8s with <c>pod_cache_ttl</c> 0 (every call fetches and
/// parses the list), and the warm set with image signature checks (a registered key in <c>k8s.image_keys_dir</c>, the
/// pod's image signed in a local <c>k8s.image_signatures_dir</c>; results cached, as in the agent). Needs root (it creates cgroups).
/// </summary>
public static class K8sBench
{
    /// <summary>The kubelet's default maximum of pods per node (<c>--max-pods</c>).</summary>
    public const int PodCount = 110;

    private const string NodeName = "bench-node";

    public static async Task<K8sBenchResult> RunAsync(TimeSpan each, CancellationToken ct)
    {
        if (!OperatingSystem.IsLinux() || !Environment.IsPrivilegedProcess)
        {
            throw new BenchFailedException("writ bench k8s needs root on Linux: it puts a child process in a pod's cgroup (run it as root)");
        }
        var (root, version) = Directory.Exists("/sys/fs/cgroup/pids") ? ("/sys/fs/cgroup/pids", "v1")
            : File.Exists("/sys/fs/cgroup/cgroup.controllers") ? ("/sys/fs/cgroup", "v2")
            : throw new BenchFailedException("writ bench k8s needs a writable cgroup hierarchy (the cgroup v1 pids controller at /sys/fs/cgroup/pids, or cgroup v2 at /sys/fs/cgroup)");

        var podUid = Guid.NewGuid().ToString();
        var containerId = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(32));
        var list = PodList(podUid, containerId);
        var body = Encoding.UTF8.GetBytes(KubernetesJson.Serialize(list));

        var made = new List<string>();
        var keysDir = Directory.CreateTempSubdirectory("wbk8s-").FullName;
        Process? child = null;
        try
        {
            var dir = root;
            foreach (var part in new[] { "kubepods", "besteffort", "pod" + podUid, containerId })
            {
                dir = Path.Combine(dir, part);
                if (!Directory.Exists(dir))
                {
                    try
                    {
                        Directory.CreateDirectory(dir);
                    }
                    catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                    {
                        throw new BenchFailedException($"cannot create the pod cgroup under {root} ({e.GetType().Name}): writ bench k8s needs a writable cgroup hierarchy");
                    }
                    if (part != "kubepods" && part != "besteffort")
                    {
                        made.Add(dir);   // kubepods and the QoS class are shared with tests creating pods at the same time: left in place
                    }
                }
            }
            child = Process.Start(new ProcessStartInfo("sleep", "3600") { UseShellExecute = false })
                ?? throw new BenchFailedException("cannot start the child process 'sleep'");
            await File.WriteAllTextAsync(Path.Combine(dir, "cgroup.procs"), child.Id.ToString(CultureInfo.InvariantCulture), ct).ConfigureAwait(false);

            var served = 0;
            await using var kubelet = await StartKubeletAsync(body, () => Interlocked.Increment(ref served), ct).ConfigureAwait(false);
            var port = new Uri(kubelet.Urls.First()).Port;
            var proc = ProcFs.Host;
            var peer = new PeerCredentials(child.Id, 0, 0);
            var log = NullLogger.Instance;
            var timeout = TimeSpan.FromSeconds(10);
            var options = new K8sWorkloadOptions { KubeletHost = "127.0.0.1", KubeletReadOnlyPort = port, NodeName = NodeName };
            using var warm = new K8sWorkloadAttestor(options with { PodCacheTtl = TimeSpan.FromDays(1) }, proc, null, log, TimeProvider.System);
            using var uncached = new K8sWorkloadAttestor(options with { PodCacheTtl = TimeSpan.Zero }, proc, null, log, new RateLimitSkippingClock());
            var reference = new WorkloadAttestationRunner([new UnixWorkloadAttestor(proc), new CgroupWorkloadAttestor(proc)], proc, timeout, log);
            var withWarm = new WorkloadAttestationRunner([new UnixWorkloadAttestor(proc), new CgroupWorkloadAttestor(proc), warm], proc, timeout, log);
            var withUncached = new WorkloadAttestationRunner([new UnixWorkloadAttestor(proc), new CgroupWorkloadAttestor(proc), uncached], proc, timeout, log);
            var target = list.Items.Single(p => p.Metadata.Uid == podUid);
            using var verifier = SignedImage(keysDir, target.Status.ContainerStatuses[0]);
            using var signedAttestor = new K8sWorkloadAttestor(options with { PodCacheTtl = TimeSpan.FromDays(1) }, proc, verifier, log, TimeProvider.System);
            var withSigned = new WorkloadAttestationRunner([new UnixWorkloadAttestor(proc), new CgroupWorkloadAttestor(proc), signedAttestor], proc, timeout, log);

            // What is timed must be the real thing: the child attested, in the pod (k8s selectors of that pod's container).
            await CheckAsync(reference, peer, "container", $"id:{containerId}", ct).ConfigureAwait(false);
            await CheckAsync(withWarm, peer, "k8s", $"pod-name:{target.Metadata.Name}", ct).ConfigureAwait(false);
            await CheckAsync(withUncached, peer, "k8s", $"pod-name:{target.Metadata.Name}", ct).ConfigureAwait(false);
            await CheckAsync(withSigned, peer, "k8s", $"image-signed-by:{SigningKey}", ct).ConfigureAwait(false);

            var samples = await BenchTiming.LatencyAsync(
            [
                new BenchOp("unix_cgroup", async () => await reference.AttestAsync(peer, ct).ConfigureAwait(false)),
                new BenchOp("k8s_warm", async () => await withWarm.AttestAsync(peer, ct).ConfigureAwait(false)),
                new BenchOp("k8s_uncached", async () => await withUncached.AttestAsync(peer, ct).ConfigureAwait(false)),
                new BenchOp("k8s_signed", async () => await withSigned.AttestAsync(peer, ct).ConfigureAwait(false)),
            ], each, ct).ConfigureAwait(false);
            return new K8sBenchResult("k8s", each.TotalSeconds, version, list.Items.Count, body.Length,
                Figures("unix,cgroup", samples[0], 0),
                Figures("unix,cgroup,k8s (pod cache warm)", samples[1], warm.Pods.Fetches),
                Figures("unix,cgroup,k8s (pod_cache_ttl 0)", samples[2], uncached.Pods.Fetches),
                Figures("unix,cgroup,k8s (pod cache warm, image signatures checked, cached)", samples[3], signedAttestor.Pods.Fetches),
                Volatile.Read(ref served));
        }
        finally
        {
            if (child is not null)
            {
                try
                {
                    child.Kill();
                    await child.WaitForExitAsync(CancellationToken.None).ConfigureAwait(false);
                }
                catch (InvalidOperationException)
                {
                    // already gone
                }
                child.Dispose();
            }
            for (var i = made.Count - 1; i >= 0; i--)
            {
                try
                {
                    Directory.Delete(made[i]);
                }
                catch (IOException)
                {
                    // kubepods or besteffort still used by someone else's pod cgroup
                }
            }
            Directory.Delete(keysDir, recursive: true);
        }
    }

    private const string SigningKey = "bench-release";

    /// <summary>
    /// A registered ECDSA P-256 key (<c>keys/bench-release.pub</c>) and a cosign simple-signing signature by it of the
    /// container's image digest in the air-gapped layout (<c>signatures/sha256-&lt;hex&gt;.sig</c>), and the agent's verifier over them.
    /// </summary>
    private static ImageSignatureVerifier SignedImage(string dir, V1ContainerStatus container)
    {
        var keys = Directory.CreateDirectory(Path.Combine(dir, "keys")).FullName;
        var signatures = Directory.CreateDirectory(Path.Combine(dir, "signatures")).FullName;
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        File.WriteAllText(Path.Combine(keys, SigningKey + ".pub"), key.ExportSubjectPublicKeyInfoPem());
        var digest = K8sWorkloadAttestor.ImageDigest(container.ImageID) ?? throw new BenchFailedException("the bench pod's image id has no digest");
        var payload = JsonSerializer.SerializeToUtf8Bytes(new Dictionary<string, object?>
        {
            ["critical"] = new Dictionary<string, object>
            {
                ["identity"] = new Dictionary<string, string> { ["docker-reference"] = container.Image.Split(':')[0] },
                ["image"] = new Dictionary<string, string> { ["docker-manifest-digest"] = digest },
                ["type"] = "cosign container image signature",
            },
            ["optional"] = null,
        });
        var signature = key.SignData(payload, HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence);
        File.WriteAllText(Path.Combine(signatures, "sha256-" + digest["sha256:".Length..] + ".sig"),
            JsonSerializer.Serialize(new Dictionary<string, string> { ["Payload"] = Convert.ToBase64String(payload), ["Base64Signature"] = Convert.ToBase64String(signature) }) + "\n");
        return new ImageSignatureVerifier(new ImageSignatureOptions { KeysDir = keys, SignaturesDir = signatures }, NullLogger.Instance, TimeProvider.System);
    }

    private static K8sVariantFigures Figures(string attestors, BenchSample s, int requests) =>
        new(attestors, s.Count, BenchTiming.Round(s.PercentileMicroseconds(50)), BenchTiming.Round(s.PercentileMicroseconds(99)),
            BenchTiming.Round(s.MicrosecondsPerOp), requests);

    private static async Task CheckAsync(WorkloadAttestationRunner runner, PeerCredentials peer, string type, string value, CancellationToken ct)
    {
        var r = await runner.AttestAsync(peer, ct).ConfigureAwait(false);
        if (r.Evidence is not { } evidence)
        {
            throw new BenchFailedException($"the bench's child process cannot be attested: {r.Describe()}");
        }
        if (evidence.AttestorErrors.Count > 0)
        {
            throw new BenchFailedException($"an attestor failed on the bench's child process: {evidence.AttestorErrors[0]}");
        }
        if (!evidence.Selectors.Any(s => s.Type == type && s.Value == value))
        {
            throw new BenchFailedException($"the bench's child process got no selector {type}:{value}; it is not seen in its pod");
        }
    }

    /// <summary>A kubelet's <c>/pods</c> on plain HTTP (its read-only port): the same bytes every time, requests counted.</summary>
    private static async Task<KubeletServer> StartKubeletAsync(byte[] body, Action counted, CancellationToken ct)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseKestrel(k => k.Listen(IPAddress.Loopback, 0));
        var app = builder.Build();
        app.MapGet("/pods", async (HttpContext ctx) =>
        {
            counted();
            ctx.Response.ContentType = "application/json";
            ctx.Response.ContentLength = body.Length;
            await ctx.Response.Body.WriteAsync(body, ctx.RequestAborted).ConfigureAwait(false);
        });
        await app.StartAsync(ct).ConfigureAwait(false);
        var urls = app.Services.GetService(typeof(IServer)) is IServer s && s.Features.Get<IServerAddressesFeature>() is { } f ? f.Addresses.ToList() : [];
        return new KubeletServer(app, urls);
    }

    private sealed class KubeletServer(WebApplication app, IReadOnlyList<string> urls) : IAsyncDisposable
    {
        public IReadOnlyList<string> Urls { get; } = urls.Count > 0 ? urls : throw new BenchFailedException("the bench's kubelet did not report its address");

        public async ValueTask DisposeAsync()
        {
            await app.StopAsync(CancellationToken.None).ConfigureAwait(false);
            await app.DisposeAsync().ConfigureAwait(false);
        }
    }

    /// <summary>
    /// The pod cache spaces its requests at least <see cref="KubeletPodCache.MinRefreshInterval"/> apart (a storm of
    /// misses costs the kubelet a few requests a second). With TTL 0 on the real clock every call would wait out that
    /// interval, and the bench would time the limit, not the work: this clock moves one interval forward at every reading,
    /// so each call fetches and parses at once. Elapsed-time measurements (timestamps) are the real ones.
    /// </summary>
    private sealed class RateLimitSkippingClock : TimeProvider
    {
        private long _readings;

        public override DateTimeOffset GetUtcNow() =>
            base.GetUtcNow() + (KubeletPodCache.MinRefreshInterval * Interlocked.Increment(ref _readings));
    }

    /// <summary>
    /// <see cref="PodCount"/> pods on the bench node as a kubelet lists them: a Deployment's pods with labels,
    /// annotations, an owner, two containers (app and sidecar) with ports, environment, resources and volume mounts,
    /// running statuses with container and image ids. The pod the child process is in is one of them (the middle one).
    /// </summary>
    private static V1PodList PodList(string podUid, string containerId)
    {
        var pods = new List<V1Pod>(PodCount);
        for (var i = 0; i < PodCount; i++)
        {
            var app = $"svc{i % 23}";
            var uid = i == PodCount / 2 ? podUid : Guid.NewGuid().ToString();
            var appId = i == PodCount / 2 ? containerId : Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(32));
            var rs = $"{app}-{i:x4}9f8c";
            var name = $"{rs}-{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(3))}";
            var ns = $"team{i % 7}";
            var started = DateTime.UtcNow.AddHours(-i - 1);
            pods.Add(new V1Pod
            {
                ApiVersion = "v1",
                Kind = "Pod",
                Metadata = new V1ObjectMeta
                {
                    Name = name, NamespaceProperty = ns, Uid = uid, ResourceVersion = (100000 + i).ToString(CultureInfo.InvariantCulture),
                    CreationTimestamp = started, GenerateName = rs + "-",
                    Labels = new Dictionary<string, string> { ["app"] = app, ["pod-template-hash"] = $"{i:x4}9f8c", ["tier"] = i % 2 == 0 ? "web" : "worker" },
                    Annotations = new Dictionary<string, string>
                    {
                        ["kubernetes.io/config.seen"] = started.ToString("O", CultureInfo.InvariantCulture),
                        ["kubernetes.io/config.source"] = "api",
                    },
                    OwnerReferences = [new V1OwnerReference { ApiVersion = "apps/v1", Kind = "ReplicaSet", Name = rs, Uid = Guid.NewGuid().ToString(), Controller = true, BlockOwnerDeletion = true }],
                },
                Spec = new V1PodSpec
                {
                    NodeName = NodeName, ServiceAccountName = app, RestartPolicy = "Always", DnsPolicy = "ClusterFirst", SchedulerName = "default-scheduler",
                    TerminationGracePeriodSeconds = 30,
                    Containers =
                    [
                        Container("app", $"registry.example/{ns}/{app}:1.{i % 9}", 8080),
                        Container("proxy", "registry.example/mesh/proxy:1.30", 15001),
                    ],
                    Volumes =
                    [
                        new V1Volume { Name = "config", ConfigMap = new V1ConfigMapVolumeSource { Name = app + "-config" } },
                        new V1Volume { Name = "kube-api-access", Projected = new V1ProjectedVolumeSource
                        {
                            Sources = [new V1VolumeProjection { ServiceAccountToken = new V1ServiceAccountTokenProjection { Path = "token", ExpirationSeconds = 3607 } }],
                        } },
                    ],
                    Tolerations = [new V1Toleration { Key = "node.kubernetes.io/not-ready", OperatorProperty = "Exists", Effect = "NoExecute", TolerationSeconds = 300 }],
                },
                Status = new V1PodStatus
                {
                    Phase = "Running", HostIP = "10.0.0.10", PodIP = $"10.244.{i / 250}.{(i % 250) + 2}", QosClass = "BestEffort", StartTime = started,
                    Conditions =
                    [
                        new V1PodCondition { Type = "Initialized", Status = "True", LastTransitionTime = started },
                        new V1PodCondition { Type = "Ready", Status = "True", LastTransitionTime = started },
                        new V1PodCondition { Type = "ContainersReady", Status = "True", LastTransitionTime = started },
                        new V1PodCondition { Type = "PodScheduled", Status = "True", LastTransitionTime = started },
                    ],
                    ContainerStatuses =
                    [
                        Status("app", $"registry.example/{ns}/{app}:1.{i % 9}", appId, started),
                        Status("proxy", "registry.example/mesh/proxy:1.30", Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(32)), started),
                    ],
                },
            });
        }
        return new V1PodList { ApiVersion = "v1", Kind = "PodList", Metadata = new V1ListMeta(), Items = pods };
    }

    private static V1Container Container(string name, string image, int port) => new()
    {
        Name = name, Image = image, ImagePullPolicy = "IfNotPresent",
        Ports = [new V1ContainerPort { Name = "http", ContainerPort = port, Protocol = "TCP" }],
        Env = [new V1EnvVar { Name = "LOG_LEVEL", Value = "info" }, new V1EnvVar { Name = "POD_NAME", ValueFrom = new V1EnvVarSource { FieldRef = new V1ObjectFieldSelector { FieldPath = "metadata.name" } } }],
        VolumeMounts = [new V1VolumeMount { Name = "config", MountPath = "/etc/app" }, new V1VolumeMount { Name = "kube-api-access", MountPath = "/var/run/secrets/kubernetes.io/serviceaccount", ReadOnlyProperty = true }],
        TerminationMessagePath = "/dev/termination-log", TerminationMessagePolicy = "File",
    };

    private static V1ContainerStatus Status(string name, string image, string id, DateTime started) => new()
    {
        Name = name, Image = image, ImageID = $"{image.Split(':')[0]}@sha256:{Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(image)))}",
        ContainerID = "containerd://" + id, Ready = true, Started = true, RestartCount = 0,
        State = new V1ContainerState { Running = new V1ContainerStateRunning { StartedAt = started } },
    };
}
