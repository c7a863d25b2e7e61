using System.Runtime.InteropServices;

namespace Writ.Protocol.Interop;

/// <summary>
/// Writ's one set of libc bindings: the calls .NET has no API for (statx for owner, inode and ctime; flock; /proc reads
/// without a FileStream; pidfd signals and poll; realpath; dup/close of a listening descriptor). Every project uses
/// these instead of declaring its own. Calls that set errno read it with <see cref="Marshal.GetLastPInvokeError"/>.
/// </summary>
public static partial class Libc
{
    /// <summary>AT_FDCWD: a path relative to the working directory.</summary>
    public const int AtFdCwd = -100;

    /// <summary>AT_SYMLINK_NOFOLLOW: the path itself, not what a symlink there points to.</summary>
    public const int AtSymlinkNoFollow = 0x100;

    /// <summary>AT_EMPTY_PATH: statx of the descriptor itself (path "").</summary>
    public const int AtEmptyPath = 0x1000;

    /// <summary>
    /// statx(2). The buffer (256 bytes) has one layout on every architecture, unlike struct stat: 0 u32 mask,
    /// 4 u32 blksize, 8 u64 attributes, 16 u32 nlink, 20 u32 uid, 24 u32 gid, 28 u16 mode, 32 u64 ino, 40 u64 size,
    /// 48 u64 blocks, 56 u64 attributes_mask, 64 atime, 80 btime, 96 ctime, 112 mtime (each {s64 sec; u32 nsec;
    /// s32 pad}), 128 u32 rdev_major, 132 rdev_minor, 136 u32 dev_major, 140 dev_minor.
    /// </summary>
    [LibraryImport("libc", EntryPoint = "statx", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    public static partial int Statx(int dirfd, string path, int flags, uint mask, Span<byte> buffer);

    [LibraryImport("libc", EntryPoint = "lstat", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    public static partial int LStat(string path, Span<byte> buffer);

    [LibraryImport("libc", EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    public static partial int Open(string path, int flags, int mode);

    [LibraryImport("libc", EntryPoint = "read", SetLastError = true)]
    public static partial nint Read(int fd, ref byte buffer, nint count);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    public static partial int Close(int fd);

    [LibraryImport("libc", EntryPoint = "dup", SetLastError = true)]
    public static partial int Dup(int fd);

    [LibraryImport("libc", EntryPoint = "flock", SetLastError = true)]
    public static partial int Flock(int fd, int operation);

    [LibraryImport("libc", EntryPoint = "geteuid")]
    public static partial uint GetEuid();

    /// <summary>realpath(3) with a NULL buffer: the result is malloc'ed; give it to <see cref="Free"/>. 0 on failure.</summary>
    [LibraryImport("libc", EntryPoint = "realpath", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    public static partial nint RealPath(string path, nint resolved);

    [LibraryImport("libc", EntryPoint = "free")]
    public static partial void Free(nint p);

    [LibraryImport("libc", EntryPoint = "pidfd_send_signal", SetLastError = true)]
    public static partial int PidfdSendSignal(int pidfd, int sig, nint info, uint flags);

    [LibraryImport("libc", EntryPoint = "poll", SetLastError = true)]
    public static partial int Poll(ref PollFd fds, nuint count, int timeoutMs);
}

/// <summary>struct pollfd, for <see cref="Libc.Poll"/>.</summary>
[StructLayout(LayoutKind.Sequential)]
public record struct PollFd(int Fd, short Events, short Revents);
