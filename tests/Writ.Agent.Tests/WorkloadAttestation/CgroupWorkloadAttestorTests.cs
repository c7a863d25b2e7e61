using Writ.Agent.PeerTracking;
using Writ.Agent.Tests.TestSupport;
using Writ.Agent.WorkloadAttestation;
using Writ.Protocol.Evidence;

namespace Writ.Agent.Tests.WorkloadAttestation;

/// <summary>
/// Table-driven cases over realistic /proc/&lt;pid&gt;/cgroup contents. Tokens: {A} and {B} are 64-hex
/// container ids, {U} a pod uid (dashes), {U_} the same with underscores (systemd form), {S} a
/// static-pod uid (32 hex). Expected selectors are the complete set, '|'-separated.
/// </summary>
public sealed class CgroupWorkloadAttestorTests
{
    private const string A = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    private const string B = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";
    private const string U = "2f8a7c1e-1b2c-4d5e-9f80-112233445566";
    private const string S = "6d9b3e1c0a7f4e2b8c5d1a0f9e8d7c6b";

    [Theory]
    // Docker, cgroup v1, cgroupfs driver (no unified line: no cgroup:path selector).
    [InlineData("12:memory:/docker/{A}\n11:cpu,cpuacct:/docker/{A}\n1:name=systemd:/docker/{A}\n",
        "container:id:{A}|container:runtime:docker")]
    // Docker, cgroup v2, cgroupfs driver.
    [InlineData("0::/docker/{A}\n", "cgroup:path:/docker/{A}|container:id:{A}|container:runtime:docker")]
    // Docker, cgroup v2, systemd driver.
    [InlineData("0::/system.slice/docker-{A}.scope\n", "cgroup:path:/system.slice/docker-{A}.scope|container:id:{A}|container:runtime:docker")]
    // Docker, hybrid v1 + unified, systemd driver.
    [InlineData("4:memory:/system.slice/docker-{A}.scope\n1:name=systemd:/system.slice/docker-{A}.scope\n0::/system.slice/docker-{A}.scope\n",
        "cgroup:path:/system.slice/docker-{A}.scope|container:id:{A}|container:runtime:docker")]
    // containerd (CRI), cgroup v2, systemd driver, burstable pod.
    [InlineData("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{U_}.slice/cri-containerd-{A}.scope\n",
        "cgroup:path:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{U_}.slice/cri-containerd-{A}.scope|container:id:{A}|container:runtime:containerd|k8s:pod-uid:{U}")]
    // containerd (CRI), guaranteed pod (no QoS slice), systemd driver.
    [InlineData("0::/kubepods.slice/kubepods-pod{U_}.slice/cri-containerd-{A}.scope\n",
        "cgroup:path:/kubepods.slice/kubepods-pod{U_}.slice/cri-containerd-{A}.scope|container:id:{A}|container:runtime:containerd|k8s:pod-uid:{U}")]
    // CRI, cgroup v1, cgroupfs driver: the runtime is not in the path.
    [InlineData("10:memory:/kubepods/burstable/pod{U}/{A}\n3:cpu,cpuacct:/kubepods/burstable/pod{U}/{A}\n",
        "container:id:{A}|k8s:pod-uid:{U}")]
    // CRI, guaranteed pod, cgroupfs driver, cgroup v2.
    [InlineData("0::/kubepods/pod{U}/{A}\n", "cgroup:path:/kubepods/pod{U}/{A}|container:id:{A}|k8s:pod-uid:{U}")]
    // CRI-O, systemd driver.
    [InlineData("0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{U_}.slice/crio-{A}.scope\n",
        "cgroup:path:/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{U_}.slice/crio-{A}.scope|container:id:{A}|container:runtime:crio|k8s:pod-uid:{U}")]
    // CRI-O, cgroupfs driver, cgroup v1.
    [InlineData("5:memory:/kubepods/besteffort/pod{U}/crio-{A}\n", "container:id:{A}|container:runtime:crio|k8s:pod-uid:{U}")]
    // Docker as the Kubernetes runtime (dockershim / cri-dockerd), systemd driver.
    [InlineData("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{U_}.slice/docker-{A}.scope\n",
        "cgroup:path:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{U_}.slice/docker-{A}.scope|container:id:{A}|container:runtime:docker|k8s:pod-uid:{U}")]
    // Static (mirror) pod: its uid is a 32-hex config hash.
    [InlineData("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{S}.slice/cri-containerd-{A}.scope\n",
        "cgroup:path:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{S}.slice/cri-containerd-{A}.scope|container:id:{A}|container:runtime:containerd|k8s:pod-uid:{S}")]
    // Podman (rootful), systemd driver, cgroup v2, with its inner "container" cgroup.
    [InlineData("0::/machine.slice/libpod-{A}.scope/container\n", "cgroup:path:/machine.slice/libpod-{A}.scope/container|container:id:{A}|container:runtime:podman")]
    // Podman, cgroupfs driver.
    [InlineData("0::/libpod_parent/libpod-{A}\n", "cgroup:path:/libpod_parent/libpod-{A}|container:id:{A}|container:runtime:podman")]
    // The agent in its own cgroup namespace sees other pods' paths relative to its root.
    [InlineData("0::/../../kubepods-besteffort-pod{U_}.slice/cri-containerd-{A}.scope\n",
        "cgroup:path:/../../kubepods-besteffort-pod{U_}.slice/cri-containerd-{A}.scope|container:id:{A}|container:runtime:containerd|k8s:pod-uid:{U}")]
    // Not in a container: only the unified path.
    [InlineData("0::/user.slice/user-1000.slice/session-3.scope\n", "cgroup:path:/user.slice/user-1000.slice/session-3.scope")]
    [InlineData("0::/\n", "cgroup:path:/")]
    [InlineData("4:memory:/process_api/1dfe035f1ca368ab612c61c557650c66\n1:cpu:/\n0::/\n", "cgroup:path:/")]
    // A cgroup name may contain ':'.
    [InlineData("0::/system.slice/we:ird.service\n", "cgroup:path:/system.slice/we:ird.service")]
    public void Recognises_every_supported_layout(string cgroupFile, string expected) =>
        AssertSelectors(cgroupFile, expected);

