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
        stat = null;
        int open = text.IndexOf('(', StringComparison.Ordinal);
        int close = text.LastIndexOf(')');
        if (open <= 0 || close < open)
        {
            error = "the /proc stat line has no '(comm)' field; it is not a Linux /proc/<pid>/stat line";
            return false;
        }

        if (!int.TryParse(text.AsSpan(0, open).Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out int pid) || pid <= 0)
        {
            error = "the /proc stat line does not start with a process id";
            return false;
        }

        string comm = text[(open + 1)..close];
        string[] fields = text[(close + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        // fields[0] is field 3 (state), so field N is fields[N - 3]; starttime is field 22.
        const int StartTimeIndex = 22 - 3;
        const int ParentPidIndex = 4 - 3;
        if (fields.Length <= StartTimeIndex)
        {
            error = $"the /proc stat line of process {pid} has {fields.Length + 2} fields, fewer than the 22 needed";
            return false;
        }

        if (fields[0].Length != 1)
        {
            error = $"the /proc stat line of process {pid} has an invalid state field";
            return false;
        }

        if (!int.TryParse(fields[ParentPidIndex], NumberStyles.None, CultureInfo.InvariantCulture, out int ppid) ||
            !ulong.TryParse(fields[StartTimeIndex], NumberStyles.None, CultureInfo.InvariantCulture, out ulong start))
        {
            error = $"the /proc stat line of process {pid} has a non-numeric parent pid or start time";
            return false;
        }

        stat = new ProcStat(pid, comm, fields[0][0], ppid, start);
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

        string text;
        try
        {
            text = File.ReadAllText(ProcFs.PidPath(proc, pid, "stat"));
        }
        catch (Exception ex) when (ex is FileNotFoundException or DirectoryNotFoundException)
        {
            error = $"process {pid} does not exist (it exited); let the client reconnect";
            return false;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            error = $"could not read /proc stat of process {pid} ({ex.GetType().Name}); the agent needs to read /proc/<pid>/stat";
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
