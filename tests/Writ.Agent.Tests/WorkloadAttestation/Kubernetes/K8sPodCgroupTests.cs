using System.Globalization;
using k8s.Models;
using Microsoft.AspNetCore.Http;
using Writ.Agent.Instances;
using Writ.Agent.PeerTracking;
using Writ.Agent.Tests.Instances;
using Writ.Agent.Tests.TestSupport;
using Writ.Agent.WorkloadAttestation;
using Writ.Agent.WorkloadAttestation.Kubernetes;

namespace Writ.Agent.Tests.WorkloadAttestation.Kubernetes;

/// <summary>
/// Real processes in real pod cgroups (created here as root, the cgroupfs driver's <c>kubepods/burstable/pod&lt;uid&gt;/&lt;id&gt;</c>
/// layout), attested by the real runner over the host's /proc with the unix, cgroup and k8s attestors against a
/// kubelet-shaped HTTPS server; then the kubelet's answer changes and the instance tracker's re-check must see the drift.
/// </summary>
public sealed class K8sPodCgroupTests : IAsyncLifetime
{
    private readonly TempDir _dir = new();
    private readonly ListLogger _log = new();
    private FakeKubelet _kubelet = null!;

    public async ValueTask InitializeAsync() => _kubelet = await FakeKubelet.StartHttpsAsync(_dir.Path);

