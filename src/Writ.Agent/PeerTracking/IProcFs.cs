namespace Writ.Agent.PeerTracking;

/// <summary>Where procfs is mounted: "/proc" in production; tests may point at a fake tree.</summary>
public interface IProcFs
{
    string Root { get; }
}

/// <summary>The procfs seam: <see cref="Host"/> is the real /proc.</summary>
public sealed class ProcFs : IProcFs
{
    public ProcFs(string root)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(root);
        Root = root;
    }

    /// <summary>The host's /proc.</summary>
    public static ProcFs Host { get; } = new("/proc");

    public string Root { get; }

    /// <summary>Path of a file under /proc/&lt;pid&gt;/.</summary>
    public static string PidPath(IProcFs proc, int pid, string file)
    {
        ArgumentNullException.ThrowIfNull(proc);
        return Path.Combine(proc.Root, pid.ToString(System.Globalization.CultureInfo.InvariantCulture), file);
    }
}
