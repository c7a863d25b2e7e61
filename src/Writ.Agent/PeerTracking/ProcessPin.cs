using System.Globalization;

namespace Writ.Agent.PeerTracking;

/// <summary>
/// Pins a process: its pid plus its start time (field 22 of /proc/&lt;pid&gt;/stat, clock ticks since
/// boot) plus the boot id, so a recycled pid — or a pid from an earlier boot — is never mistaken for
/// the pinned process. <see cref="Executable"/> additionally records which file the process was
/// running (device:inode of /proc/&lt;pid&gt;/exe) when pinned, so an <c>execve</c> after pinning is
/// detected too (exec keeps both pid and start time).
/// </summary>
public sealed record ProcessPin(int Pid, ulong StartTimeTicks, string BootId)
{
    /// <summary>device:inode of the executable when pinned; null if it could not be read (kernel threads).</summary>
    public string? Executable { get; init; }

    public static bool TryCreate(IProcFs proc, int pid, out ProcessPin? pin, out string? error) =>
        TryCreate(proc, pid, owner: null, out pin, out error);

    /// <summary>
    /// Pins <paramref name="pid"/>. With <paramref name="owner"/> — a pidfd of the process that connected — the pin is
    /// also proven to be of that process: after /proc is read, the owner must still hold the pid (not reaped), and a
    /// live process's pid is unique, so every read before was of it. That makes the second stat read (the check without
    /// a pidfd) unnecessary.
    /// </summary>
    public static bool TryCreate(IProcFs proc, int pid, PeerProcessHandle? owner, out ProcessPin? pin, out string? error)
    {
        ArgumentNullException.ThrowIfNull(proc);
        pin = null;
        if (!TryReadBootId(proc, out string? bootId, out error))
        {
            return false;
        }

        if (owner is not null)
        {
            if (!ProcStat.TryRead(proc, pid, out ProcStat? stat, out error))
            {
                return false;
            }

            if (stat!.HasExited)
            {
                error = $"process {pid} has already exited; let the client reconnect";
                return false;
            }

            string? exe = FileIdentity.TryGet(ProcFs.PidPath(proc, pid, "exe"), out FileIdentity exeId, out _) ? exeId.FileKey : null;
            if (!owner.StillHolds(pid))
            {
                error = $"the process that connected as pid {pid} has exited and the pid may belong to another process; let the client reconnect";
                return false;
            }

            pin = new ProcessPin(pid, stat.StartTimeTicks, bootId!) { Executable = exe };
            return true;
        }

        // Read the executable identity between two reads of stat: if the start time is the same
        // before and after, the identity belongs to the pinned process and not to a successor.
        if (!ProcStat.TryRead(proc, pid, out ProcStat? before, out error))
        {
            return false;
        }

        if (before!.HasExited)
        {
            error = $"process {pid} has already exited; let the client reconnect";
            return false;
        }

        string? executable = FileIdentity.TryGet(ProcFs.PidPath(proc, pid, "exe"), out FileIdentity id, out _) ? id.FileKey : null;
        if (!ProcStat.TryRead(proc, pid, out ProcStat? after, out error))
        {
            return false;
        }

        if (after!.StartTimeTicks != before.StartTimeTicks || after.HasExited)
        {
            error = $"process {pid} exited or was replaced while being pinned; let the client reconnect";
            return false;
        }

        pin = new ProcessPin(pid, before.StartTimeTicks, bootId!) { Executable = executable };
        error = null;
        return true;
    }

    /// <summary>
    /// True only if pid <see cref="Pid"/> is still the live process that was pinned: same boot, same
    /// start time, not a zombie, and (when recorded) still running the same executable file.
    /// </summary>
    public bool IsSameProcess(IProcFs proc) => Verify(proc, out _);

    /// <summary>Like <see cref="IsSameProcess"/>, with the reason when it is not.</summary>
    public bool Verify(IProcFs proc, out string? reason) => Verify(proc, owner: null, out reason);

    /// <summary>
    /// Like <see cref="Verify(IProcFs, out string?)"/>; with <paramref name="owner"/> (the pidfd the pin was made with)
    /// "not exited" is asked of the kernel through the pidfd (one poll, no /proc read): a process that has not exited
    /// has not been reaped, so it still holds its pid and its start time.
    /// </summary>
    public bool Verify(IProcFs proc, PeerProcessHandle? owner, out string? reason)
    {
        ArgumentNullException.ThrowIfNull(proc);
        if (!TryReadBootId(proc, out string? bootId, out reason))
        {
            return false;
        }

        if (!string.Equals(bootId, BootId, StringComparison.Ordinal))
        {
            reason = $"process {Pid} was pinned in another boot";
            return false;
        }

        if (owner is not null)
        {
            if (owner.HasExited)
            {
                reason = "the connecting process exited";
                return false;
            }

            return SameExecutable(proc, out reason);
        }

        if (!ProcStat.TryRead(proc, Pid, out ProcStat? stat, out reason))
        {
            return false;
        }

        if (stat!.StartTimeTicks != StartTimeTicks)
        {
            reason = $"pid {Pid} now belongs to another process (start time changed)";
            return false;
        }

        if (stat.HasExited)
        {
            reason = $"process {Pid} has exited";
            return false;
        }

        return SameExecutable(proc, out reason);
    }

    private bool SameExecutable(IProcFs proc, out string? reason)
    {
        bool readable = FileIdentity.TryGet(ProcFs.PidPath(proc, Pid, "exe"), out FileIdentity id, out _);
        if (Executable is not null && !readable)
        {
            reason = $"process {Pid} no longer has a readable executable (it exited)";
            return false;
        }

        // An executable that was unreadable when pinned (e.g. a non-dumpable process and an agent
        // without CAP_SYS_PTRACE) and is readable now means an exec happened in between.
        if (readable && !string.Equals(id.FileKey, Executable, StringComparison.Ordinal))
        {
            reason = $"process {Pid} executed another program after it was pinned";
            return false;
        }

        reason = null;
        return true;
    }

    public override string ToString() =>
        string.Create(CultureInfo.InvariantCulture, $"pid {Pid} (start {StartTimeTicks}, boot {BootId})");

    private static bool TryReadBootId(IProcFs proc, out string? bootId, out string? error)
    {
        var host = proc as ProcFs;
        if (host?.CachedBootId is { } cached)
        {
            bootId = cached;
            error = null;
            return true;
        }

        string path = Path.Combine(proc.Root, "sys", "kernel", "random", "boot_id");
        if (ProcFile.Read(path, out ReadOnlySpan<char> text) != ProcReadStatus.Ok)
        {
            bootId = null;
            error = $"could not read the boot id from {proc.Root}/sys/kernel/random/boot_id ({ProcFile.ErrorName}); mount procfs for the agent";
            return false;
        }

        text = text.Trim();
        if (text.Length == 0)
        {
            error = $"the boot id in {proc.Root}/sys/kernel/random/boot_id is empty; mount procfs for the agent";
            bootId = null;
            return false;
        }

        bootId = text.ToString();
        if (host is not null)
        {
            host.CachedBootId = bootId;
        }

        error = null;
        return true;
    }
}