    public async ValueTask DisposeAsync()
    {
        await _kubelet.DisposeAsync();
        _dir.Dispose();
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private (WorkloadAttestationRunner Runner, K8sWorkloadAttestor K8s) Runner(TimeProvider? time = null)
    {
        // TTL 0: every re-check asks the kubelet (at most one request per 250 ms).
        var k8s = new K8sWorkloadAttestor(_kubelet.Options(ttl: TimeSpan.Zero), ProcFs.Host, null, _log, time ?? TimeProvider.System);
        var runner = new WorkloadAttestationRunner([new UnixWorkloadAttestor(ProcFs.Host), new CgroupWorkloadAttestor(ProcFs.Host), k8s], ProcFs.Host,
            TimeSpan.FromSeconds(20), _log);
        return (runner, k8s);
    }

    private static async Task<ProcessEvidence> AttestAsync(WorkloadAttestationRunner runner, int pid)
    {
        var (uid, gid) = InstanceRig.Ids(pid);
        WorkloadAttestationResult result = await runner.AttestAsync(new PeerCredentials(pid, uid, gid), Ct);
        Assert.True(result.Evidence is not null, result.Error);
        return result.Evidence;
    }

    private static string[] K8s(ProcessEvidence e) => [.. e.Selectors.Select(s => s.ToString()).Where(s => s.StartsWith("k8s:", StringComparison.Ordinal))];

    [Fact]
    public async Task A_process_in_a_pod_cgroup_is_attested_from_the_kernel_and_the_kubelet()
    {
        using var pod = PodCgroup.Start();
        _kubelet.SetPods(Pods.Make(pod.Uid, "web-1", "prod", "web", pod.ContainerId), Pods.Make(Pods.NewUid(), "db-1", "prod", "db", Pods.NewContainerId()));
        var (runner, k8s) = Runner();
        using var _ = k8s;

        ProcessEvidence e = await AttestAsync(runner, pod.Pid);

        Assert.Empty(e.AttestorErrors);
        Assert.Contains($"container:id:{pod.ContainerId}", e.Selectors.Select(s => s.ToString()));
        Assert.Contains("k8s:ns:prod", K8s(e));
        Assert.Contains("k8s:sa:web", K8s(e));
        Assert.Contains("k8s:pod-name:web-1", K8s(e));
        Assert.Contains($"k8s:pod-uid:{pod.Uid}", K8s(e));
        Assert.Contains("k8s:container-image-id:sha256:" + Pods.ImageHex, K8s(e));
        Assert.DoesNotContain("k8s:sa:db", K8s(e));
        Assert.Equal("prod", e.Facts["k8s.namespace"]);
    }

    [Fact]
    public async Task A_process_outside_any_pod_is_attested_without_k8s_selectors()
    {
        using var child = Child.Start("/bin/sleep", "60");
        _kubelet.SetPods(Pods.Make(Pods.NewUid(), "web-1", "prod", "web", Pods.NewContainerId()));
        var (runner, k8s) = Runner();
        using var _ = k8s;

        ProcessEvidence e = await AttestAsync(runner, child.Pid);

        Assert.Empty(e.AttestorErrors);
        Assert.Empty(K8s(e));
        Assert.Equal(0, _kubelet.Requests);
    }

    [Theory]
    [InlineData("image")]
    [InlineData("rescheduled")]
    [InlineData("deleted")]
    [InlineData("kubelet-down")]
    [InlineData("labels")]
    public async Task A_change_of_the_pod_is_a_drift_through_the_instance_tracker(string change)
    {
        using var pod = PodCgroup.Start();
        V1Pod listed = Pods.Make(pod.Uid, "web-1", "prod", "web", pod.ContainerId);
        _kubelet.SetPods(listed);
        // The pod list's clock: stepped past the 250 ms between requests before each re-check, and past the outage grace.
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.UtcNow);
        var (runner, k8s) = Runner(time);
        using var _ = k8s;
        using var server = new FakeAgentServer();
        var reporter = new InstanceReporter(() => server, _ => null, TimeProvider.System, _log);
        using var tracker = new InstanceTracker(runner, ProcFs.Host, reporter, TimeSpan.FromMinutes(5), TimeProvider.System, _log);

        WorkloadInstance instance = tracker.Observe(await AttestAsync(runner, pod.Pid));
        long epoch = instance.Epoch;
        Assert.Contains("k8s:ns:prod", K8s((ProcessEvidence)instance.Current.Evidence!));
        Assert.True(instance.TryRecordSerial(epoch, "AA01", DateTimeOffset.UtcNow.AddMinutes(5)));
        time.Advance(TimeSpan.FromSeconds(1));
        await tracker.RecheckAsync(instance, Ct);
        Assert.Equal(epoch, instance.Epoch);   // the same answer again: no drift (the check can pass)

        string? expected;
        switch (change)
        {
            case "image":   // the same container now reports another image digest
                _kubelet.SetPods(Pods.Make(pod.Uid, "web-1", "prod", "web", pod.ContainerId, imageId: "registry.example/team/web@sha256:" + Pods.OtherImageHex));
                expected = "image changed";
                break;
            case "rescheduled":   // the pod was replaced: same name, new uid (the old process's pod is gone)
                _kubelet.SetPods(Pods.Make(Pods.NewUid(), "web-1", "prod", "web", Pods.NewContainerId()));
                expected = "pod gone";
                break;
            case "deleted":
                _kubelet.SetPods();
                expected = "pod gone";
                break;
            case "kubelet-down":
                _kubelet.Override = ctx =>
                {
                    ctx.Response.StatusCode = 503;
                    return Task.CompletedTask;
                };
                expected = "pod evidence unavailable (kubelet)";
                // A kubelet restart: the last list (fetched a second ago) bridges it, for at most 30 s after its fetch.
                time.Advance(TimeSpan.FromSeconds(1));
                await tracker.RecheckAsync(instance, Ct);
                Assert.Equal(epoch, instance.Epoch);
                Assert.Contains("k8s:ns:prod", K8s((ProcessEvidence)instance.Current.Evidence!));
                time.Advance(KubeletPodCache.OutageGrace);
                break;
            default:   // labels are mutable metadata: looked at again at the next issuance, not a drift
                listed.Metadata.Labels["version"] = "2";
                _kubelet.SetPods(listed);
                expected = null;
                break;
        }

        time.Advance(TimeSpan.FromSeconds(1));
        await Drive(time, tracker.RecheckAsync(instance, Ct));   // a miss asks again, 250 ms (of this clock) later

        if (expected is null)
        {
            Assert.Equal(epoch, instance.Epoch);
            Assert.Contains("k8s:pod-label:version:2", K8s((ProcessEvidence)instance.Current.Evidence!));
            Assert.Empty(reporter.Snapshot());
            return;
        }

        Assert.True(instance.Epoch > epoch, "the drift must start a new epoch");
        Assert.False(instance.IsGone);   // the process lives; it may get what its new evidence allows
        var report = Assert.Single(reporter.Snapshot());
        Assert.Equal(expected, report.Reason);
        Assert.Equal(["AA01"], report.Serials);
        if (change != "image")
        {
            Assert.DoesNotContain(K8s((ProcessEvidence)instance.Current.Evidence!), s => s.StartsWith("k8s:ns:", StringComparison.Ordinal));
        }
    }

