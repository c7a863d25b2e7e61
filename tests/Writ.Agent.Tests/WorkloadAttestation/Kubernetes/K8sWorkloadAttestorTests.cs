using System.Text;
using k8s.Models;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;
using Writ.Agent.PeerTracking;
using Writ.Agent.Tests.Instances;
using Writ.Agent.Tests.TestSupport;
using Writ.Agent.WorkloadAttestation;
using Writ.Agent.WorkloadAttestation.ImageSignatures;
using Writ.Agent.WorkloadAttestation.Kubernetes;
using Writ.Protocol.Evidence;
using Writ.Tests.Shared;

namespace Writ.Agent.Tests.WorkloadAttestation.Kubernetes;

/// <summary>
/// The k8s attestor against a kubelet-shaped HTTPS (and read-only HTTP) server: the selectors of the pod and container the
/// process's cgroup names, the token and certificate checks, the cache and its refresh on a miss, and the attacks (another
/// node's pod, a pod claiming another's labels or container, a kubelet that is down, refuses or answers garbage).
/// </summary>
public sealed class K8sWorkloadAttestorTests : IAsyncLifetime
{
    private const int Pid = 4242;
    private readonly TempDir _dir = new();
    private readonly FakeProc _proc = new();
    private readonly ListLogger _log = new();
    private FakeKubelet _kubelet = null!;

    public async ValueTask InitializeAsync() => _kubelet = await FakeKubelet.StartHttpsAsync(_dir.Path);

