using System.Collections.Concurrent;
using System.Collections.ObjectModel;
using System.Globalization;
using Writ.Agent.PeerTracking;
using Writ.Protocol.Evidence;

namespace Writ.Agent.WorkloadAttestation;

/// <summary>
/// The <c>cgroup</c> attestor: reads /proc/&lt;pid&gt;/cgroup (cgroup v1, v2 and hybrid; systemd and
/// cgroupfs drivers) and emits the container id and runtime, the Kubernetes pod uid, and the
/// unified-hierarchy cgroup path. The path rules are in <see cref="CgroupPathParser"/> and docs/selectors.md.
/// Not being in a container is not an error: the container selectors are simply absent.
/// </summary>
public sealed class CgroupWorkloadAttestor : INonBlockingWorkloadAttestor
{
    public const string AttestorName = "cgroup";
    private const int MaxCachedResults = 1024;
    private const int MaxCachedTextLength = 16 * 1024;
    private readonly IProcFs _proc;

    // The result is a pure function of the file's text (Evaluate), and results are immutable, so the same text — a
    // process in the same cgroups as one seen before — is answered from here. The file itself is read on every call:
    // a process can be moved to another cgroup at any time.
    private readonly ConcurrentDictionary<string, AttestorResult> _results = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, AttestorResult>.AlternateLookup<ReadOnlySpan<char>> _byText;

    public CgroupWorkloadAttestor(IProcFs proc)
    {
        ArgumentNullException.ThrowIfNull(proc);
        _proc = proc;
        _byText = _results.GetAlternateLookup<ReadOnlySpan<char>>();
    }

    public string Name => AttestorName;

    public Task<AttestorResult> AttestAsync(WorkloadProcess process, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(process);
        int pid = process.Peer.Pid;
        switch (ProcFile.Read(ProcFs.PidPath(_proc, pid, "cgroup"), out ReadOnlySpan<char> text))
        {
            case ProcReadStatus.Missing:
                return Task.FromResult(AttestorResult.Failure(Name, $"process {pid} does not exist (it exited); let the client reconnect"));
            case ProcReadStatus.Failed:
                return Task.FromResult(AttestorResult.Failure(Name, $"could not read /proc cgroup of process {pid} ({ProcFile.ErrorName}); the agent needs to read /proc/<pid>/cgroup"));
        }

        if (_byText.TryGetValue(text, out AttestorResult? cached))
        {
            return Task.FromResult(cached);
        }

        string key = text.ToString();
        AttestorResult result = Evaluate(Name, key);
        if (key.Length > MaxCachedTextLength)
        {
            return Task.FromResult(result);   // no 4 MiB keys: 1024 of them would be gigabytes
        }

        if (_results.Count >= MaxCachedResults)
        {
            _results.Clear();
        }

        _results[key] = result;
        return Task.FromResult(result);
    }

    /// <summary>Turns the text of a /proc/&lt;pid&gt;/cgroup file into selectors and facts.</summary>
    public static AttestorResult Evaluate(string attestorName, string cgroupFileText)
    {
        ArgumentNullException.ThrowIfNull(cgroupFileText);
        var facts = new Dictionary<string, string>(StringComparer.Ordinal);
        var selectors = new List<Selector>();
        string? unifiedPath = null;
        var containers = new HashSet<CgroupPathInfo>();
        string? refusal = null;
        int lines = 0;
        foreach (string raw in cgroupFileText.Split('\n'))
        {
            if (raw.Length == 0)
            {
                continue;
            }

            // hierarchy-id:controller-list:path — the path may itself contain ':'.
            string[] parts = raw.Split(':', 3);
            if (parts.Length != 3 || !int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out int hierarchy) ||
                parts[2].Length == 0 || parts[2][0] != '/')
            {
                return AttestorResult.Failure(attestorName, $"{WorkloadAttestationCodes.ProcMalformed}: the /proc cgroup file has a malformed line; it is not a Linux /proc/<pid>/cgroup file");
            }

            lines++;
            string path = parts[2];
            if (hierarchy == 0 && parts[1].Length == 0)
            {
                unifiedPath ??= path;
            }

            CgroupPathInfo info = CgroupPathParser.Parse(path);
            switch (info.Kind)
            {
                case CgroupPathKind.Container:
                    containers.Add(info);
                    break;
                case CgroupPathKind.Untrusted:
                case CgroupPathKind.RuntimeMonitor:
                    refusal ??= info.Reason;
                    break;
            }
        }

        if (lines == 0)
        {
            return AttestorResult.Failure(attestorName, $"{WorkloadAttestationCodes.ProcMalformed}: the /proc cgroup file is empty; the kernel has no cgroup support enabled");
        }

        if (unifiedPath is not null)
        {
            facts["path"] = unifiedPath;
            string value = $"path:{unifiedPath}";
            if (Selector.IsValidValue(value) && value.Length <= WorkloadEvidence.MaxTextLength)
            {
                selectors.Add(new Selector("cgroup", value));
            }
            else
            {
                // A cgroup name may hold spaces or control characters and be long; such a path is no selector (the
                // server refuses evidence with an invalid one), but the container selectors still count.
                facts["path_omitted"] = "the cgroup path has whitespace or control characters or is too long to be a selector";
            }
        }

        if (containers.Count > 1)
        {
            // Different hierarchies name different containers: someone moved the process in one of
            // them. Refuse rather than pick one.
            return AttestorResult.Failure(attestorName,
                "the process's cgroup hierarchies name different containers; refusing to pick one (was the process moved between cgroups?)",
                new ReadOnlyDictionary<string, string>(facts));
        }

        if (refusal is not null)
        {
            facts["container_refused"] = refusal;
        }
        else if (containers.Count == 1)
        {
            CgroupPathInfo c = containers.First();
            facts["container_id"] = c.ContainerId!;
            selectors.Add(new Selector("container", $"id:{c.ContainerId}"));
            if (c.Runtime != ContainerRuntime.Unknown)
            {
                string runtime = c.Runtime.ToString().ToLowerInvariant();
                facts["container_runtime"] = runtime;
                selectors.Add(new Selector("container", $"runtime:{runtime}"));
            }

            if (c.PodUid is not null)
            {
                facts["pod_uid"] = c.PodUid;
                selectors.Add(new Selector("k8s", $"pod-uid:{c.PodUid}"));
            }
        }

        return AttestorResult.Success(attestorName, selectors.AsReadOnly(), new ReadOnlyDictionary<string, string>(facts));
    }
}