    /// <summary>Steps the fake clock until <paramref name="task"/> completes.</summary>
    private static async Task Drive(Microsoft.Extensions.Time.Testing.FakeTimeProvider time, Task task)
    {
        var sw = System.Diagnostics.Stopwatch.StartNew();
        while (!task.IsCompleted)
        {
            Assert.True(sw.Elapsed < TimeSpan.FromSeconds(30), "the re-check did not finish");
            time.Advance(TimeSpan.FromMilliseconds(100));
            await Task.Delay(5, Ct);
        }

        await task;
    }

    /// <summary>
    /// A <c>sleep</c> moved into a fresh pod cgroup (cgroupfs driver: <c>kubepods/burstable/pod&lt;uid&gt;/&lt;64 hex&gt;</c>) of
    /// the cgroup v1 pids hierarchy, or of the unified hierarchy on a cgroup v2 host. Dispose moves it out, kills it and
    /// removes the cgroups it made.
    /// </summary>
    private sealed class PodCgroup : IDisposable
    {
        private readonly Child _child;
        private readonly string _root;
        private readonly List<string> _made = [];

        private PodCgroup(string root, string uid, string containerId, Child child)
        {
            _root = root;
            Uid = uid;
            ContainerId = containerId;
            _child = child;
        }

        public string Uid { get; }

        public string ContainerId { get; }

        public int Pid => _child.Pid;

        public static PodCgroup Start()
        {
            string root = Directory.Exists("/sys/fs/cgroup/pids") ? "/sys/fs/cgroup/pids"
                : File.Exists("/sys/fs/cgroup/cgroup.controllers") ? "/sys/fs/cgroup"
                : throw new InvalidOperationException("these tests need a writable cgroup hierarchy (cgroup v1 pids or v2) and root");
            var cgroup = new PodCgroup(root, Pods.NewUid(), Pods.NewContainerId(), Child.Start("/bin/sleep", "120"));
            try
            {
                string dir = root;
                foreach (string part in new[] { "kubepods", "burstable", "pod" + cgroup.Uid, cgroup.ContainerId })
                {
                    dir = Path.Combine(dir, part);
                    if (!Directory.Exists(dir))
                    {
                        Directory.CreateDirectory(dir);
                        // Only the pod's own directories are removed again: kubepods and the QoS class are shared with other tests and
                        // benches creating pods at the same time (removing one while another creates under it would race).
                        if (part.StartsWith("pod", StringComparison.Ordinal) || part == cgroup.ContainerId)
                        {
                            cgroup._made.Add(dir);
                        }
                    }
                }

                File.WriteAllText(Path.Combine(dir, "cgroup.procs"), cgroup.Pid.ToString(CultureInfo.InvariantCulture));
                string expected = $"/kubepods/burstable/pod{cgroup.Uid}/{cgroup.ContainerId}";
                Wait.Until(() => File.ReadAllText($"/proc/{cgroup.Pid}/cgroup").Contains(expected, StringComparison.Ordinal), "the move into the pod cgroup");
                return cgroup;
            }
            catch
            {
                cgroup.Dispose();
                throw;
            }
        }

        public void Dispose()
        {
            try
            {
                File.WriteAllText(Path.Combine(_root, "cgroup.procs"), Pid.ToString(CultureInfo.InvariantCulture));
            }
            catch (IOException)
            {
                // it exited already
            }

            _child.Dispose();
            for (int i = _made.Count - 1; i >= 0; i--)
            {
                try
                {
                    Directory.Delete(_made[i]);   // rmdir: a cgroup directory is removed empty of processes, its files are virtual
                }
                catch (IOException)
                {
                    // still in use by another test's pod (kubepods, burstable): left for it
                }
            }
        }
    }
}
