using System.Collections.ObjectModel;
using System.Globalization;
using Writ.Agent.PeerTracking;
using Writ.Protocol.Evidence;

namespace Writ.Agent.WorkloadAttestation;

/// <summary>Configuration of the <c>unix</c> workload attestor.</summary>
public sealed record UnixWorkloadAttestorOptions
{
    public const long DefaultMaxHashBytes = 256L * 1024 * 1024;

    /// <summary>User database used to name uids (the host's, not the container's).</summary>
    public string PasswdPath { get; init; } = "/etc/passwd";

    /// <summary>Group database used to name gids.</summary>
    public string GroupPath { get; init; } = "/etc/group";

    /// <summary>Executables larger than this get no <c>unix:sha256</c> selector (an error fact instead).</summary>
    public long MaxHashBytes { get; init; } = DefaultMaxHashBytes;

    /// <summary>Whether to hash the executable at all.</summary>
    public bool HashExecutable { get; init; } = true;

    /// <summary>
    /// Whether to hash executables on FUSE filesystems (default no: the mounter, maybe the workload's
    /// own user, controls their content and can stall reads). Such hashes are never cached.
    /// </summary>
    public bool HashOnFuse { get; init; }
}

/// <summary>
/// The <c>unix</c> attestor: uid/gid (from SO_PEERCRED, cross-checked against /proc/&lt;pid&gt;/status),
/// user and group names, supplementary groups, executable path and the SHA-256 of the running
/// executable. See docs/selectors.md for every selector and fact.
/// </summary>
public sealed class UnixWorkloadAttestor : INonBlockingWorkloadAttestor
{
    public const string AttestorName = "unix";
    private const string DeletedSuffix = " (deleted)";
    private readonly IProcFs _proc;
    private readonly UnixWorkloadAttestorOptions _options;
    private readonly ExecutableHasher _hasher;

    public UnixWorkloadAttestor(IProcFs proc, UnixWorkloadAttestorOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(proc);
        _proc = proc;
        _options = options ?? new UnixWorkloadAttestorOptions();
        if (_options.MaxHashBytes <= 0)
        {
            throw new ArgumentException("the unix attestor's MaxHashBytes must be positive; set it to the largest executable size to hash", nameof(options));
        }

        _hasher = new ExecutableHasher(_options.MaxHashBytes, hashOnFuse: _options.HashOnFuse, ownMountInfoPath: Path.Combine(proc.Root, "self", "mountinfo"));
        _ownMountNamespace = new Lazy<FileIdentity?>(() =>
            FileIdentity.TryGet(Path.Combine(proc.Root, "self", "ns", "mnt"), out FileIdentity ns, out _) ? ns : null);
        _users = new NameDatabase(_options.PasswdPath);
        _groups = new NameDatabase(_options.GroupPath);
    }

    private readonly NameDatabase _users;
    private readonly Lazy<FileIdentity?> _ownMountNamespace;
    private readonly NameDatabase _groups;

    public string Name => AttestorName;

    /// <summary>The hasher (exposed so tests and metrics can see cache behaviour).</summary>
    public ExecutableHasher Hasher => _hasher;

    /// <summary>
    /// Answers at once when the executable's hash is cached (its file identity seen before); otherwise the whole
    /// attestation runs again on a thread-pool thread, where reading and hashing the file may take its time.
    /// </summary>
    public Task<AttestorResult> AttestAsync(WorkloadProcess process, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(process);
        AttestorResult? result = Attest(process, mayRead: false, ct);
        return result is not null
            ? Task.FromResult(result)
            : Task.Run(() => Attest(process, mayRead: true, ct)!, CancellationToken.None);
    }

    /// <summary>The evidence; null only when <paramref name="mayRead"/> is false and the executable must be read to hash it.</summary>
    private AttestorResult? Attest(WorkloadProcess process, bool mayRead, CancellationToken ct)
    {
        int pid = process.Peer.Pid;
        var facts = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["pid"] = Inv(pid),
            ["start_time_ticks"] = Inv(process.Pin.StartTimeTicks),
            ["boot_id"] = process.Pin.BootId,
        };

        if (!ProcStatus.TryRead(_proc, pid, out ProcStatus? status, out string? error))
        {
            return AttestorResult.Failure(Name, error!, facts);
        }

        facts["name"] = status!.Name;
        facts["ppid"] = Inv(status.ParentPid);
        facts["uids"] = string.Join(' ', status.Uids.Select(Inv));
        facts["gids"] = string.Join(' ', status.Gids.Select(Inv));