    public async ValueTask DisposeAsync()
    {
        await _kubelet.DisposeAsync();
        _proc.Dispose();
        _dir.Dispose();
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>containerd, systemd driver, cgroup v2: the path a kubelet's pod container gets.</summary>
    internal static string CgroupOf(string podUid, string containerId) =>
        $"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{podUid.Replace('-', '_')}.slice/cri-containerd-{containerId}.scope\n";

    private async Task<AttestorResult> AttestAsync(K8sWorkloadAttestor attestor, string cgroup, int pid = Pid)
    {
        _proc.Write(pid, "stat", FakeProc.StatLine(pid, "app", 'S', 5));
        _proc.Write(pid, "cgroup", cgroup);
        Assert.True(ProcessPin.TryCreate(_proc, pid, out ProcessPin? pin, out string? error), error);
        return await attestor.AttestAsync(new WorkloadProcess(new PeerCredentials(pid, 1000, 1000), pin!), Ct);
    }

    private K8sWorkloadAttestor Attestor(K8sWorkloadOptions? options = null, IImageSignatureVerifier? verifier = null, TimeProvider? time = null) =>
        new(options ?? _kubelet.Options(), _proc, verifier, _log, time ?? TimeProvider.System);

    private static string[] Selectors(AttestorResult r) => [.. r.Selectors.Select(s => s.ToString()).Order(StringComparer.Ordinal)];

    [Fact]
    public async Task A_process_in_a_pod_container_gets_the_pod_and_container_selectors_from_the_kubelet_over_https_with_the_token()
    {
        string uid = Pods.NewUid(), cid = Pods.NewContainerId();
        _kubelet.SetPods(Pods.Make(Pods.NewUid(), "other", "prod", "other", Pods.NewContainerId()), Pods.Make(uid, "web-7d9f-x2", "prod", "web", cid));
        using var attestor = Attestor();

        AttestorResult r = await AttestAsync(attestor, CgroupOf(uid, cid));

        Assert.Null(r.Error);
        Assert.Equal(
            new[]
            {
                "k8s:container-image-id:sha256:" + Pods.ImageHex,
                "k8s:container-image:registry.example/team/web:1.2",
                "k8s:container-name:app",
                "k8s:node-name:node-a",
                "k8s:ns:prod",
                "k8s:pod-label:app:web",
                "k8s:pod-label:tier:front",
                "k8s:pod-name:web-7d9f-x2",
                "k8s:pod-owner:ReplicaSet:web-7d9f-x2-rs",
                "k8s:pod-uid:" + uid,
                "k8s:sa:web",
            }.Order(StringComparer.Ordinal),
            Selectors(r));
        Assert.Equal(cid, r.Facts["container_id"]);
        Assert.Equal("container", r.Facts["container_kind"]);
        // The server accepts in registration entries only the types listed in SelectorTypes: every one emitted is there.
        Assert.All(r.Selectors, x => Assert.True(SelectorTypes.IsBuiltIn(x.Type, x.Value), $"{x} is not in SelectorTypes.BuiltIn"));
        Assert.Equal(["Bearer " + _kubelet.Token], _kubelet.Authorizations);
    }

    [Fact]
    public async Task A_process_outside_any_pod_gets_no_k8s_selectors_and_the_kubelet_is_not_asked()
    {
        using var attestor = Attestor();
        AttestorResult host = await AttestAsync(attestor, "0::/system.slice/sshd.service\n");
        AttestorResult docker = await AttestAsync(attestor, $"0::/system.slice/docker-{Pods.NewContainerId()}.scope\n", Pid + 1);

        Assert.Null(host.Error);
        Assert.Empty(host.Selectors);
        Assert.StartsWith("none:", host.Facts["pod"], StringComparison.Ordinal);
        Assert.Null(docker.Error);
        Assert.Empty(docker.Selectors);
        Assert.Equal(0, _kubelet.Requests);
    }

    [Fact]
    public async Task Init_and_ephemeral_containers_are_matched_by_their_container_id()
    {
        string uid = Pods.NewUid(), app = Pods.NewContainerId(), init = Pods.NewContainerId(), debug = Pods.NewContainerId();
        V1Pod pod = Pods.Make(uid, "web", "prod", "web", app);
        pod.Status.InitContainerStatuses = [new V1ContainerStatus { Name = "migrate", ContainerID = "cri-o://" + init, Image = "registry.example/team/migrate:3", ImageID = "sha256:" + Pods.OtherImageHex }];
        pod.Status.EphemeralContainerStatuses = [new V1ContainerStatus { Name = "debugger", ContainerID = "docker://" + debug, Image = "busybox", ImageID = "docker-pullable://busybox@sha256:" + Pods.OtherImageHex }];
        _kubelet.SetPods(pod);
        using var attestor = Attestor();

        AttestorResult i = await AttestAsync(attestor, CgroupOf(uid, init));
        AttestorResult e = await AttestAsync(attestor, CgroupOf(uid, debug), Pid + 1);

        Assert.Contains("k8s:container-name:migrate", Selectors(i));
        Assert.Contains("k8s:container-image-id:sha256:" + Pods.OtherImageHex, Selectors(i));
        Assert.Equal("init", i.Facts["container_kind"]);
        Assert.Contains("k8s:container-name:debugger", Selectors(e));
        Assert.Equal("ephemeral", e.Facts["container_kind"]);
        Assert.DoesNotContain(Selectors(e), s => s.StartsWith("k8s:container-name:app", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("docker.io/library/nginx@sha256:" + Pods.ImageHex, true)]
    [InlineData("sha256:" + Pods.ImageHex, true)]
    [InlineData("docker-pullable://nginx@sha256:" + Pods.ImageHex, true)]
    [InlineData("nginx:1.25", false)]
    [InlineData("", false)]
    [InlineData("sha256:" + "4C0FDAA8B6341BFDECA5F18F7837462C80CFF90527EE35EF185571E1C327BEAC", false)]   // not lowercase hex
    [InlineData("sha256:" + Pods.ImageHex + "00", false)]                                                 // 66 digits
    [InlineData("docker.io/library/nginx@sha256:" + Pods.ImageHex + ":tag", false)]                       // something after it
    [InlineData("evil.example/x-sha256:" + Pods.ImageHex, false)]                                         // not after '@'
    [InlineData("sha512:" + Pods.ImageHex + Pods.ImageHex, false)]
    public void The_image_digest_is_taken_only_from_a_sha256_reference_ending_the_image_id(string imageId, bool isDigest)
    {
        Assert.Equal(isDigest ? "sha256:" + Pods.ImageHex : null, K8sWorkloadAttestor.ImageDigest(imageId));
    }

    [Fact]
    public async Task A_container_whose_image_id_is_not_a_digest_gets_no_image_id_selector()
    {
        string uid = Pods.NewUid(), cid = Pods.NewContainerId();
        _kubelet.SetPods(Pods.Make(uid, "web", "prod", "web", cid, imageId: "registry.example/team/web:latest"));
        var verifier = new RecordingVerifier(["release"]);
        using var attestor = Attestor(verifier: verifier);

        AttestorResult r = await AttestAsync(attestor, CgroupOf(uid, cid));

        Assert.Null(r.Error);
        Assert.DoesNotContain(Selectors(r), s => s.StartsWith("k8s:container-image-id:", StringComparison.Ordinal));
        Assert.DoesNotContain(Selectors(r), s => s.StartsWith("k8s:image-signed-by:", StringComparison.Ordinal));
        Assert.Contains("k8s:container-image:registry.example/team/web:1.2", Selectors(r));
        Assert.Empty(verifier.Calls);   // no digest, nothing a signature could be over
    }

    [Fact]
    public async Task Every_signer_the_verifier_names_becomes_an_image_signed_by_selector_and_a_failed_lookup_is_a_fact()
    {
        string uid = Pods.NewUid(), cid = Pods.NewContainerId();
        _kubelet.SetPods(Pods.Make(uid, "web", "prod", "web", cid));
        var verifier = new RecordingVerifier(["release", "security-team"]);
        using var attestor = Attestor(verifier: verifier);

        AttestorResult r = await AttestAsync(attestor, CgroupOf(uid, cid));

        Assert.Contains("k8s:image-signed-by:release", Selectors(r));
        Assert.Contains("k8s:image-signed-by:security-team", Selectors(r));
        Assert.All(r.Selectors, x => Assert.True(SelectorTypes.IsBuiltIn(x.Type, x.Value), $"{x} is not in SelectorTypes.BuiltIn"));
        Assert.Equal([("registry.example/team/web:1.2", "sha256:" + Pods.ImageHex)], verifier.Calls);

        verifier.Result = new ImageSignatureResult([], "the registry answered 503");
        AttestorResult failed = await AttestAsync(attestor, CgroupOf(uid, cid));
        Assert.Null(failed.Error);   // the pod evidence stands; only the signature selectors are missing
        Assert.DoesNotContain(Selectors(failed), s => s.StartsWith("k8s:image-signed-by:", StringComparison.Ordinal));
        Assert.Equal("the registry answered 503", failed.Facts["image_signature_error"]);
    }

    [Fact]
    public async Task A_value_that_cannot_be_a_selector_is_left_out_and_said_so_not_escaped()
    {
        string uid = Pods.NewUid(), cid = Pods.NewContainerId();
        _kubelet.SetPods(Pods.Make(uid, "web", "prod", "web", cid, labels: new Dictionary<string, string> { ["app"] = "web", ["note"] = "two words\nk8s:ns:kube-system" }));
        using var attestor = Attestor();

        AttestorResult r = await AttestAsync(attestor, CgroupOf(uid, cid));

        Assert.Null(r.Error);
        Assert.Contains("k8s:pod-label:app:web", Selectors(r));
        Assert.DoesNotContain(Selectors(r), s => s.Contains("note", StringComparison.Ordinal) || s.Contains("kube-system", StringComparison.Ordinal));
        Assert.Contains("pod-label", r.Facts["omitted"], StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_kubelet_that_refuses_the_token_is_a_clear_error_and_a_rotated_token_is_read_again()
    {
        string uid = Pods.NewUid(), cid = Pods.NewContainerId();
        _kubelet.SetPods(Pods.Make(uid, "web", "prod", "web", cid));
        using var attestor = Attestor(_kubelet.Options(ttl: TimeSpan.Zero));
        _kubelet.Token = "rotated-token";   // the kubelet now accepts only the new token; the file still has the old one

        AttestorResult refused = await AttestAsync(attestor, CgroupOf(uid, cid));
        Assert.StartsWith(K8sWorkloadCodes.KubeletRefused + ":", refused.Error, StringComparison.Ordinal);
        Assert.Contains("HTTP 401", refused.Error, StringComparison.Ordinal);
        Assert.Contains("nodes/proxy", refused.Error, StringComparison.Ordinal);
        Assert.DoesNotContain("agent-token", refused.Error, StringComparison.Ordinal);   // never the token
        Assert.Empty(refused.Selectors);
        Assert.DoesNotContain(_log.Entries, e => e.Message.Contains("agent-token", StringComparison.Ordinal));

        await File.WriteAllTextAsync(_kubelet.TokenPath, "rotated-token\n", Ct);   // the projected token rotated
        AttestorResult ok = await AttestAsync(attestor, CgroupOf(uid, cid));
        Assert.Null(ok.Error);
        Assert.Contains("k8s:sa:web", Selectors(ok));
        Assert.Equal("Bearer rotated-token", _kubelet.Authorizations.Last());
    }

    [Fact]
    public async Task A_missing_token_file_is_a_clear_error_and_nothing_is_sent()
    {
        File.Delete(_kubelet.TokenPath);
        using var attestor = Attestor();
        AttestorResult r = await AttestAsync(attestor, CgroupOf(Pods.NewUid(), Pods.NewContainerId()));
        Assert.StartsWith(K8sWorkloadCodes.TokenUnreadable + ":", r.Error, StringComparison.Ordinal);
        Assert.Equal(0, _kubelet.Requests);
    }

    [Fact]
    public async Task A_kubelet_whose_certificate_is_not_from_the_configured_ca_is_not_believed_unless_verification_is_skipped()
    {
        string uid = Pods.NewUid(), cid = Pods.NewContainerId();
        _kubelet.SetPods(Pods.Make(uid, "web", "prod", "web", cid));
        // An impostor's CA: a certificate from it is as good as any other to the attacker, but not to the agent.
        var (otherCa, _) = LoopbackHttps.IssueCertificates("impostor");
        string otherCaPem = _dir.Combine("impostor-ca.pem");
        await File.WriteAllTextAsync(otherCaPem, otherCa.ExportCertificatePem(), Ct);
        using var strict = Attestor(_kubelet.Options() with { KubeletCaPath = otherCaPem });

        AttestorResult r = await AttestAsync(strict, CgroupOf(uid, cid));

        Assert.StartsWith(K8sWorkloadCodes.KubeletUntrusted + ":", r.Error, StringComparison.Ordinal);
        Assert.Empty(r.Selectors);
        Assert.Empty(_kubelet.Authorizations);   // the token never went to the unverified server

        using var lax = Attestor(_kubelet.Options() with { KubeletCaPath = otherCaPem, SkipKubeletVerification = true });
        AttestorResult skipped = await AttestAsync(lax, CgroupOf(uid, cid));
        Assert.Null(skipped.Error);
        Assert.Contains(_log.Entries, e => e.Level == LogLevel.Warning && e.Message.Contains("k8s.skip_kubelet_verification", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_kubelet_ca_file_without_a_certificate_fails_every_attestation_clearly_and_sends_nothing()
    {
        string empty = _dir.Combine("empty-ca.pem");
        await File.WriteAllTextAsync(empty, "not a certificate\n", Ct);
        using var attestor = Attestor(_kubelet.Options() with { KubeletCaPath = empty });

        AttestorResult r = await AttestAsync(attestor, CgroupOf(Pods.NewUid(), Pods.NewContainerId()));

        Assert.StartsWith(K8sWorkloadCodes.KubeletUntrusted + ":", r.Error, StringComparison.Ordinal);
        Assert.Contains("holds no PEM certificate", r.Error, StringComparison.Ordinal);
        Assert.Equal(0, _kubelet.Requests);
        Assert.Contains(_log.Entries, e => e.Level == LogLevel.Error && e.Message.Contains("holds no PEM certificate", StringComparison.Ordinal));
    }

    [Fact]
    public async Task The_read_only_port_is_plain_http_without_a_token()
    {
        await using var readOnly = await FakeKubelet.StartHttpAsync(_dir.Combine("ro"));
        string uid = Pods.NewUid(), cid = Pods.NewContainerId();
        readOnly.SetPods(Pods.Make(uid, "web", "prod", "web", cid));
        using var attestor = Attestor(readOnly.Options());

        AttestorResult r = await AttestAsync(attestor, CgroupOf(uid, cid));

        Assert.Null(r.Error);
        Assert.Contains("k8s:ns:prod", Selectors(r));
        Assert.Equal([null], readOnly.Authorizations);   // the token is not sent in the clear
        Assert.Contains(_log.Entries, e => e.Level == LogLevel.Warning && e.Message.Contains("read-only port", StringComparison.Ordinal));
    }

    [Fact]
    public async Task The_pod_list_is_reused_for_its_ttl_and_fetched_again_after()
    {
        string uid = Pods.NewUid(), cid = Pods.NewContainerId();
        _kubelet.SetPods(Pods.Make(uid, "web", "prod", "web", cid));
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        using var attestor = Attestor(_kubelet.Options(ttl: TimeSpan.FromSeconds(5)), time: time);

        for (int i = 0; i < 5; i++)
        {
            Assert.Null((await AttestAsync(attestor, CgroupOf(uid, cid))).Error);
        }

        Assert.Equal(1, _kubelet.Requests);
        time.Advance(TimeSpan.FromSeconds(5));
        Assert.Null((await AttestAsync(attestor, CgroupOf(uid, cid))).Error);
        Assert.Equal(2, _kubelet.Requests);
    }

    [Fact]
    public async Task An_unknown_pod_refreshes_the_list_at_once_and_a_pod_still_unknown_is_an_error()
    {
        string uid = Pods.NewUid(), cid = Pods.NewContainerId();
        _kubelet.SetPods(Pods.Make(Pods.NewUid(), "old", "prod", "web", Pods.NewContainerId()));
        using var attestor = Attestor(_kubelet.Options(ttl: TimeSpan.FromMinutes(5)));

        AttestorResult missing = await AttestAsync(attestor, CgroupOf(uid, cid));
        Assert.StartsWith(K8sWorkloadCodes.PodNotFound + ":", missing.Error, StringComparison.Ordinal);
        Assert.Contains(uid, missing.Error, StringComparison.Ordinal);
        Assert.Equal(2, _kubelet.Requests);   // the list, then one refresh for the miss

        _kubelet.SetPods(Pods.Make(uid, "new", "prod", "web", cid));   // the pod was just scheduled here
        AttestorResult found = await AttestAsync(attestor, CgroupOf(uid, cid));
        Assert.Null(found.Error);
        Assert.Contains("k8s:pod-name:new", Selectors(found));
        Assert.Equal(3, _kubelet.Requests);   // the cached list missed; one refresh found it (well within the TTL)
    }

    [Fact]
    public async Task A_container_not_yet_in_the_pod_status_refreshes_once_then_fails()
    {
        string uid = Pods.NewUid(), cid = Pods.NewContainerId();
        _kubelet.SetPods(Pods.Make(uid, "web", "prod", "web", Pods.NewContainerId()));
        using var attestor = Attestor(_kubelet.Options(ttl: TimeSpan.FromMinutes(5)));

        AttestorResult r = await AttestAsync(attestor, CgroupOf(uid, cid));

        Assert.StartsWith(K8sWorkloadCodes.ContainerNotFound + ":", r.Error, StringComparison.Ordinal);
        Assert.Empty(r.Selectors);
        Assert.Equal(2, _kubelet.Requests);
    }

    [Fact]
    public async Task Concurrent_misses_share_one_kubelet_request()
    {
        string uid = Pods.NewUid(), cid = Pods.NewContainerId();
        string oldUid = Pods.NewUid(), oldCid = Pods.NewContainerId();
        _kubelet.SetPods(Pods.Make(oldUid, "old", "prod", "web", oldCid));
        using var attestor = Attestor(_kubelet.Options(ttl: TimeSpan.FromMinutes(5)));
        Assert.Null((await AttestAsync(attestor, CgroupOf(oldUid, oldCid))).Error);
        int before = _kubelet.Requests;   // the list

        _kubelet.SetPods(Pods.Make(uid, "new", "prod", "web", cid));
        _kubelet.Gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var pins = new List<WorkloadProcess>();
        for (int i = 0; i < 16; i++)
        {
            int pid = 5000 + i;
            _proc.Write(pid, "stat", FakeProc.StatLine(pid, "app", 'S', 5));
            _proc.Write(pid, "cgroup", CgroupOf(uid, cid));
            Assert.True(ProcessPin.TryCreate(_proc, pid, out ProcessPin? pin, out _));
            pins.Add(new WorkloadProcess(new PeerCredentials(pid, 1000, 1000), pin!));
        }

        Task<AttestorResult>[] calls = [.. pins.Select(p => Task.Run(() => attestor.AttestAsync(p, Ct), Ct))];
        await Deadline.UntilAsync(() => _kubelet.Requests == before + 1, "the refresh request");
        _kubelet.Gate.SetResult();
        AttestorResult[] results = await Task.WhenAll(calls);

        Assert.All(results, r => Assert.Null(r.Error));
        Assert.All(results, r => Assert.Contains("k8s:pod-name:new", Selectors(r)));
        Assert.Equal(before + 1, _kubelet.Requests);
    }

    [Fact]
    public async Task A_storm_of_misses_is_bounded_to_a_few_requests_a_second()
    {
        _kubelet.SetPods();
        using var attestor = Attestor(_kubelet.Options(ttl: TimeSpan.FromMinutes(5)));
        var sw = System.Diagnostics.Stopwatch.StartNew();
        int calls = 0;
        while (calls < 8)
        {
            AttestorResult r = await AttestAsync(attestor, CgroupOf(Pods.NewUid(), Pods.NewContainerId()), 6000 + calls);
            Assert.StartsWith(K8sWorkloadCodes.PodNotFound + ":", r.Error, StringComparison.Ordinal);
            calls++;
        }

        // 8 sequential misses, each wanting a refresh: the requests are at least 250 ms apart (the first one is free).
        Assert.Equal(9, _kubelet.Requests);   // the list, then one refresh per miss
        Assert.True(sw.Elapsed >= (_kubelet.Requests - 2) * KubeletPodCache.MinRefreshInterval,
            $"{_kubelet.Requests} requests in {sw.Elapsed.TotalMilliseconds} ms");
    }

    [Fact]
    public async Task A_kubelet_that_is_down_is_a_clear_error_not_a_crash()
    {
        int port = _kubelet.Port;
        await _kubelet.DisposeAsync();
        _kubelet = await FakeKubelet.StartHttpsAsync(_dir.Combine("again"));   // for DisposeAsync; a different port
        using var attestor = Attestor(new K8sWorkloadOptions
        {
            KubeletPort = port, KubeletCaPath = _kubelet.CaPemPath, TokenPath = _kubelet.TokenPath, NodeName = FakeKubelet.NodeName,
        });

        AttestorResult r = await AttestAsync(attestor, CgroupOf(Pods.NewUid(), Pods.NewContainerId()));

        Assert.StartsWith(K8sWorkloadCodes.KubeletUnreachable + ":", r.Error, StringComparison.Ordinal);
        Assert.Contains("127.0.0.1:" + port, r.Error, StringComparison.Ordinal);
        Assert.Empty(r.Selectors);
        Assert.Contains(_log.Entries, e => e.Message.Contains(K8sWorkloadCodes.KubeletUnreachable, StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_kubelet_outage_is_bridged_by_the_last_list_for_a_while_but_never_a_refusal_or_an_unknown_pod()
    {
        string uid = Pods.NewUid(), cid = Pods.NewContainerId();
        _kubelet.SetPods(Pods.Make(uid, "web", "prod", "web", cid));
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        using var attestor = Attestor(_kubelet.Options(ttl: TimeSpan.FromSeconds(5)), time: time);
        Assert.Null((await AttestAsync(attestor, CgroupOf(uid, cid))).Error);

        _kubelet.Override = ctx =>
        {
            ctx.Response.StatusCode = 503;   // the kubelet restarts
            return Task.CompletedTask;
        };
        time.Advance(TimeSpan.FromSeconds(6));
        AttestorResult bridged = await AttestAsync(attestor, CgroupOf(uid, cid));
        Assert.Null(bridged.Error);
        Assert.Contains("k8s:sa:web", Selectors(bridged));
        Assert.Contains(_log.Entries, e => e.Message.Contains("using the pod list fetched", StringComparison.Ordinal));

        // A pod the last list does not know is not vouched for by it.
        Task<AttestorResult> unknown = AttestAsync(attestor, CgroupOf(Pods.NewUid(), Pods.NewContainerId()), Pid + 1);
        AttestorResult notBridged = await Drive(time, unknown);
        Assert.StartsWith(K8sWorkloadCodes.KubeletUnreachable + ":", notBridged.Error, StringComparison.Ordinal);

        // A refusal is an answer, not an outage.
        _kubelet.Override = ctx =>
        {
            ctx.Response.StatusCode = 401;
            return Task.CompletedTask;
        };
        AttestorResult refused = await Drive(time, AttestAsync(attestor, CgroupOf(uid, cid)));
        Assert.StartsWith(K8sWorkloadCodes.KubeletRefused + ":", refused.Error, StringComparison.Ordinal);

        // Past the grace, the outage is the workload's problem too.
        _kubelet.Override = ctx =>
        {
            ctx.Response.StatusCode = 503;
            return Task.CompletedTask;
        };
        time.Advance(KubeletPodCache.OutageGrace);
        AttestorResult expired = await Drive(time, AttestAsync(attestor, CgroupOf(uid, cid)));
        Assert.StartsWith(K8sWorkloadCodes.KubeletUnreachable + ":", expired.Error, StringComparison.Ordinal);
        Assert.Empty(expired.Selectors);
    }

    /// <summary>Steps the fake clock (past the 250 ms between pod-list requests) until <paramref name="task"/> completes.</summary>
    private static async Task<T> Drive<T>(FakeTimeProvider time, Task<T> task)
    {
        var sw = System.Diagnostics.Stopwatch.StartNew();
        while (!task.IsCompleted)
        {
            Assert.True(sw.Elapsed < TimeSpan.FromSeconds(30), "the attestation did not finish");
            time.Advance(TimeSpan.FromMilliseconds(100));
            await Task.Delay(5, Ct);
        }

        return await task;
    }

    [Theory]
    [InlineData(500, null, K8sWorkloadCodes.KubeletUnreachable)]
    [InlineData(403, null, K8sWorkloadCodes.KubeletRefused)]
    [InlineData(404, null, K8sWorkloadCodes.KubeletMalformed)]
    [InlineData(200, "{\"kind\":\"PodList\",\"items\":[{\"metadata\":", K8sWorkloadCodes.KubeletMalformed)]
    [InlineData(200, "<html>login</html>", K8sWorkloadCodes.KubeletMalformed)]
    [InlineData(200, "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\",\"items\":[]}", K8sWorkloadCodes.KubeletMalformed)]
    [InlineData(200, "{\"kind\":\"PodList\"}", K8sWorkloadCodes.KubeletMalformed)]
    [InlineData(200, "null", K8sWorkloadCodes.KubeletMalformed)]
    public async Task A_kubelet_answer_that_is_not_a_pod_list_is_a_clear_error(int status, string? body, string code)
    {
        _kubelet.Override = async ctx =>
        {
            ctx.Response.StatusCode = status;
            if (body is not null)
            {
                await ctx.Response.WriteAsync(body);
            }
        };
        using var attestor = Attestor();

        AttestorResult r = await AttestAsync(attestor, CgroupOf(Pods.NewUid(), Pods.NewContainerId()));

        Assert.StartsWith(code + ":", r.Error, StringComparison.Ordinal);
        Assert.DoesNotContain("login", r.Error, StringComparison.Ordinal);   // the body is not echoed
        Assert.Empty(r.Selectors);
    }

    [Fact]
    public async Task An_answer_larger_than_the_cap_is_refused_while_it_streams()
    {
        _kubelet.Override = async ctx =>
        {
            ctx.Response.StatusCode = 200;
            byte[] spaces = Encoding.ASCII.GetBytes(new string(' ', 1 << 20));
            for (int i = 0; i <= KubeletClient.MaxResponseBytes >> 20; i++)
            {
                try
                {
                    await ctx.Response.Body.WriteAsync(spaces, ctx.RequestAborted);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
                catch (IOException)
                {
                    return;
                }
            }
        };
        using var attestor = Attestor();

        AttestorResult r = await AttestAsync(attestor, CgroupOf(Pods.NewUid(), Pods.NewContainerId()));

        Assert.StartsWith(K8sWorkloadCodes.KubeletMalformed + ":", r.Error, StringComparison.Ordinal);
        Assert.Contains("32 MiB", r.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_pod_the_kubelet_lists_for_another_node_gives_nothing()
    {
        string uid = Pods.NewUid(), cid = Pods.NewContainerId();
        _kubelet.SetPods(Pods.Make(uid, "web", "prod", "web", cid, node: "node-b"));
        using var attestor = Attestor();

        AttestorResult r = await AttestAsync(attestor, CgroupOf(uid, cid));

        Assert.StartsWith(K8sWorkloadCodes.PodNotFound + ":", r.Error, StringComparison.Ordinal);
        Assert.Empty(r.Selectors);
        Assert.Contains(_log.Entries, e => e.Level == LogLevel.Warning && e.Message.Contains("spec.nodeName is not node-a", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Two_list_entries_with_one_uid_are_neither_believed()
    {
        string uid = Pods.NewUid(), cid = Pods.NewContainerId();
        _kubelet.SetPods(Pods.Make(uid, "web", "prod", "web", cid), Pods.Make(uid, "web", "kube-system", "admin", cid));
        using var attestor = Attestor();

        AttestorResult r = await AttestAsync(attestor, CgroupOf(uid, cid));

        Assert.StartsWith(K8sWorkloadCodes.PodNotFound + ":", r.Error, StringComparison.Ordinal);
        Assert.Empty(r.Selectors);
    }

    [Fact]
    public async Task A_process_in_the_attackers_pod_never_gets_the_victims_selectors()
    {
        // Pod A (the victim: payments) and pod B (the attacker's, another namespace) with the same labels, and B's
        // status claiming A's container id too. The pod uid comes from the kernel's cgroup, never from the kubelet.
        string uidA = Pods.NewUid(), cidA = Pods.NewContainerId(), uidB = Pods.NewUid(), cidB = Pods.NewContainerId();
        var labels = new Dictionary<string, string> { ["app"] = "payments" };
        V1Pod victim = Pods.Make(uidA, "payments-1", "payments", "payments", cidA, labels: labels);
        V1Pod attacker = Pods.Make(uidB, "payments-1", "attacker", "default", cidB, labels: labels);
        attacker.Status.ContainerStatuses.Add(new V1ContainerStatus { Name = "app2", ContainerID = "containerd://" + cidA, Image = "evil", ImageID = "sha256:" + Pods.OtherImageHex });
        _kubelet.SetPods(attacker, victim);
        using var attestor = Attestor();

        AttestorResult b = await AttestAsync(attestor, CgroupOf(uidB, cidB));
        AttestorResult a = await AttestAsync(attestor, CgroupOf(uidA, cidA), Pid + 1);
        // A process in B's pod cgroup whose container id B's status claims as A's: still B's pod, never A's.
        AttestorResult claimed = await AttestAsync(attestor, CgroupOf(uidB, cidA), Pid + 2);
        // A process whose cgroup names A's pod with a container only B lists: not A's container.
        AttestorResult foreign = await AttestAsync(attestor, CgroupOf(uidA, cidB), Pid + 3);

        Assert.Contains("k8s:ns:attacker", Selectors(b));
        Assert.DoesNotContain(Selectors(b), s => s is "k8s:ns:payments" or "k8s:sa:payments" || s == "k8s:pod-uid:" + uidA);
        Assert.Contains("k8s:sa:payments", Selectors(a));
        Assert.Contains("k8s:pod-uid:" + uidA, Selectors(a));
        Assert.Contains("k8s:ns:attacker", Selectors(claimed));
        Assert.DoesNotContain(Selectors(claimed), s => s is "k8s:ns:payments" or "k8s:sa:payments");
        Assert.StartsWith(K8sWorkloadCodes.ContainerNotFound + ":", foreign.Error, StringComparison.Ordinal);
        Assert.Empty(foreign.Selectors);
    }

    [Fact]
    public async Task A_container_inside_a_user_delegated_cgroup_or_two_containers_gets_nothing()
    {
        string uid = Pods.NewUid(), cid = Pods.NewContainerId();
        _kubelet.SetPods(Pods.Make(uid, "web", "prod", "web", cid));
        using var attestor = Attestor();

        // A user's own systemd manager may name cgroups anything, including a pod's path.
        AttestorResult user = await AttestAsync(attestor, "0::/user.slice/user-1000.slice/user@1000.service/kubepods-pod" + uid.Replace('-', '_') + ".slice/cri-containerd-" + cid + ".scope\n");
        AttestorResult split = await AttestAsync(attestor, "4:memory:" + CgroupOf(uid, cid)[3..] + "0::/kubepods.slice/kubepods-pod" + uid.Replace('-', '_') + ".slice/cri-containerd-" + Pods.NewContainerId() + ".scope\n", Pid + 1);

        Assert.Empty(user.Selectors);
        Assert.Null(user.Error);
        Assert.NotNull(split.Error);
        Assert.Empty(split.Selectors);
        Assert.Equal(0, _kubelet.Requests);
    }

    [Fact]
    public void The_attestor_set_builds_k8s_and_refuses_it_without_a_node_name()
    {
        using var loggers = LoggerFactory.Create(_ => { });
        var options = new AgentOptions
        {
            ServerAddress = "https://127.0.0.1:1", TrustDomain = Writ.Spiffe.TrustDomain.Parse("example.org"), DataDir = _dir.Path, SocketPath = _dir.Combine("agent.sock"),
            WorkloadAttestors = ["unix", "cgroup", "k8s"], Kubernetes = _kubelet.Options(),
        };
        IReadOnlyList<IWorkloadAttestor> set = WorkloadAttestorSet.Create(options, _proc, loggers, TimeProvider.System);
        Assert.Equal(["unix", "cgroup", "k8s"], set.Select(a => a.Name));
        Assert.IsType<K8sWorkloadAttestor>(set[2]);
        ((IDisposable)set[2]).Dispose();

        var noNode = options with { Kubernetes = _kubelet.Options() with { NodeName = null } };
        var ex = Assert.Throws<ArgumentException>(() => WorkloadAttestorSet.Create(noNode, _proc, loggers, TimeProvider.System));
        Assert.Contains("k8s.node_name", ex.Message, StringComparison.Ordinal);
    }

    /// <summary>Stands in for the image signature verifier (another lane's part) behind its interface.</summary>
    private sealed class RecordingVerifier(IReadOnlyList<string> signers) : IImageSignatureVerifier
    {
        public ImageSignatureResult Result { get; set; } = new(signers, null);

        public List<(string Image, string Digest)> Calls { get; } = [];

        public ValueTask<ImageSignatureResult> SignersAsync(string imageReference, string imageDigest, CancellationToken ct)
        {
            lock (Calls)
            {
                Calls.Add((imageReference, imageDigest));
            }

            return ValueTask.FromResult(Result);
        }
    }
}