    [Theory]
    // 63 and 65 hex digits.
    [InlineData("0::/docker/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n", "cgroup:path:/docker/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde")]
    [InlineData("0::/system.slice/docker-{A}0.scope\n", "cgroup:path:/system.slice/docker-{A}0.scope")]
    // Uppercase: runtimes never write it; accepting it would give one container two ids.
    [InlineData("0::/system.slice/docker-0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef.scope\n",
        "cgroup:path:/system.slice/docker-0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef.scope")]
    // Suffixes and prefixes around an otherwise valid component.
    [InlineData("0::/system.slice/docker-{A}.scope.evil\n", "cgroup:path:/system.slice/docker-{A}.scope.evil")]
    [InlineData("0::/system.slice/xdocker-{A}.scope\n", "cgroup:path:/system.slice/xdocker-{A}.scope")]
    [InlineData("0::/system.slice/docker-{A}.scopes\n", "cgroup:path:/system.slice/docker-{A}.scopes")]
    // A bare id counts only directly under docker/ or a pod.
    [InlineData("0::/system.slice/{A}\n", "cgroup:path:/system.slice/{A}")]
    [InlineData("0::/dockerx/{A}\n", "cgroup:path:/dockerx/{A}")]
    // pod<uid> counts only under a kubepods component.
    [InlineData("0::/system.slice/pod{U}/{A}\n", "cgroup:path:/system.slice/pod{U}/{A}")]
    // A user's own systemd manager can create any cgroup name below it (also rootless podman).
    [InlineData("0::/user.slice/user-1000.slice/user@1000.service/app.slice/docker-{A}.scope\n",
        "cgroup:path:/user.slice/user-1000.slice/user@1000.service/app.slice/docker-{A}.scope")]
    [InlineData("0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{A}.scope/container\n",
        "cgroup:path:/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{A}.scope/container")]
    // Runtime monitors are not containers.
    [InlineData("0::/machine.slice/libpod-conmon-{A}.scope\n", "cgroup:path:/machine.slice/libpod-conmon-{A}.scope")]
    [InlineData("0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{U_}.slice/crio-conmon-{A}.scope\n",
        "cgroup:path:/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{U_}.slice/crio-conmon-{A}.scope")]
    // One hierarchy says container, the unified one says user-delegated: fail closed.
    [InlineData("4:memory:/docker/{A}\n0::/user.slice/user-1000.slice/user@1000.service/x.scope\n",
        "cgroup:path:/user.slice/user-1000.slice/user@1000.service/x.scope")]
    public void Rejects_near_misses_and_untrusted_subtrees(string cgroupFile, string expected) =>
        AssertSelectors(cgroupFile, expected);

    [Theory]
    // A container that can create sub-cgroups (cgroupns + delegation) names another container or
    // pod below its own: the outermost component wins, so it stays itself.
    [InlineData("0::/system.slice/docker-{A}.scope/docker-{B}.scope\n", "cgroup:path:/system.slice/docker-{A}.scope/docker-{B}.scope|container:id:{A}|container:runtime:docker")]
    [InlineData("0::/docker/{A}/docker/{B}\n", "cgroup:path:/docker/{A}/docker/{B}|container:id:{A}|container:runtime:docker")]
    [InlineData("0::/kubepods/besteffort/pod{U}/{A}/kubepods/pod{S}/{B}\n", "cgroup:path:/kubepods/besteffort/pod{U}/{A}/kubepods/pod{S}/{B}|container:id:{A}|k8s:pod-uid:{U}")]
    // A pod component below the container does not give it a pod uid.
    [InlineData("0::/docker/{A}/kubepods/pod{U}\n", "cgroup:path:/docker/{A}/kubepods/pod{U}|container:id:{A}|container:runtime:docker")]
    // Kubernetes nested in a Docker container (kind) from the host: the node container is what is proven.
    [InlineData("0::/docker/{A}/kubepods/besteffort/pod{U}/{B}\n", "cgroup:path:/docker/{A}/kubepods/besteffort/pod{U}/{B}|container:id:{A}|container:runtime:docker")]
    public void A_container_cannot_pose_as_another_container_or_pod(string cgroupFile, string expected) =>
        AssertSelectors(cgroupFile, expected);

