using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using k8s;
using k8s.Models;
using Microsoft.AspNetCore.Http;
using Writ.IntegrationTests.Harness;
using Writ.Tests.Shared;

namespace Writ.IntegrationTests;

/// <summary>
/// The k8s workload attestor in a real agent: a workload process in a real pod cgroup (cgroupfs layout, created here as
/// root), a kubelet-shaped HTTPS server (test CA, bearer token checked) serving a KubernetesClient pod list, entries with
/// k8s selectors on a real server. The matching entry is served and a mismatching one is not; a process outside the pod
/// gets neither; when the pod leaves the kubelet's list the instance drifts and its credentials are revoked (ledger).
/// </summary>
public sealed class K8sWorkloadAgentTests
{
    private const string Node = "node-a";
    private const string ImageHex = "4c0fdaa8b6341bfdeca5f18f7837462c80cff90527ee35ef185571e1c327beac";

    [Fact]
    public async Task A_workload_in_a_pod_gets_the_entry_of_its_namespace_service_account_and_image_and_loses_it_when_the_pod_goes()
    {
        using var dir = new TempDir();
        await using var kubelet = await LoopbackHttps.StartAsync(dir["kubelet"], name: "kubelet");
        const string token = "agent-service-account-token";
        await File.WriteAllTextAsync(dir["token"], token + "\n");
        string uid = Guid.NewGuid().ToString();
        string cid = Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(32));
        V1PodList list = new() { ApiVersion = "v1", Kind = "PodList", Metadata = new V1ListMeta(), Items = [Pod(uid, cid)] };
        kubelet.Handler = async ctx =>
        {
            if (ctx.Request.Headers.Authorization.ToString() != "Bearer " + token)
            {
                ctx.Response.StatusCode = 401;
                return;
            }

            ctx.Response.ContentType = "application/json";
            await ctx.Response.WriteAsync(KubernetesJson.Serialize(Volatile.Read(ref list)));
        };
        using var cgroup = PodCgroup.Create(uid, cid);

        await using var rig = await AgentRig.StartAsync(agentArgs:
        [
            "--workload-attestors", "unix,cgroup,k8s", "--k8s-kubelet-port", kubelet.Port.ToString(CultureInfo.InvariantCulture),
            "--k8s-kubelet-ca", kubelet.CaPemPath, "--k8s-token-path", dir["token"], "--k8s-node-name", Node,
            "--k8s-pod-cache-ttl", "1s", "--reattest-interval", "1s",
        ]);
        await rig.CreateEntryAsync("spiffe://example.org/k8s/web", ["k8s:ns:prod", "k8s:sa:web", $"k8s:container-image-id:sha256:{ImageHex}"]);
        await rig.CreateEntryAsync("spiffe://example.org/k8s/admin", ["k8s:ns:prod", "k8s:sa:admin"]);

        // A one-shot client in the pod: moved into the pod's cgroup by its shell, which then execs node (same pid).
        var served = await WorkloadTools.EventuallyAsync(async () =>
        {
            var r = await Proc.RunAsync("sh", ["-c", $"echo $$ > {cgroup.Procs} && exec node {Path.Combine(WorkloadTools.InteropDir, "workload-client.mjs")} x509 {rig.Agent.SocketPath}"]);
            Assert.True(r.ExitCode == 0, r.ToString());   // retried until the entries reached the agent
            return r;
        }, TimeSpan.FromSeconds(30), "an SVID for the workload in the pod");
        using (var doc = WorkloadTools.Json(served))
        {
            Assert.Equal(["spiffe://example.org/k8s/web"], doc.RootElement.GetProperty("svids").EnumerateArray().Select(e => e.GetString()));
        }

        // The same program outside the pod: no k8s selectors, no identity.
        Assert.Equal("PERMISSION_DENIED", WorkloadTools.StatusName(await WorkloadTools.NodeClientAsync(null, "x509", rig.Agent.SocketPath)));

        // A workload in the pod holding its stream; then the pod is deleted (the kubelet no longer lists it).
        using var watcher = InPodWatcher.Start(cgroup.Procs, rig.Agent.SocketPath);
        string first = await watcher.NextLineAsync();
        Assert.Contains("spiffe://example.org/k8s/web", first, StringComparison.Ordinal);
        Volatile.Write(ref list, new V1PodList { ApiVersion = "v1", Kind = "PodList", Metadata = new V1ListMeta(), Items = [] });