        // SO_PEERCRED holds the effective ids at connect time. If the process now runs with other
        // effective ids (it exec'd a setuid binary, or changed ids) its identity is ambiguous.
        if (status.EffectiveUid != process.Peer.Uid || status.EffectiveGid != process.Peer.Gid)
        {
            return AttestorResult.Failure(Name, string.Create(CultureInfo.InvariantCulture,
                $"process {pid} connected as uid {process.Peer.Uid} gid {process.Peer.Gid} but now runs as uid {status.EffectiveUid} gid {status.EffectiveGid}; a workload must not change credentials after connecting"), facts);
        }

        var selectors = new List<Selector>();
        void Add(string kind, string value)
        {
            // The one selector rule: a value with whitespace or control characters (a path or a name with a space)
            // would make the server refuse all the evidence, so it is left out and said so.
            string v = $"{kind}:{value}";
            if (Selector.IsValidValue(v) && v.Length <= WorkloadEvidence.MaxTextLength)
            {
                selectors.Add(new Selector(Name, v));
            }
            else
            {
                facts[$"{kind}_omitted"] = "the value has whitespace or control characters or is too long to be a selector";
            }
        }

        Add("uid", Inv(process.Peer.Uid));
        Add("gid", Inv(process.Peer.Gid));
        IReadOnlyDictionary<int, string> users = _users.Current();
        IReadOnlyDictionary<int, string> groups = _groups.Current();
        if (users.TryGetValue(process.Peer.Uid, out string? user))
        {
            Add("user", user);
        }

        if (groups.TryGetValue(process.Peer.Gid, out string? group))
        {
            Add("group", group);
        }

        foreach (int gid in status.SupplementaryGids.Distinct().Order())
        {
            Add("supplementary_gid", Inv(gid));
            if (groups.TryGetValue(gid, out string? supplementary))
            {
                Add("supplementary_group", supplementary);
            }
        }

        string exeLink = ProcFs.PidPath(_proc, pid, "exe");
        string? target = null;
        try
        {
            target = new FileInfo(exeLink).LinkTarget;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            facts["exe_error"] = $"cannot read the executable link ({ex.GetType().Name})";
        }

        if (target is not null)
        {
            // Control characters would let a file name forge log or audit lines, and invalid UTF-8
            // (decoded as U+FFFD) would make different paths compare equal: no selector for those.
            bool unprintable = target.Any(c => char.IsControl(c) || c == '\uFFFD');
            facts["exe"] = unprintable
                ? string.Concat(target.Select(c => char.IsControl(c) ? "\\x" + ((int)c).ToString("x2", CultureInfo.InvariantCulture) : c.ToString()))
                : target;
            if (target.EndsWith(DeletedSuffix, StringComparison.Ordinal))
            {
                // The binary was deleted or replaced after exec (or its name really ends in
                // " (deleted)"): either way the path no longer names what is running.
                facts["exe_deleted"] = "true";
            }
            else if (unprintable)
            {
                facts["exe_unprintable"] = "true";
            }
            else if (!Path.IsPathFullyQualified(target))
            {
                facts["path_omitted"] = "the executable link is not an absolute path";
            }
            else if (!InAgentMountNamespace(pid, out string? nsReason))
            {
                // Paths are resolved in the process's own mount namespace: there, a bind mount (e.g. after
                // `unshare -Urm`) can put any file at /usr/bin/trusted. The hash below is still of the real file.
                facts["path_omitted"] = nsReason!;
            }
            else if (!FileIdentity.TryGet(target, out FileIdentity atPath, out _) ||
                     !string.Equals(atPath.FileKey, process.Pin.Executable, StringComparison.Ordinal))
            {
                // Even from the agent's namespace a process can exec a file through another namespace's mounts
                // (/proc/<pid>/root/usr/bin/trusted of a process that bind-mounted its own file there); the link
                // then reads /usr/bin/trusted. The path counts only if it names the running file here.
                facts["path_omitted"] = "the path does not name the running executable in the agent's mount namespace";
            }
            else
            {
                Add("path", target);
            }
        }
        else
        {
            facts.TryAdd("exe_error", "the process has no executable link (kernel thread or exited)");
        }

