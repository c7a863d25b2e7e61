using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Writ.Protocol.Interop;

namespace Writ.Protocol;

/// <summary>
/// An exclusive advisory lock (flock) on a lock file of our own, held until disposed or the process ends — the kernel
/// releases it even on SIGKILL, so a crash never leaves a stale lock. One server per data dir and per SQLite file, one
/// agent per agent data dir. The lock is never taken on the data dir or the database file itself: any user who can open
/// those (a descriptor kept from when a dir was 0755, a reader with a shared flock) could then hold it and keep Writ
/// from starting. The lock file is created 0600, opened without following a symlink, and must be owned by us.
/// </summary>
public sealed class ExclusiveLock : IDisposable
{
    /// <summary>The lock file inside a server or agent data dir.</summary>
    public const string DataDirLockFile = "writ.lock";

    private const int ReadWrite = 2;          // O_RDWR
    private const int Create = 0x40;          // O_CREAT
    private const int NoFollow = 0x20000;     // O_NOFOLLOW
    private const int CloseOnExec = 0x80000;  // O_CLOEXEC
    private const int OwnerReadWrite = 0x180; // 0600
    private const int LockExclusive = 2;      // LOCK_EX
    private const int NonBlocking = 4;        // LOCK_NB
    private const int WouldBlock = 11;        // EWOULDBLOCK
    private const int Interrupted = 4;        // EINTR
    private const int Loop = 40;              // ELOOP: the last component is a symlink

    private int _fd;

    private ExclusiveLock(string path, int fd)
    {
        Path = path;
        _fd = fd;
    }

    public string Path { get; }

    /// <summary>
    /// Takes the lock on <paramref name="lockFile"/> (created 0600 if missing), or returns null when another process (or
    /// another holder in this one) has it. A lock file that is a symlink, is owned by another user or cannot be opened
    /// throws <see cref="IOException"/>.
    /// </summary>
    public static ExclusiveLock? TryAcquire(string lockFile)
    {
        var fd = Libc.Open(lockFile, ReadWrite | Create | NoFollow | CloseOnExec, OwnerReadWrite);
        if (fd < 0)
        {
            var e = Marshal.GetLastPInvokeError();
            throw new IOException(e == Loop
                ? $"the lock file '{lockFile}' is a symlink: remove it (Writ creates its own)"
                : $"cannot open the lock file '{lockFile}' (errno {e}): check that its directory exists and is writable");
        }
        var owner = OwnerOf(fd);
        if (owner != Libc.GetEuid())
        {
            Libc.Close(fd);
            throw new IOException($"the lock file '{lockFile}' is owned by uid {owner}, not by this process: remove it (Writ creates its own)");
        }
        while (true)
        {
            if (Libc.Flock(fd, LockExclusive | NonBlocking) == 0)
            {
                return new ExclusiveLock(lockFile, fd);
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
            throw new IOException($"cannot lock '{lockFile}' (errno {errno})");
        }
    }

    /// <summary>The owner uid of an open descriptor (statx with AT_EMPTY_PATH: the buffer's layout is the same everywhere).</summary>
    private static long OwnerOf(int fd)
    {
        const int EmptyPath = 0x1000;   // AT_EMPTY_PATH
        const uint Uid = 0x8;           // STATX_UID
        var buffer = new byte[256];
        return Libc.Statx(fd, "", EmptyPath, Uid, buffer) == 0 ? BinaryPrimitives.ReadUInt32LittleEndian(buffer.AsSpan(20)) : -1;
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
