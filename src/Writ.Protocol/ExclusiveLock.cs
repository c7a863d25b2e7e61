using System.Runtime.InteropServices;

namespace Writ.Protocol;

/// <summary>
/// An exclusive advisory lock (flock) on a directory or file, held until disposed or the process ends — the kernel
/// releases it even on SIGKILL, so a crash never leaves a stale lock. One server per data dir and per SQLite file, one
/// agent per agent data dir. Creates nothing: the lock is taken on the directory (or database file) itself.
/// </summary>
public sealed class ExclusiveLock : IDisposable
{
    private const int ReadOnly = 0;         // O_RDONLY
    private const int CloseOnExec = 0x80000; // O_CLOEXEC
    private const int LockExclusive = 2;    // LOCK_EX
    private const int NonBlocking = 4;      // LOCK_NB
    private const int WouldBlock = 11;      // EWOULDBLOCK
    private const int Interrupted = 4;      // EINTR

    private int _fd;

    private ExclusiveLock(string path, int fd)
    {
        Path = path;
        _fd = fd;
    }

    public string Path { get; }

    /// <summary>
    /// Takes the lock, or returns null when another process (or another holder in this one) has it. A path that cannot
    /// be opened throws <see cref="IOException"/>.
    /// </summary>
    public static ExclusiveLock? TryAcquire(string path)
    {
        var fd = Libc.Open(path, ReadOnly | CloseOnExec);
        if (fd < 0)
        {
            throw new IOException($"cannot open '{path}' to lock it (errno {Marshal.GetLastPInvokeError()}): check that it exists and is readable");
        }
        while (true)
        {
            if (Libc.Flock(fd, LockExclusive | NonBlocking) == 0)
            {
                return new ExclusiveLock(path, fd);
            }
            var errno = Marshal.GetLastPInvokeError();
            if (errno == Interrupted)
            {
                continue;
            }
            Libc.Close(fd);
            if (errno == WouldBlock)
            {
                return null;
            }
            throw new IOException($"cannot lock '{path}' (errno {errno})");
        }
    }

    public void Dispose()
    {
        var fd = Interlocked.Exchange(ref _fd, -1);
        if (fd >= 0)
        {
            Libc.Close(fd);   // closing the last descriptor releases the lock
        }
    }
}
