using System.Globalization;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;
using Writ.Protocol.Interop;

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
        return TryStatx(Libc.AtFdCwd, path, 0, out identity, out error);
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
            return TryStatx(fd, string.Empty, Libc.AtEmptyPath, out identity, out error);
        }
        finally
        {
            if (added)
            {
                handle.DangerousRelease();
            }
        }
    }

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
        if (Libc.Statx(dirFd, path, flags, StatxBasicStats, buffer) != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            error = $"statx failed with errno {errno} ({Marshal.GetPInvokeErrorMessage(errno)})";
            return false;
        }

        // struct statx's layout (one on every architecture) is on Libc.Statx.
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
}