        string end = await watcher.NextLineAsync();
        Assert.Contains("UNAUTHENTICATED", end, StringComparison.Ordinal);
        await rig.Agent.Stderr.WaitForAsync(l => l.Contains($"(pid {watcher.Pid}) evidence drifted (pod gone)", StringComparison.Ordinal), TimeSpan.FromSeconds(30));
        await WorkloadTools.EventuallyAsync(async () =>
        {
            var audit = await rig.Server.WritAsync("audit", "list", "--kind", "svid.revoked", "--output", "json");
            Assert.True(audit.ExitCode == 0, audit.ToString());
            if (!audit.Stdout.Contains("pod gone", StringComparison.Ordinal))
            {
                throw new InvalidOperationException("no svid.revoked record for the gone pod yet");
            }

            return audit;
        }, TimeSpan.FromSeconds(30), "the revocation in the ledger");
    }

    internal static V1Pod Pod(string uid, string containerId, string ns = "prod", string name = "web-7d9f8-x2lq") => new()
    {
        ApiVersion = "v1",
        Kind = "Pod",
        Metadata = new V1ObjectMeta
        {
            Name = name, NamespaceProperty = ns, Uid = uid, Labels = new Dictionary<string, string> { ["app"] = "web" },
            OwnerReferences = [new V1OwnerReference { ApiVersion = "apps/v1", Kind = "ReplicaSet", Name = "web-7d9f8", Uid = Guid.NewGuid().ToString() }],
        },
        Spec = new V1PodSpec { NodeName = Node, ServiceAccountName = "web", Containers = [new V1Container { Name = "app", Image = "registry.example/team/web:1.2" }] },
        Status = new V1PodStatus
        {
            Phase = "Running",
            ContainerStatuses =
            [
                new V1ContainerStatus
                {
                    Name = "app", ContainerID = "containerd://" + containerId, Image = "registry.example/team/web:1.2",
                    ImageID = "registry.example/team/web@sha256:" + ImageHex, Ready = true,
                },
            ],
        },
    };

    /// <summary>A pod's container cgroup (cgroupfs driver) in the cgroup v1 pids hierarchy, or the unified one on cgroup v2.</summary>
    internal sealed class PodCgroup : IDisposable
    {
        private readonly string _root;
        private readonly List<string> _made = [];

        private PodCgroup(string root)
        {
            _root = root;
        }

        public string Procs { get; private set; } = "";

        public static PodCgroup Create(string uid, string containerId)
        {
            string root = Directory.Exists("/sys/fs/cgroup/pids") ? "/sys/fs/cgroup/pids"
                : File.Exists("/sys/fs/cgroup/cgroup.controllers") ? "/sys/fs/cgroup"
                : throw new InvalidOperationException("this test needs a writable cgroup hierarchy (cgroup v1 pids or v2) and root");
            var cgroup = new PodCgroup(root);
            string path = root;
            // besteffort: the agent unit tests use burstable, so neither removes a directory the other is using.
            foreach (string part in new[] { "kubepods", "besteffort", "pod" + uid, containerId })
            {
                path = Path.Combine(path, part);
                if (!Directory.Exists(path))
                {
                    Directory.CreateDirectory(path);
                    // Only the pod's own directories are removed again: kubepods and the QoS class are shared with other tests and
                    // benches creating pods at the same time (removing one while another creates under it would race).
                    if (part.StartsWith("pod", StringComparison.Ordinal) || part == containerId)
                    {
                        cgroup._made.Add(path);
                    }
                }
            }

            cgroup.Procs = Path.Combine(path, "cgroup.procs");
            return cgroup;
        }

        public void Dispose()
        {
            // Whatever still runs in it (the watcher is killed first) goes back to the root, then the directories go.
            foreach (string line in File.Exists(Procs) ? File.ReadAllLines(Procs) : [])
            {
                try
                {
                    File.WriteAllText(Path.Combine(_root, "cgroup.procs"), line);
                }
                catch (IOException)
                {
                    // exited meanwhile
                }
            }

            for (int i = _made.Count - 1; i >= 0; i--)
            {
                try
                {
                    Directory.Delete(_made[i]);
                }
                catch (IOException)
                {
                    // kubepods or burstable still used by another test's pod
                }
            }
        }
    }

    /// <summary>tests/interop/instance-watch.mjs started inside the pod's cgroup: one JSON line per stream event.</summary>
    internal sealed class InPodWatcher : IDisposable
    {
        private readonly Process _process;
        private readonly System.Threading.Channels.Channel<string> _lines = System.Threading.Channels.Channel.CreateUnbounded<string>();

        private InPodWatcher(Process process)
        {
            _process = process;
        }

        public int Pid => _process.Id;

        public static InPodWatcher Start(string procs, string socket)
        {
            var psi = new ProcessStartInfo("sh") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            psi.ArgumentList.Add("-c");
            psi.ArgumentList.Add($"echo $$ > {procs} && exec node {Path.Combine(WorkloadTools.InteropDir, "instance-watch.mjs")} {socket}");
            var p = Process.Start(psi) ?? throw new InvalidOperationException("could not start the watcher");
            var w = new InPodWatcher(p);
            p.OutputDataReceived += (_, e) =>
            {
                if (e.Data is { } line && !line.StartsWith("{\"pid\"", StringComparison.Ordinal))
                {
                    w._lines.Writer.TryWrite(line);
                }
            };
            p.ErrorDataReceived += (_, _) => { };
            p.BeginOutputReadLine();
            p.BeginErrorReadLine();
            return w;
        }

        public async Task<string> NextLineAsync()
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            try
            {
                return await _lines.Reader.ReadAsync(cts.Token);
            }
            catch (OperationCanceledException)
            {
                throw new TimeoutException("the in-pod watcher printed nothing within 30 s");
            }
        }

        public void Dispose()
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
            }

            _process.WaitForExit();
            _process.Dispose();
        }
    }
}
