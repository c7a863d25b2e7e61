using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;
using Writ.Agent.PeerTracking;

namespace Writ.Agent.Instances;

/// <summary>
/// Notices a process's exit the moment it happens: a pidfd (pidfd_open, Linux 5.3+) becomes readable when its
/// process exits. One thread polls every registered pidfd (at most 100 ms until a newly registered one is included)
/// and calls back with the key of each exited process. Where pidfds are unavailable <see cref="Supported"/> is false
/// and exits are noticed by the tracker's periodic re-check instead.
/// </summary>
public sealed class PidfdWatcher : IDisposable
{
    private const int PidfdOpenSyscall = 434;   // the same number on every Linux architecture (unified syscall table)
    private const short PollIn = 0x1;

    /// <summary>At most this many pidfds are held by default; beyond, exits are noticed by the periodic re-check.</summary>
    public const int MaxWatched = 16_384;
    private readonly Lock _lock = new();
    private readonly Dictionary<string, SafeFileHandle> _fds = new(StringComparer.Ordinal);
    private readonly Action<string> _exited;
    private readonly Thread? _thread;
    private volatile bool _stop;

    private readonly int _max;

    /// <param name="maxWatched">At most this many pidfds (default <see cref="MaxWatched"/>); the agent lowers it to what its file-descriptor limit affords.</param>
    public PidfdWatcher(Action<string> exited, int maxWatched = MaxWatched)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxWatched, 0);
        _exited = exited;
        _max = maxWatched;
        Supported = Probe(out var reason);
        UnsupportedReason = reason;
        if (Supported)
        {
            _thread = new Thread(Loop) { IsBackground = true, Name = "writ-pidfd-watch" };
            _thread.Start();
        }
    }

    public bool Supported { get; }

    public string? UnsupportedReason { get; }

    public int Count
    {
        get
        {
            lock (_lock)
            {
                return _fds.Count;
            }
        }
    }

    /// <summary>
    /// Watches the process pinned by <paramref name="pin"/>. The pin is verified <em>after</em> the pidfd is open, so
    /// the pidfd is of the pinned process and not of a later owner of its pid. False if it is already gone (or
    /// pidfds are unsupported).
    /// </summary>
    public bool Watch(string key, ProcessPin pin, IProcFs proc)
    {
        ArgumentNullException.ThrowIfNull(pin);
        if (!Supported || _stop || Count >= _max)
        {
            return false;
        }
        var fd = PidfdOpen(pin.Pid);
        if (fd.IsInvalid)
        {
            fd.Dispose();
            return false;
        }
        if (!ProcessPin.TryCreate(proc, pin.Pid, out var now, out _) || now!.StartTimeTicks != pin.StartTimeTicks)
        {
            fd.Dispose();
            return false;
        }
        lock (_lock)
        {
            if (_fds.Remove(key, out var old))
            {
                old.Dispose();
            }
            _fds[key] = fd;
        }
        return true;
    }

    public void Unwatch(string key)
    {
        lock (_lock)
        {
            if (_fds.Remove(key, out var fd))
            {
                fd.Dispose();
            }
        }
    }

    private void Loop()
    {
        while (!_stop)
        {
            List<(string Key, SafeFileHandle Fd)> watched;
            lock (_lock)
            {
                watched = [.. _fds.Select(p => (p.Key, p.Value))];
            }
            if (watched.Count == 0)
            {
                Thread.Sleep(100);   // nothing to watch: idle until a registration (bounded wait, no busy loop)
                continue;
            }
            var refs = new bool[watched.Count];
            var polls = new PollFd[watched.Count];
            try
            {
                for (var i = 0; i < watched.Count; i++)
                {
                    // AddRef: a concurrent Unwatch may dispose the handle; the descriptor stays open until released.
                    watched[i].Fd.DangerousAddRef(ref refs[i]);
                    polls[i] = new PollFd { Fd = (int)watched[i].Fd.DangerousGetHandle(), Events = PollIn };
                }
                var n = Poll(polls, (nuint)polls.Length, 100);
                if (n <= 0)
                {
                    continue;
                }
                for (var i = 0; i < polls.Length; i++)
                {
                    if (polls[i].Revents != 0)
                    {
                        var key = watched[i].Key;
                        lock (_lock)
                        {
                            if (_fds.TryGetValue(key, out var fd) && fd == watched[i].Fd)
                            {
                                _fds.Remove(key);
                                fd.Dispose();
                            }
                        }
                        ThreadPool.QueueUserWorkItem(static s => s.cb(s.key), (cb: _exited, key), preferLocal: false);
                    }
                }
            }
            finally
            {
                for (var i = 0; i < watched.Count; i++)
                {
                    if (refs[i])
                    {
                        watched[i].Fd.DangerousRelease();
                    }
                }
            }
        }
    }

    private static bool Probe(out string? reason)
    {
        if (!OperatingSystem.IsLinux())
        {
            reason = "pidfds need Linux";
            return false;
        }
        try
        {
            using var self = PidfdOpen(Environment.ProcessId);
            if (self.IsInvalid)
            {
                reason = $"pidfd_open failed (errno {Marshal.GetLastPInvokeError()}); Linux 5.3+ is needed";
                return false;
            }
        }
        catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException)
        {
            reason = "libc has no syscall entry point";
            return false;
        }
        reason = null;
        return true;
    }

    private static SafeFileHandle PidfdOpen(int pid)
    {
        var fd = Syscall(PidfdOpenSyscall, pid, 0);
        return new SafeFileHandle((IntPtr)(fd < 0 ? -1 : fd), ownsHandle: true);
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct PollFd
    {
        public int Fd;
        public short Events;
        public short Revents;
    }

    [DllImport("libc", EntryPoint = "syscall", SetLastError = true)]
    [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
    private static extern long Syscall(long number, int pid, uint flags);

    [DllImport("libc", EntryPoint = "poll", SetLastError = true)]
    [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
    private static extern int Poll([In, Out] PollFd[] fds, nuint count, int timeoutMs);

    public void Dispose()
    {
        _stop = true;
        _thread?.Join(TimeSpan.FromSeconds(2));
        lock (_lock)
        {
            foreach (var fd in _fds.Values)
            {
                fd.Dispose();
            }
            _fds.Clear();
        }
    }
}
