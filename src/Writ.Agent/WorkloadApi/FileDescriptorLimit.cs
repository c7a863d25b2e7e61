using System.Runtime.InteropServices;

namespace Writ.Agent.WorkloadApi;

/// <summary>
/// The agent's file-descriptor limit (RLIMIT_NOFILE) and what it leaves for Workload API callers. Every open connection
/// holds a socket, and every watched workload instance a pidfd; a caller that makes the agent run out of descriptors
/// must be refused before that happens, not after (an agent at EMFILE cannot save its state, reach the server or accept
/// anyone).
/// </summary>
public static class FileDescriptorLimit
{
    private const int RlimitNofile = 7;   // x86_64, arm64, riscv64 (asm-generic)

    /// <summary>Descriptors kept for the agent itself: runtime, logs, state files, the server connection, attestation reads.</summary>
    public const int Reserve = 256;

    /// <summary>
    /// Raises the soft limit to the hard limit (an unprivileged process may) and returns the soft limit now in force;
    /// null where it cannot be read (not Linux). Never lowers it.
    /// </summary>
    public static long? RaiseToHard()
    {
        if (!OperatingSystem.IsLinux())
        {
            return null;
        }
        try
        {
            if (GetRlimit(RlimitNofile, out var limit) != 0)
            {
                return null;
            }
            if (limit.Current < limit.Max)
            {
                var raised = limit with { Current = limit.Max };
                if (SetRlimit(RlimitNofile, in raised) == 0)
                {
                    return Clamp(limit.Max);
                }
            }
            return Clamp(limit.Current);
        }
        catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException)
        {
            return null;
        }
    }

    /// <summary>The soft limit in force now; null where it cannot be read.</summary>
    public static long? Current()
    {
        if (!OperatingSystem.IsLinux())
        {
            return null;
        }
        try
        {
            return GetRlimit(RlimitNofile, out var limit) == 0 ? Clamp(limit.Current) : null;
        }
        catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException)
        {
            return null;
        }
    }

    /// <summary>
    /// How many Workload API connections — and, separately, how many watched instances' pidfds — a limit of
    /// <paramref name="limit"/> descriptors affords: half of what is left after <see cref="Reserve"/> each, at least 16.
    /// Null (unknown limit): no bound from here.
    /// </summary>
    public static int Budget(long? limit) =>
        limit is not { } l ? int.MaxValue : (int)Math.Clamp((l - Reserve) / 2, 16, int.MaxValue);

    private static long Clamp(ulong value) => value > long.MaxValue ? long.MaxValue : (long)value;

    [StructLayout(LayoutKind.Sequential)]
    private readonly record struct Rlimit(ulong Current, ulong Max);

    [DllImport("libc", EntryPoint = "getrlimit", SetLastError = true)]
    [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
    private static extern int GetRlimit(int resource, out Rlimit limit);

    [DllImport("libc", EntryPoint = "setrlimit", SetLastError = true)]
    [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
    private static extern int SetRlimit(int resource, in Rlimit limit);
}