    [Fact]
    public void Refusals_are_recorded_as_facts()
    {
        AttestorResult r = CgroupWorkloadAttestor.Evaluate("cgroup", Expand("0::/user.slice/user-1000.slice/user@1000.service/app.slice/docker-{A}.scope\n"));
        Assert.Null(r.Error);
        Assert.Contains("user@1000.service", r.Facts["container_refused"], StringComparison.Ordinal);
        Assert.False(r.Facts.ContainsKey("container_id"));

        r = CgroupWorkloadAttestor.Evaluate("cgroup", Expand("0::/machine.slice/libpod-conmon-{A}.scope\n"));
        Assert.Contains("conmon", r.Facts["container_refused"], StringComparison.Ordinal);
    }

    [Fact]
    public void Hierarchies_that_name_different_containers_are_an_error()
    {
        AttestorResult r = CgroupWorkloadAttestor.Evaluate("cgroup", Expand("4:memory:/docker/{A}\n3:cpu:/docker/{B}\n0::/docker/{A}\n"));
        Assert.Empty(r.Selectors);
        Assert.Contains("different containers", r.Error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("")]
    [InlineData("\n")]
    [InlineData("garbage\n")]
    [InlineData("x::/docker/{A}\n")]
    [InlineData("0::docker/{A}\n")]
    [InlineData("0::/\nnot a line\n")]
    public void Malformed_files_are_errors(string cgroupFile)
    {
        AttestorResult r = CgroupWorkloadAttestor.Evaluate("cgroup", Expand(cgroupFile));
        Assert.Empty(r.Selectors);
        Assert.NotNull(r.Error);
        Assert.DoesNotContain('\n', r.Error);
    }

    [Fact]
    public async Task Attests_a_real_process_from_proc()
    {
        using Child child = Child.Start("/usr/bin/sleep", "30");
        string expected = File.ReadAllLines($"/proc/{child.Pid}/cgroup").Single(l => l.StartsWith("0::", StringComparison.Ordinal))[3..];
        AttestorResult r = await UnixWorkloadAttestorTests.AttestAsync(new CgroupWorkloadAttestor(ProcFs.Host), child.Pid, 0, 0);
        Assert.Null(r.Error);
        Assert.Equal("cgroup", r.Attestor);
        Assert.Contains($"cgroup:path:{expected}", UnixWorkloadAttestorTests.Strings(r));
    }

    [Fact]
    public async Task Reads_the_cgroup_file_of_the_given_pid_from_the_proc_seam()
    {
        using var proc = new FakeProc();
        proc.Write(77, "stat", FakeProc.StatLine(77, "app", 'S', 5));
        proc.Write(77, "cgroup", Expand("0::/system.slice/docker-{A}.scope\n"));
        Assert.True(ProcessPin.TryCreate(proc, 77, out ProcessPin? pin, out _));
        AttestorResult r = await new CgroupWorkloadAttestor(proc).AttestAsync(new WorkloadProcess(new PeerCredentials(77, 0, 0), pin!), TestContext.Current.CancellationToken);
        Assert.Contains($"container:id:{A}", UnixWorkloadAttestorTests.Strings(r));

        AttestorResult missing = await new CgroupWorkloadAttestor(proc).AttestAsync(new WorkloadProcess(new PeerCredentials(78, 0, 0), pin!), TestContext.Current.CancellationToken);
        Assert.Contains("does not exist", missing.Error, StringComparison.Ordinal);
    }

    private static void AssertSelectors(string cgroupFile, string expected)
    {
        AttestorResult r = CgroupWorkloadAttestor.Evaluate("cgroup", Expand(cgroupFile));
        Assert.Null(r.Error);
        string[] want = [.. Expand(expected).Split('|').Order(StringComparer.Ordinal)];
        string[] got = [.. r.Selectors.Select(s => s.ToString()).Order(StringComparer.Ordinal)];
        Assert.Equal(want, got);
        // The server accepts in registration entries only the types listed in SelectorTypes: every one emitted is there.
        Assert.All(r.Selectors, x => Assert.True(SelectorTypes.IsBuiltIn(x.Type, x.Value), $"{x} is not in SelectorTypes.BuiltIn"));
    }

    private static string Expand(string text) =>
        text.Replace("{A}", A, StringComparison.Ordinal).Replace("{B}", B, StringComparison.Ordinal)
            .Replace("{U_}", U.Replace('-', '_'), StringComparison.Ordinal).Replace("{U}", U, StringComparison.Ordinal)
            .Replace("{S}", S, StringComparison.Ordinal);
}
