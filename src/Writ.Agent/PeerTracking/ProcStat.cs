using System.Globalization;

namespace Writ.Agent.PeerTracking;

/// <summary>
/// The fields of <c>/proc/&lt;pid&gt;/stat</c> the agent uses. The command name (field 2) is chosen
/// by the process and may contain spaces and parentheses, so everything is parsed after the LAST
/// ')' of the line; the comm is taken between the first '(' and that last ')'.
/// </summary>
public sealed record ProcStat(int Pid, string Comm, char State, int ParentPid, ulong StartTimeTicks)
{
    /// <summary>True for a process that has exited (zombie or dead) and only awaits reaping.</summary>
    public bool HasExited => State is 'Z' or 'X' or 'x';

    public static bool TryParse(string text, out ProcStat? stat, out string? error)
    {
        ArgumentNullException.ThrowIfNull(text);
        return TryParse(text.AsSpan(), out stat, out error);
    }

    /// <summary>Parses a stat line without copying it (only the comm becomes a string).</summary>
    public static bool TryParse(ReadOnlySpan<char> text, out ProcStat? stat, out string? error)
    {
        stat = null;
        int open = text.IndexOf('(');
        int close = text.LastIndexOf(')');
        if (open <= 0 || close < open)
        {
            error = "the /proc stat line has no '(comm)' field; it is not a Linux /proc/<pid>/stat line";
            return false;
        }

        if (!int.TryParse(text[..open].Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out int pid) || pid <= 0)
        {
            error = "the /proc stat line does not start with a process id";
            return false;
        }

        // Fields after the comm, separated by spaces: field 3 (state) is the first, so field N is number N - 3.
        const int StartTimeIndex = 22 - 3;
        const int ParentPidIndex = 4 - 3;
        ReadOnlySpan<char> rest = text[(close + 1)..];
        ReadOnlySpan<char> state = default, ppidText = default, startText = default;
        int index = 0;
        foreach (Range r in rest.Split(' '))
        {
            ReadOnlySpan<char> field = rest[r].Trim();
            if (field.IsEmpty)
            {
                continue;
            }

            switch (index)
            {
                case 0:
                    state = field;
                    break;
                case ParentPidIndex:
                    ppidText = field;
                    break;
                case StartTimeIndex:
                    startText = field;
                    break;
            }

            index++;
            if (index > StartTimeIndex)
            {
                break;
            }
        }

        if (index <= StartTimeIndex)
        {
            error = $"the /proc stat line of process {pid} has {index + 2} fields, fewer than the 22 needed";
            return false;
        }

        if (state.Length != 1)
        {
            error = $"the /proc stat line of process {pid} has an invalid state field";
            return false;
        }

        if (!int.TryParse(ppidText, NumberStyles.None, CultureInfo.InvariantCulture, out int ppid) ||
            !ulong.TryParse(startText, NumberStyles.None, CultureInfo.InvariantCulture, out ulong start))
        {
            error = $"the /proc stat line of process {pid} has a non-numeric parent pid or start time";
            return false;
        }

        stat = new ProcStat(pid, text[(open + 1)..close].ToString(), state[0], ppid, start);
        error = null;
        return true;
    }

    /// <summary>Reads and parses /proc/&lt;pid&gt;/stat; a missing process is an error, not an exception.</summary>
    public static bool TryRead(IProcFs proc, int pid, out ProcStat? stat, out string? error)
    {
        ArgumentNullException.ThrowIfNull(proc);
        stat = null;
        if (pid <= 0)
        {
            error = $"process id {pid} is not valid; a peer process id must be positive";
            return false;
        }

        switch (ProcFile.Read(ProcFs.PidPath(proc, pid, "stat"), out ReadOnlySpan<char> text))
        {
            case ProcReadStatus.Missing:
                error = $"process {pid} does not exist (it exited); let the client reconnect";
                return false;
            case ProcReadStatus.Failed:
                error = $"could not read /proc stat of process {pid} ({ProcFile.ErrorName}); the agent needs to read /proc/<pid>/stat";
                return false;
        }

        if (!TryParse(text.TrimEnd('\n'), out stat, out error))
        {
            return false;
        }

        if (stat!.Pid != pid)
        {
            error = $"/proc stat of process {pid} names process {stat.Pid}; the proc tree is inconsistent";
            stat = null;
            return false;
        }

        return true;
    }
}
