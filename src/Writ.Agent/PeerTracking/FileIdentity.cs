using System.Globalization;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Writ.Agent.PeerTracking;

/// <summary>
/// Identity and version of a file as the kernel reports it (statx): device, inode, size and the
/// modification and status-change times in nanoseconds. ctime cannot be set by a user, so a file
/// rewritten in place with its mtime reset still gets a new identity.
/// </summary>
public readonly record struct FileIdentity(ulong Device, ulong Inode, long Size, long MTimeNs, long CTimeNs)
{
    /// <summary>Device and inode only: which file, whatever its content.</summary>
    public string FileKey => string.Create(CultureInfo.InvariantCulture, $"{Device:x}:{Inode}");

    /// <summary>Whether the file is a regular file (not a FIFO, socket, device or directory), from statx's mode.</summary>
    public bool IsRegularFile { get; init; }

    /// <summary>statx of a path, following symlinks (so /proc/&lt;pid&gt;/exe gives the running binary).</summary>
    public static bool TryGet(string path, out FileIdentity identity, out string? error)
    {
        ArgumentNullException.ThrowIfNull(path);
        return TryStatx(AtFdCwd, path, 0, out identity, out error);
    }

    /// <summary>statx of an open file (AT_EMPTY_PATH): the identity of exactly what is being read.</summary>
    public static bool TryGet(SafeFileHandle handle, out FileIdentity identity, out string? error)
    {
        ArgumentNullException.ThrowIfNull(handle);
        bool added = false;
        try
        {
            handle.DangerousAddRef(ref added);
            int fd = checked((int)handle.DangerousGetHandle());
            return TryStatx(fd, string.Empty, AtEmptyPath, out identity, out error);
        }
        finally
        {
            if (added)
            {
                handle.DangerousRelease();
            }
        }
    }

    private const int AtFdCwd = -100;
    private const int AtEmptyPath = 0x1000;
    private const uint StatxBasicStats = 0x7ff;
    private const int StatxBufferSize = 256;

    private static bool TryStatx(int dirFd, string path, int flags, out FileIdentity identity, out string? error)
    {
        identity = default;
        if (!OperatingSystem.IsLinux())
        {
            error = "file identity (statx) is only supported on Linux";
            return false;
        }

        Span<byte> buffer = stackalloc byte[StatxBufferSize];
        if (NativeMethods.Statx(dirFd, path, flags, StatxBasicStats, ref MemoryMarshal.GetReference(buffer)) != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            error = $"statx failed with errno {errno} ({Marshal.GetPInvokeErrorMessage(errno)})";
            return false;
        }

        // struct statx layout (identical on every architecture):
        //   0 u32 mask, 4 u32 blksize, 8 u64 attributes, 16 u32 nlink, 20 u32 uid, 24 u32 gid,
        //   28 u16 mode, 32 u64 ino, 40 u64 size, 48 u64 blocks, 56 u64 attributes_mask,
        //   64 atime, 80 btime, 96 ctime, 112 mtime (each {s64 sec; u32 nsec; s32 pad}),
        //   128 u32 rdev_major, 132 rdev_minor, 136 u32 dev_major, 140 dev_minor.
        ReadOnlySpan<byte> b = buffer;
        ulong ino = MemoryMarshal.Read<ulong>(b[32..]);
        long size = (long)MemoryMarshal.Read<ulong>(b[40..]);
        long ctime = (MemoryMarshal.Read<long>(b[96..]) * 1_000_000_000L) + MemoryMarshal.Read<uint>(b[104..]);
        long mtime = (MemoryMarshal.Read<long>(b[112..]) * 1_000_000_000L) + MemoryMarshal.Read<uint>(b[120..]);
        ulong devMajor = MemoryMarshal.Read<uint>(b[136..]);
        ulong devMinor = MemoryMarshal.Read<uint>(b[140..]);
        ushort mode = MemoryMarshal.Read<ushort>(b[28..]);
        identity = new FileIdentity((devMajor << 32) | devMinor, ino, size, mtime, ctime) { IsRegularFile = (mode & 0xF000) == 0x8000 };
        error = null;
        return true;
    }

    private static class NativeMethods
    {
        [DllImport("libc", EntryPoint = "statx", SetLastError = true)]
        [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
        public static extern int Statx(
            int dirFd,
            [MarshalAs(UnmanagedType.LPUTF8Str)] string path,
            int flags,
            uint mask,
            ref byte buffer);
    }
}
