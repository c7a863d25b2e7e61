using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Writ.Protocol.Interop;

namespace Writ.Protocol;

/// <summary>
/// A server or agent data dir: created 0700 in one step (never chmod-ed after, which would leave descriptors opened
/// meanwhile), and refused when another user owns it or group/others may write to it — they could replace its keys or
/// its lock file.
/// </summary>
public static class PrivateDirectory
{
    private const UnixFileMode OwnerOnly = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;

    /// <summary>Creates <paramref name="dir"/> (0700) if missing; returns why it is unsafe, or null when it is ours alone.</summary>
    public static string? Ensure(string dir)
    {
        Directory.CreateDirectory(dir, OwnerOnly);
        const uint Mask = 0x2 | 0x8;   // STATX_MODE | STATX_UID
        var buffer = new byte[256];
        if (Libc.Statx(-100, dir, 0, Mask, buffer) != 0)   // AT_FDCWD, following a symlink the operator chose
        {
            return $"cannot inspect '{dir}' (errno {Marshal.GetLastPInvokeError()})";
        }
        var uid = BinaryPrimitives.ReadUInt32LittleEndian(buffer.AsSpan(20));
        var mode = (UnixFileMode)(BinaryPrimitives.ReadUInt16LittleEndian(buffer.AsSpan(28)) & 0xFFF);
        if (uid != Libc.GetEuid())
        {
            return $"'{dir}' is owned by uid {uid}, not by this process (uid {Libc.GetEuid()}): use a data dir of its own, or chown it";
        }
        if ((mode & (UnixFileMode.GroupWrite | UnixFileMode.OtherWrite)) != 0)
        {
            return $"'{dir}' is writable by other users, who could replace its keys or hold its lock: chmod 700 it";
        }
        return null;
    }
}
