using System.Text.RegularExpressions;

namespace Writ.Agent.WorkloadAttestation;

/// <summary>The container runtimes the cgroup attestor recognises.</summary>
public enum ContainerRuntime
{
    /// <summary>The path shows a container but not which runtime made it (cgroupfs kubepods).</summary>
    Unknown,
    Docker,
    Containerd,
    Crio,
    Podman,
}

/// <summary>What one cgroup path says about containers.</summary>
public enum CgroupPathKind
{
    /// <summary>Not inside a recognised container (not an error).</summary>
    NotContainer,

    /// <summary>Inside a container; <see cref="CgroupPathInfo.ContainerId"/> is set.</summary>
    Container,

    /// <summary>A container runtime monitor (crio/podman conmon), not a workload container.</summary>
    RuntimeMonitor,

    /// <summary>A subtree whose names an unprivileged user chooses (systemd user@UID.service); ids there are not trusted.</summary>
    Untrusted,
}

public sealed record CgroupPathInfo(CgroupPathKind Kind, string? ContainerId = null, ContainerRuntime Runtime = ContainerRuntime.Unknown, string? PodUid = null, string? Reason = null)
{
    public static readonly CgroupPathInfo None = new(CgroupPathKind.NotContainer);
}

/// <summary>
/// Finds the container (and Kubernetes pod) a cgroup path belongs to. The rules, chosen so a
/// process cannot claim a container it is not in:
/// <list type="bullet">
/// <item>Components are matched whole, with exact patterns: ids are exactly 64 lowercase hex digits;
/// <c>docker-&lt;id&gt;.scope.evil</c>, 63 digits or uppercase never match.</item>
/// <item>The OUTERMOST recognised container component wins and everything below it is ignored: a
/// container that can create sub-cgroups (cgroup namespace + delegation) can only add components
/// under its own, so it cannot pose as another container.</item>
/// <item>Bare 64-hex components count only in the cgroupfs layouts that use them: directly under
/// <c>docker</c> (<c>/docker/&lt;id&gt;</c>) or directly under a Kubernetes pod component.</item>
/// <item>A pod uid counts only from a component ABOVE the container component (cgroupfs <c>pod&lt;uid&gt;</c>
/// only below a <c>kubepods</c> component); systemd form <c>kubepods-…-pod&lt;uid_with_underscores&gt;.slice</c>.</item>
/// <item>Anything below a systemd user manager (<c>user@&lt;uid&gt;.service</c>) is refused: that user
/// can create cgroups with any name there (rootless containers are therefore not attested).</item>
/// <item><c>crio-conmon-</c> and <c>libpod-conmon-</c> scopes are runtime monitors, not containers.</item>
/// <item><c>..</c> components (paths seen from the agent's cgroup namespace) are skipped.</item>
/// </list>
/// </summary>
public static partial class CgroupPathParser
{
    public static CgroupPathInfo Parse(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        string? podUid = null;
        bool underKubepods = false;
        string? previous = null;
        bool previousWasPod = false;
        foreach (string component in path.Split('/'))
        {
            if (component.Length == 0 || component is "." or "..")
            {
                continue;
            }

            bool isPod = false;
            Match m;
            if (UserManager().IsMatch(component))
            {
                return new CgroupPathInfo(CgroupPathKind.Untrusted, Reason: $"the cgroup is inside the user-delegated subtree {component}; container ids there are chosen by that user and are not trusted");
            }
            else if ((m = SystemdContainer().Match(component)).Success)
            {
                ContainerRuntime runtime = m.Groups["rt"].Value switch
                {
                    "docker" => ContainerRuntime.Docker,
                    "cri-containerd" => ContainerRuntime.Containerd,
                    "crio" => ContainerRuntime.Crio,
                    _ => ContainerRuntime.Podman,
                };
                return new CgroupPathInfo(CgroupPathKind.Container, m.Groups["id"].Value, runtime, podUid);
            }
            else if (Conmon().IsMatch(component))
            {
                return new CgroupPathInfo(CgroupPathKind.RuntimeMonitor, Reason: $"the process is a container runtime monitor ({component[..component.IndexOf("-conmon-", StringComparison.Ordinal)]} conmon), not a container");
            }
            else if (BareId().IsMatch(component) && (previous == "docker" || previousWasPod))
            {
                return new CgroupPathInfo(CgroupPathKind.Container, component, previous == "docker" && !previousWasPod ? ContainerRuntime.Docker : ContainerRuntime.Unknown, podUid);
            }
            else if ((m = CgroupfsCrio().Match(component)).Success && previousWasPod)
            {
                return new CgroupPathInfo(CgroupPathKind.Container, m.Groups["id"].Value, ContainerRuntime.Crio, podUid);
            }
            else if ((m = CgroupfsLibpod().Match(component)).Success && previous == "libpod_parent")
            {
                return new CgroupPathInfo(CgroupPathKind.Container, m.Groups["id"].Value, ContainerRuntime.Podman, podUid);
            }
            else if ((m = SystemdPod().Match(component)).Success)
            {
                podUid ??= m.Groups["uid"].Value.Replace('_', '-');
                underKubepods = true;
                isPod = true;
            }
            else if (underKubepods && (m = CgroupfsPod().Match(component)).Success)
            {
                podUid ??= m.Groups["uid"].Value;
                isPod = true;
            }
            else if (Kubepods().IsMatch(component))
            {
                underKubepods = true;
            }

            previous = component;
            previousWasPod = isPod;
        }

        return CgroupPathInfo.None;
    }

    [GeneratedRegex(@"^user@[0-9]+\.service\z", RegexOptions.CultureInvariant)]
    private static partial Regex UserManager();

    [GeneratedRegex(@"^(?<rt>docker|cri-containerd|crio|libpod)-(?<id>[0-9a-f]{64})\.scope\z", RegexOptions.CultureInvariant)]
    private static partial Regex SystemdContainer();

    [GeneratedRegex(@"^(?:crio|libpod)-conmon-[0-9a-f]{64}(?:\.scope)?\z", RegexOptions.CultureInvariant)]
    private static partial Regex Conmon();

    [GeneratedRegex(@"^[0-9a-f]{64}\z", RegexOptions.CultureInvariant)]
    private static partial Regex BareId();

    [GeneratedRegex(@"^crio-(?<id>[0-9a-f]{64})\z", RegexOptions.CultureInvariant)]
    private static partial Regex CgroupfsCrio();

    [GeneratedRegex(@"^libpod-(?<id>[0-9a-f]{64})\z", RegexOptions.CultureInvariant)]
    private static partial Regex CgroupfsLibpod();

    [GeneratedRegex(@"^kubepods(?:-(?:besteffort|burstable|guaranteed))?-pod(?<uid>[0-9a-f]{8}_[0-9a-f]{4}_[0-9a-f]{4}_[0-9a-f]{4}_[0-9a-f]{12}|[0-9a-f]{32})\.slice\z", RegexOptions.CultureInvariant)]
    private static partial Regex SystemdPod();

    [GeneratedRegex(@"^pod(?<uid>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32})\z", RegexOptions.CultureInvariant)]
    private static partial Regex CgroupfsPod();

    [GeneratedRegex(@"^kubepods(?:\.slice|-(?:besteffort|burstable|guaranteed)\.slice)?\z", RegexOptions.CultureInvariant)]
    private static partial Regex Kubepods();
}