        if (_options.HashExecutable)
        {
            bool hashed = _hasher.TryHash(exeLink, ProcFs.PidPath(_proc, pid, "mountinfo"), readContent: mayRead, ct,
                out string? sha256, out FileIdentity identity, out string? uncached, out string? hashError);
            if (!hashed && hashError is null)
            {
                return null;   // not cached: read it off this thread
            }

            if (hashed)
            {
                // The hash must be of the program that was pinned, not of one exec'd since.
                if (!string.Equals(identity.FileKey, process.Pin.Executable, StringComparison.Ordinal))
                {
                    return AttestorResult.Failure(Name, $"process {pid} executed another program during attestation; let the client reconnect", facts);
                }

                Add("sha256", sha256!);
                facts["exe_size"] = Inv(identity.Size);
                facts["exe_file"] = identity.FileKey;
                if (uncached is not null)
                {
                    facts["sha256_uncached"] = uncached;
                }
            }
            else
            {
                facts["sha256_error"] = hashError!;
            }
        }

        return AttestorResult.Success(Name, selectors.AsReadOnly(), new ReadOnlyDictionary<string, string>(facts));
    }

    /// <summary>
    /// Whether <paramref name="pid"/> shares the agent's mount namespace (device and inode of /proc/&lt;pid&gt;/ns/mnt and
    /// of the agent's own). Unknown counts as no.
    /// </summary>
    private bool InAgentMountNamespace(int pid, out string? reason)
    {
        FileIdentity? own = _ownMountNamespace.Value;
        if (own is null || !FileIdentity.TryGet(ProcFs.PidPath(_proc, pid, "ns/mnt"), out FileIdentity theirs, out _))
        {
            reason = "the process's mount namespace cannot be compared with the agent's";
            return false;
        }

        if ((theirs.Device, theirs.Inode) != (own.Value.Device, own.Value.Inode))
        {
            reason = "the process runs in another mount namespace than the agent, where its path may name another file; match it by unix:sha256 or container selectors";
            return false;
        }

        reason = null;
        return true;
    }

    /// <summary>
    /// Parses passwd/group style files (name:x:id:...) into id → first name. A missing file gives an
    /// empty map: names are then simply not emitted.
    /// </summary>
    internal static IReadOnlyDictionary<int, string> ReadNameDatabase(string path)
    {
        IEnumerable<string> lines;
        try
        {
            lines = File.ReadAllLines(path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return new Dictionary<int, string>();
        }

        return ParseNameDatabase(lines);
    }

    private static Dictionary<int, string> ParseNameDatabase(IEnumerable<string> lines)
    {
        var map = new Dictionary<int, string>();
        foreach (string raw in lines)
        {
            string line = raw.TrimEnd('\r');
            if (line.Length == 0 || line[0] is '#' or '+' or '-')
            {
                continue;
            }

            string[] fields = line.Split(':');
            if (fields.Length < 3 || fields[0].Length == 0 ||
                !int.TryParse(fields[2], NumberStyles.None, CultureInfo.InvariantCulture, out int id))
            {
                continue;
            }

            map.TryAdd(id, fields[0]);
        }

        return map;
    }

    /// <summary>
    /// A passwd/group file parsed once per version: each call checks the file's identity (one statx) and parses it
    /// again only when that changed (a rewrite changes at least its ctime; a replacement its inode). The identity is
    /// taken from the opened file that is parsed, so the map is always the content of the identity it is kept under.
    /// </summary>
    private sealed class NameDatabase(string path)
    {
        private sealed record Version(FileIdentity Identity, IReadOnlyDictionary<int, string> Names);

        private static readonly IReadOnlyDictionary<int, string> Empty = new Dictionary<int, string>();
        private Version? _current;

        public IReadOnlyDictionary<int, string> Current()
        {
            Version? v = Volatile.Read(ref _current);
            if (!FileIdentity.TryGet(path, out FileIdentity now, out _))
            {
                return Empty;   // missing or unreadable: names are simply not emitted
            }

            if (v is not null && v.Identity == now)
            {
                return v.Names;
            }

            try
            {
                using Microsoft.Win32.SafeHandles.SafeFileHandle handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
                if (!FileIdentity.TryGet(handle, out FileIdentity opened, out _))
                {
                    return ReadNameDatabase(path);
                }

                using var stream = new FileStream(handle, FileAccess.Read);
                using var reader = new StreamReader(stream);
                IReadOnlyDictionary<int, string> names = ParseNameDatabase(reader.ReadToEnd().Split('\n'));
                Volatile.Write(ref _current, new Version(opened, names));
                return names;
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                return Empty;
            }
        }
    }

    private static string Inv<T>(T value) where T : IFormattable => value.ToString(null, CultureInfo.InvariantCulture);
}
