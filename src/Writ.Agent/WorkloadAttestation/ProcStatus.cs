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
        return TryParse(text.AsSpan(), out status, out error);
    }

    /// <summary>Parses the text of a status file without copying its lines (only the name becomes a string).</summary>
    public static bool TryParse(ReadOnlySpan<char> text, out ProcStatus? status, out string? error)
    {
        status = null;
        string? name = null;
        int ppid = -1;
        bool ppidSeen = false;
        int[]? uids = null;
        int[]? gids = null;
        int[]? groups = null;
        bool uidsSeen = false, gidsSeen = false, groupsSeen = false;
        foreach (ReadOnlySpan<char> line in text.EnumerateLines())
        {
            int colon = line.IndexOf(':');
            if (colon <= 0)
            {
                continue;
            }

            ReadOnlySpan<char> key = line[..colon];
            ReadOnlySpan<char> value = line[(colon + 1)..];
            // The first occurrence wins; the kernel writes each key once and Name (the only
            // process-controlled value) has its newlines escaped, so a later duplicate is forged.
            switch (key)
            {
                case "Name":
                    name ??= value.Trim().ToString();
                    break;
                case "PPid":
                    if (!ppidSeen)
                    {
                        ppidSeen = true;
                        if (!int.TryParse(value.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out ppid))
                        {
                            ppid = -1;
                        }
                    }

                    break;
                case "Uid":
                    if (!uidsSeen)
                    {
                        uidsSeen = true;
                        uids = ParseIds(value, 4);
                    }

                    break;
                case "Gid":
                    if (!gidsSeen)
                    {
                        gidsSeen = true;
                        gids = ParseIds(value, 4);
                    }

                    break;
                case "Groups":
                    if (!groupsSeen)
                    {
                        groupsSeen = true;
                        groups = ParseIds(value, -1);
                    }

                    break;
            }
        }

        if (uids is null || gids is null)
        {
            error = $"{WorkloadAttestationCodes.ProcMalformed}: the /proc status has no valid Uid or Gid line; it is not a Linux /proc/<pid>/status file";
            return false;
        }

        status = new ProcStatus(name ?? string.Empty, ppid, uids, gids, groups ?? []);
        error = null;
        return true;
    }

    public static bool TryRead(IProcFs proc, int pid, out ProcStatus? status, out string? error)
    {
        ArgumentNullException.ThrowIfNull(proc);
        status = null;
        switch (ProcFile.Read(ProcFs.PidPath(proc, pid, "status"), out ReadOnlySpan<char> text))
        {
            case ProcReadStatus.Missing:
                error = $"process {pid} does not exist (it exited); let the client reconnect";
                return false;
            case ProcReadStatus.Failed:
                error = $"could not read /proc status of process {pid} ({ProcFile.ErrorName}); the agent needs to read /proc/<pid>/status";
                return false;
        }

        return TryParse(text, out status, out error);
    }

    private static int[]? ParseIds(ReadOnlySpan<char> value, int expected)
    {
        Span<int> found = stackalloc int[64];
        List<int>? many = null;
        int count = 0;
        foreach (Range r in value.SplitAny(' ', '\t'))
        {
            ReadOnlySpan<char> part = value[r];
            if (part.IsEmpty)
            {
                continue;
            }

            if (!int.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out int id))
            {
                return null;
            }

            if (count < found.Length)
            {
                found[count] = id;
            }
            else
            {
                many ??= [.. found];
                many.Add(id);
            }

            count++;
        }

        if (expected > 0 && count != expected)
        {
            return null;
        }

        return many is not null ? [.. many] : found[..count].ToArray();
    }
}
