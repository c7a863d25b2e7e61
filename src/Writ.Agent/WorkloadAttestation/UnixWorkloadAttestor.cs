using System.Collections.ObjectModel;
using System.Globalization;
using Writ.Agent.PeerTracking;

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
/// executable. See SELECTORS.md for every selector and fact.
/// </summary>
public sealed class UnixWorkloadAttestor : IWorkloadAttestor
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

        _hasher = new ExecutableHasher(_options.MaxHashBytes, hashOnFuse: _options.HashOnFuse);
    }

    public string Name => AttestorName;

    /// <summary>The hasher (exposed so tests and metrics can see cache behaviour).</summary>
    public ExecutableHasher Hasher => _hasher;

    public Task<AttestorResult> AttestAsync(WorkloadProcess process, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(process);
        return Task.FromResult(Attest(process, ct));
    }

    private AttestorResult Attest(WorkloadProcess process, CancellationToken ct)
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
        void Add(string kind, string value) => selectors.Add(new Selector(Name, $"{kind}:{value}"));

        Add("uid", Inv(process.Peer.Uid));
        Add("gid", Inv(process.Peer.Gid));
        IReadOnlyDictionary<int, string> users = ReadNameDatabase(_options.PasswdPath);
        IReadOnlyDictionary<int, string> groups = ReadNameDatabase(_options.GroupPath);
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
            else if (Path.IsPathFullyQualified(target))
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
            if (_hasher.TryHash(exeLink, ct, out string? sha256, out FileIdentity identity, out string? hashError))
            {
                // The hash must be of the program that was pinned, not of one exec'd since.
                if (!string.Equals(identity.FileKey, process.Pin.Executable, StringComparison.Ordinal))
                {
                    return AttestorResult.Failure(Name, $"process {pid} executed another program during attestation; let the client reconnect", facts);
                }

                Add("sha256", sha256!);
                facts["exe_size"] = Inv(identity.Size);
                facts["exe_file"] = identity.FileKey;
            }
            else
            {
                facts["sha256_error"] = hashError!;
            }
        }

        return AttestorResult.Success(Name, selectors.AsReadOnly(), new ReadOnlyDictionary<string, string>(facts));
    }

    /// <summary>
    /// Parses passwd/group style files (name:x:id:...) into id → first name. A missing file gives an
    /// empty map: names are then simply not emitted.
    /// </summary>
    internal static IReadOnlyDictionary<int, string> ReadNameDatabase(string path)
    {
        var map = new Dictionary<int, string>();
        IEnumerable<string> lines;
        try
        {
            lines = File.ReadAllLines(path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return map;
        }

        foreach (string line in lines)
        {
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

    private static string Inv<T>(T value) where T : IFormattable => value.ToString(null, CultureInfo.InvariantCulture);
}
