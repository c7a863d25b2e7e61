namespace Writ.Agent.PeerTracking;

/// <summary>Where procfs is mounted: "/proc" in production; tests may point at a fake tree.</summary>
public interface IProcFs
{
    string Root { get; }
}

/// <summary>The procfs seam: <see cref="Host"/> is the real /proc.</summary>
public sealed class ProcFs : IProcFs
{
    private string? _bootId;

    public ProcFs(string root)
        : this(root, cacheBootId: false)
    {
    }

    private ProcFs(string root, bool cacheBootId)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(root);
        Root = root;
        CachesBootId = cacheBootId;
    }

    /// <summary>
    /// The host's /proc. Its boot id is read once: it names the running kernel's boot and cannot change while this
    /// process runs (a reboot ends it). Trees made with the public constructor (tests) are re-read every time.
    /// </summary>
    public static ProcFs Host { get; } = new("/proc", cacheBootId: true);

    public string Root { get; }

    /// <summary>Whether the boot id is read once and kept (only for <see cref="Host"/>).</summary>
    public bool CachesBootId { get; }

    /// <summary>The boot id once read, when <see cref="CachesBootId"/>.</summary>
    internal string? CachedBootId
    {
        get => Volatile.Read(ref _bootId);
        set
        {
            if (CachesBootId)
            {
                Volatile.Write(ref _bootId, value);
            }
        }
    }

    /// <summary>Path of a file under /proc/&lt;pid&gt;/.</summary>
    public static string PidPath(IProcFs proc, int pid, string file)
    {
        ArgumentNullException.ThrowIfNull(proc);
        return Path.Combine(proc.Root, pid.ToString(System.Globalization.CultureInfo.InvariantCulture), file);
    }
}
