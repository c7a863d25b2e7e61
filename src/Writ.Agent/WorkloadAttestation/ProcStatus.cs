using System.Globalization;
using Writ.Agent.PeerTracking;

namespace Writ.Agent.WorkloadAttestation;

/// <summary>The fields of /proc/&lt;pid&gt;/status the unix attestor uses.</summary>
public sealed record ProcStatus(string Name, int ParentPid, IReadOnlyList<int> Uids, IReadOnlyList<int> Gids, IReadOnlyList<int> SupplementaryGids)
{
    /// <summary>Real, effective, saved and filesystem ids, in that order (the kernel's order).</summary>
    public int RealUid => Uids[0];

    public int EffectiveUid => Uids[1];

    public int RealGid => Gids[0];

    public int EffectiveGid => Gids[1];

    public static bool TryParse(string text, out ProcStatus? status, out string? error)
    {
        ArgumentNullException.ThrowIfNull(text);
        status = null;
        string? name = null;
        int ppid = -1;
        int[]? uids = null;
        int[]? gids = null;
        int[]? groups = null;
        foreach (string line in text.Split('\n'))
        {
            int colon = line.IndexOf(':', StringComparison.Ordinal);
            if (colon <= 0)
            {
                continue;
            }

            string key = line[..colon];
            string value = line[(colon + 1)..];
            // The first occurrence wins; the kernel writes each key once and Name (the only
            // process-controlled value) has its newlines escaped, so a later duplicate is forged.
            switch (key)
            {
                case "Name":
                    name ??= value.Trim();
                    break;
                case "PPid":
                    if (ppid < 0 && !int.TryParse(value.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out ppid))
                    {
                        ppid = -1;
                    }

                    break;
                case "Uid":
                    uids ??= ParseIds(value, 4);
                    break;
                case "Gid":
                    gids ??= ParseIds(value, 4);
                    break;
                case "Groups":
                    groups ??= ParseIds(value, -1);
                    break;
            }
        }

        if (uids is null || gids is null)
        {
            error = "the /proc status has no valid Uid or Gid line; it is not a Linux /proc/<pid>/status file";
            return false;
        }

        status = new ProcStatus(name ?? string.Empty, ppid, uids, gids, groups ?? []);
        error = null;
        return true;
    }

    public static bool TryRead(IProcFs proc, int pid, out ProcStatus? status, out string? error)
    {
        ArgumentNullException.ThrowIfNull(proc);
        string text;
        try
        {
            text = File.ReadAllText(ProcFs.PidPath(proc, pid, "status"));
        }
        catch (Exception ex) when (ex is FileNotFoundException or DirectoryNotFoundException)
        {
            status = null;
            error = $"process {pid} does not exist (it exited); let the client reconnect";
            return false;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            status = null;
            error = $"could not read /proc status of process {pid} ({ex.GetType().Name}); the agent needs to read /proc/<pid>/status";
            return false;
        }

        return TryParse(text, out status, out error);
    }

    private static int[]? ParseIds(string value, int expected)
    {
        string[] parts = value.Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries);
        if (expected > 0 && parts.Length != expected)
        {
            return null;
        }

        var ids = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
        {
            if (!int.TryParse(parts[i], NumberStyles.None, CultureInfo.InvariantCulture, out ids[i]))
            {
                return null;
            }
        }

        return ids;
    }
}
