using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Writ.Protocol.Interop;

namespace Writ.Cli.CommandLine;

/// <summary>What .NET does not say about a path: its owner, and why it cannot be inspected (errno), e.g. a directory above it not searchable.</summary>
public static class UnixFile
{
    public const int EAcces = 13;
    public const int ENoEnt = 2;

    /// <summary>stat(2) following symlinks: owner uid and permission bits, or false and the errno.</summary>
    public static bool TryStat(string path, out uint uid, out UnixFileMode mode, out int errno) =>
        TryStat(path, followLinks: true, out uid, out mode, out _, out errno);

    /// <summary>lstat(2): the path itself, not what a symlink there points to; <paramref name="isLink"/> says whether it is one.</summary>
    public static bool TryLStat(string path, out uint uid, out bool isLink, out int errno) =>
        TryStat(path, followLinks: false, out uid, out _, out isLink, out errno);

    private static bool TryStat(string path, bool followLinks, out uint uid, out UnixFileMode mode, out bool isLink, out int errno)
    {
        // statx's buffer has the same layout on every architecture (unlike struct stat): uid at 20, mode at 28.
        var buffer = new byte[256];
        const uint Mask = 0x1 | 0x2 | 0x8;   // STATX_TYPE | STATX_MODE | STATX_UID
        if (Libc.Statx(Libc.AtFdCwd, path, followLinks ? 0 : Libc.AtSymlinkNoFollow, Mask, buffer) != 0)
        {
            errno = Marshal.GetLastPInvokeError();
            uid = 0;
            mode = 0;
            isLink = false;
            return false;
        }
        errno = 0;
        uid = BinaryPrimitives.ReadUInt32LittleEndian(buffer.AsSpan(20));
        var rawMode = BinaryPrimitives.ReadUInt16LittleEndian(buffer.AsSpan(28));
        mode = (UnixFileMode)(rawMode & 0xFFF);
        isLink = (rawMode & 0xF000) == 0xA000;   // S_IFLNK
        return true;
    }

    public static string? RealPath(string path)
    {
        var p = Libc.RealPath(path, 0);
        if (p == 0)
        {
            return null;
        }
        try
        {
            return Marshal.PtrToStringUTF8(p);
        }
        finally
        {
            Libc.Free(p);
        }
    }

    public static string Describe(int errno) => errno switch
    {
        EAcces => "permission denied",
        ENoEnt => "no such file or directory",
        _ => $"errno {errno}",
    };
}
