using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using Microsoft.Win32.SafeHandles;

namespace Writ.Agent.WorkloadAttestation;

/// <summary>What the filesystem under an executable means for trusting its hash, from best to worst.</summary>
internal enum StorageKind
{
    /// <summary>Every in-place write moves the file's ctime, including the first write through a new shared mapping (page_mkwrite): statx sees a rewrite.</summary>
    TimesMove,

    /// <summary>tmpfs, ramfs, hugetlbfs (and memfd): a write through a shared mapping moves no time, so statx cannot see a rewrite.</summary>
    TimesStill,

    /// <summary>An overlay whose layers the agent cannot check (mounted in another mount namespace, or a layer path it cannot resolve): it may be FUSE underneath.</summary>
    Unverified,

    /// <summary>FUSE, directly or as a layer of an overlay: the mounter serves the bytes, can serve others later under the same metadata, and can stall reads.</summary>
    Fuse,
}

/// <summary>The kind of storage under an executable and a short description of it for messages ("tmpfs", "overlay layer /x on FUSE").</summary>
internal readonly record struct ExecutableStorage(StorageKind Kind, string Description)
{
    private const long FuseMagic = 0x65735546;
    private const long TmpfsMagic = 0x01021994;
    private const long RamfsMagic = 0x858458f6;
    private const long HugetlbfsMagic = 0x958458f6;
    private const long OverlayMagic = 0x794c7630;
    private const int MaxOverlayDepth = 8;

    /// <summary>
    /// Classifies the open file. An overlay is looked through: its mount is found by mount id (statx) in the agent's own
    /// mountinfo, or else in the peer's (<paramref name="peerMountInfoPath"/>) and then, by superblock, in the agent's;
    /// each layer directory named in its options is classified in turn (statfs), and the worst layer decides.
    /// </summary>
    public static ExecutableStorage Classify(SafeFileHandle handle, string ownMountInfoPath, string? peerMountInfoPath)
    {
        if (!OperatingSystem.IsLinux())
        {
            return new(StorageKind.TimesMove, "not Linux");
        }

        if (!Native.TryFsType(handle, out long type))
        {
            return new(StorageKind.Unverified, "fstatfs failed");
        }

        if (type != OverlayMagic)
        {
            return OfType(type, "the file");
        }

        if (!Native.TryMountId(handle, out ulong mountId))
        {
            return new(StorageKind.Unverified, "overlay whose mount id statx does not give");
        }

        var own = new Lazy<IReadOnlyList<MountInfoLine>>(() => MountInfoLine.ReadAll(ownMountInfoPath));
        MountInfoLine? mount = own.Value.FirstOrDefault(m => m.MountId == mountId);
        if (mount is null && peerMountInfoPath is not null)
        {
            MountInfoLine? theirs = MountInfoLine.ReadAll(peerMountInfoPath).FirstOrDefault(m => m.MountId == mountId);
            mount = theirs is null ? null : own.Value.FirstOrDefault(m => m.SameSuperblock(theirs));
        }

        return mount is null
            ? new(StorageKind.Unverified, "overlay not mounted in the agent's mount namespace, so its layers cannot be checked")
            : OfOverlay(mount, own, 1);
    }

    /// <summary>
    /// Why someone other than root could write the open file (null: only root can): it is owned by another uid, has
    /// group or other write bits, or carries a POSIX access ACL (which may grant write to named users or groups); a
    /// file whose owner or ACL cannot be read counts as writable.
    /// </summary>
    public static string? WhoElseCanWrite(SafeFileHandle handle)
    {
        if (!OperatingSystem.IsLinux())
        {
            return null;
        }

        if (!Native.TryOwner(handle, out uint uid, out uint mode))
        {
            return "its owner cannot be read";
        }

        if (uid != 0)
        {
            return string.Create(CultureInfo.InvariantCulture, $"it is owned by uid {uid}, who can rewrite it");
        }

        if ((mode & 0b000_010_010) != 0)
        {
            return $"it is group- or world-writable (mode {Convert.ToString((int)(mode & 0xfff), 8)})";
        }

        return Native.HasAccessAcl(handle) ? "it has an ACL that may let others write it" : null;
    }

    /// <summary>
    /// The never-reused id of the mount the open file was reached through (Linux 6.8+), or null. A mount keeps its
    /// filesystem (and an overlay its layers) for life, so a cache entry kept under it cannot be answered later by
    /// another filesystem that happens to get the same device number and forges the same inode and times (FUSE can).
    /// </summary>
    public static ulong? UniqueMountId(SafeFileHandle handle) =>
        OperatingSystem.IsLinux() && Native.TryUniqueMountId(handle, out ulong id) ? id : null;

    /// <summary>The mount id as mountinfo shows it (Linux 5.8+), which the kernel hands out again after an unmount; or null.</summary>
    public static ulong? ReusableMountId(SafeFileHandle handle) =>
        OperatingSystem.IsLinux() && Native.TryMountId(handle, out ulong id) ? id : null;

    /// <summary>Whether the open file is directly on FUSE (fstatfs; unknown counts as not): cheap enough for every call.</summary>
    public static bool IsDirectlyOnFuse(SafeFileHandle handle) =>
        OperatingSystem.IsLinux() && Native.TryFsType(handle, out long type) && type == FuseMagic;

    /// <summary>The worst of two (the order of <see cref="StorageKind"/>).</summary>
    internal static ExecutableStorage Worst(ExecutableStorage a, ExecutableStorage b) => b.Kind > a.Kind ? b : a;

    private static ExecutableStorage OfType(long type, string what) => type switch
    {
        FuseMagic => new(StorageKind.Fuse, $"{what} on FUSE"),
        TmpfsMagic => new(StorageKind.TimesStill, $"{what} on tmpfs"),
        RamfsMagic => new(StorageKind.TimesStill, $"{what} on ramfs"),
        HugetlbfsMagic => new(StorageKind.TimesStill, $"{what} on hugetlbfs"),
        _ => new(StorageKind.TimesMove, string.Create(CultureInfo.InvariantCulture, $"{what} on filesystem type 0x{type:x}")),
    };

    private static ExecutableStorage OfOverlay(MountInfoLine mount, Lazy<IReadOnlyList<MountInfoLine>> own, int depth)
    {
        IReadOnlyList<string> layers = mount.OverlayLayers();
        if (layers.Count == 0 || depth > MaxOverlayDepth)
        {
            return new(StorageKind.Unverified, $"overlay at {mount.MountPoint} whose layers cannot be read from its options");
        }

        var worst = new ExecutableStorage(StorageKind.TimesMove, $"overlay at {mount.MountPoint}");
        foreach (string layer in layers)
        {
            worst = Worst(worst, OfLayer(layer, own, depth));
        }

        return worst;
    }

    private static ExecutableStorage OfLayer(string layer, Lazy<IReadOnlyList<MountInfoLine>> own, int depth)
    {
        string what = $"overlay layer {layer}";
        if (!Path.IsPathFullyQualified(layer) || !Native.TryFsType(layer, out long type))
        {
            return new(StorageKind.Unverified, $"{what}, which does not resolve in the agent's mount namespace");
        }

        if (type != OverlayMagic)
        {
            return OfType(type, what);
        }

        MountInfoLine? mount = Native.TryMountId(layer, out ulong id) ? own.Value.FirstOrDefault(m => m.MountId == id) : null;
        return mount is null
            ? new(StorageKind.Unverified, $"{what}, an overlay whose mount cannot be found")
            : OfOverlay(mount, own, depth + 1);
    }

    private static class Native
    {
        private const int AtFdCwd = -100;
        private const int AtEmptyPath = 0x1000;
        private const uint StatxMountId = 0x1000;
        private const uint StatxMountIdUnique = 0x4000;
        private const uint StatxModeUid = 0x2 | 0x8; // STATX_MODE | STATX_UID
        private const int ENODATA = 61;
        private const int EOPNOTSUPP = 95;

        public static bool TryFsType(SafeFileHandle handle, out long type) =>
            WithFd(handle, out type, static (int fd, out long t) =>
            {
                Span<byte> buffer = stackalloc byte[256]; // struct statfs: f_type (a long) comes first on every 64-bit Linux ABI
                t = 0;
                if (Fstatfs(fd, ref MemoryMarshal.GetReference(buffer)) != 0)
                {
                    return false;
                }

                t = FsType(buffer);
                return true;
            });

        public static bool TryFsType(string path, out long type)
        {
            Span<byte> buffer = stackalloc byte[256];
            type = 0;
            if (Statfs(path, ref MemoryMarshal.GetReference(buffer)) != 0)
            {
                return false;
            }

            type = FsType(buffer);
            return true;
        }

        public static bool TryOwner(SafeFileHandle handle, out uint uid, out uint mode)
        {
            // struct statx: 0 u32 mask, 20 u32 uid, 28 u16 mode.
            (uint, uint) owner = default;
            bool ok = WithFd(handle, out owner, static (int fd, out (uint Uid, uint Mode) o) =>
            {
                Span<byte> buffer = stackalloc byte[256];
                o = default;
                if (Statx(fd, string.Empty, AtEmptyPath, StatxModeUid, ref MemoryMarshal.GetReference(buffer)) != 0 ||
                    (MemoryMarshal.Read<uint>(buffer) & StatxModeUid) != StatxModeUid)
                {
                    return false;
                }

                o = (MemoryMarshal.Read<uint>(buffer[20..]), MemoryMarshal.Read<ushort>(buffer[28..]));
                return true;
            });
            (uid, mode) = owner;
            return ok;
        }

        /// <summary>Whether the file has an extended POSIX access ACL (the kernel drops one that only repeats the mode bits); unknown counts as yes.</summary>
        public static bool HasAccessAcl(SafeFileHandle handle) =>
            WithFd(handle, out bool has, static (int fd, out bool h) =>
            {
                nint size = Fgetxattr(fd, "system.posix_acl_access", IntPtr.Zero, 0);
                int errno = size < 0 ? Marshal.GetLastPInvokeError() : 0;
                h = size > 0 || (size < 0 && errno is not (ENODATA or EOPNOTSUPP));
                return true;
            }) && has;

        /// <summary>The mount id that /proc/&lt;pid&gt;/mountinfo shows (the kernel may reuse it after an unmount).</summary>
        public static bool TryMountId(SafeFileHandle handle, out ulong mountId) =>
            WithFd(handle, out mountId, static (int fd, out ulong id) => TryMountId(fd, string.Empty, AtEmptyPath, StatxMountId, out id));

        public static bool TryMountId(string path, out ulong mountId) => TryMountId(AtFdCwd, path, 0, StatxMountId, out mountId);

        /// <summary>The 64-bit mount id never reused while the kernel runs (STATX_MNT_ID_UNIQUE, Linux 6.8+); false before.</summary>
        public static bool TryUniqueMountId(SafeFileHandle handle, out ulong mountId) =>
            WithFd(handle, out mountId, static (int fd, out ulong id) => TryMountId(fd, string.Empty, AtEmptyPath, StatxMountIdUnique, out id));

        private static bool TryMountId(int dirFd, string path, int flags, uint which, out ulong mountId)
        {
            // struct statx: 0 u32 mask ... 144 u64 mnt_id (Linux 5.8+; the unique one with STATX_MNT_ID_UNIQUE).
            Span<byte> buffer = stackalloc byte[256];
            mountId = 0;
            if (Statx(dirFd, path, flags, which, ref MemoryMarshal.GetReference(buffer)) != 0 ||
                (MemoryMarshal.Read<uint>(buffer) & which) == 0)
            {
                return false;
            }

            mountId = MemoryMarshal.Read<ulong>(buffer[144..]);
            return true;
        }

        private static long FsType(ReadOnlySpan<byte> buffer) =>
            IntPtr.Size == 8 ? BitConverter.ToInt64(buffer) : BitConverter.ToInt32(buffer);

        private delegate bool FdFunc<T>(int fd, out T value);

        private static bool WithFd<T>(SafeFileHandle handle, out T value, FdFunc<T> func)
        {
            bool added = false;
            try
            {
                handle.DangerousAddRef(ref added);
                return func(checked((int)handle.DangerousGetHandle()), out value);
            }
            finally
            {
                if (added)
                {
                    handle.DangerousRelease();
                }
            }
        }

        [DllImport("libc", EntryPoint = "fstatfs", SetLastError = true)]
        [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
        private static extern int Fstatfs(int fd, ref byte buffer);

        [DllImport("libc", EntryPoint = "statfs", SetLastError = true)]
        [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
        private static extern int Statfs([MarshalAs(UnmanagedType.LPUTF8Str)] string path, ref byte buffer);

        [DllImport("libc", EntryPoint = "fgetxattr", SetLastError = true)]
        [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
        private static extern nint Fgetxattr(int fd, [MarshalAs(UnmanagedType.LPUTF8Str)] string name, IntPtr value, nint size);

        [DllImport("libc", EntryPoint = "statx", SetLastError = true)]
        [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
        private static extern int Statx(int dirFd, [MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags, uint mask, ref byte buffer);
    }
}

/// <summary>One line of /proc/&lt;pid&gt;/mountinfo: what the overlay look-through needs of it.</summary>
internal sealed record MountInfoLine(ulong MountId, string Device, string MountPoint, string FsType, string SuperOptions)
{
    /// <summary>Same superblock: same device number, type and options (a mount copied into another namespace, or a bind mount).</summary>
    public bool SameSuperblock(MountInfoLine other) =>
        Device == other.Device && FsType == other.FsType && SuperOptions == other.SuperOptions;

    /// <summary>Every line of a mountinfo file; an unreadable file gives none.</summary>
    public static IReadOnlyList<MountInfoLine> ReadAll(string path)
    {
        try
        {
            return Parse(File.ReadAllText(path));
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return [];
        }
    }

    /// <summary>
    /// Parses mountinfo text: <c>id parent major:minor root mountpoint options [optional fields] - fstype source superoptions</c>.
    /// Malformed lines are skipped.
    /// </summary>
    public static IReadOnlyList<MountInfoLine> Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var lines = new List<MountInfoLine>();
        foreach (string line in text.Split('\n'))
        {
            string[] f = line.Split(' ');
            int dash = f.Length > 6 ? Array.IndexOf(f, "-", 6) : -1;
            if (dash < 0 || f.Length < dash + 4 ||
                !ulong.TryParse(f[0], NumberStyles.None, CultureInfo.InvariantCulture, out ulong id))
            {
                continue;
            }

            lines.Add(new MountInfoLine(id, f[2], Unescape(f[4]), f[dash + 1], f[dash + 3]));
        }

        return lines;
    }

    /// <summary>
    /// The layer directories of an overlay (lower, data-only and upper), from its super options: <c>lowerdir=a:b::c</c>
    /// or one <c>lowerdir+=</c> / <c>datadir+=</c> per layer, and <c>upperdir=</c>; octal escapes (<c>\072</c> for a ':'
    /// inside a path) are decoded after splitting. Not an overlay: none.
    /// </summary>
    public IReadOnlyList<string> OverlayLayers()
    {
        if (FsType != "overlay")
        {
            return [];
        }

        var layers = new List<string>();
        foreach (string option in SuperOptions.Split(','))
        {
            int eq = option.IndexOf('=', StringComparison.Ordinal);
            if (eq < 0)
            {
                continue;
            }

            string value = option[(eq + 1)..];
            switch (option[..eq])
            {
                case "lowerdir":
                    layers.AddRange(value.Split(':', StringSplitOptions.RemoveEmptyEntries).Select(Unescape));
                    break;
                case "lowerdir+" or "datadir+" or "upperdir":
                    layers.Add(Unescape(value));
                    break;
            }
        }

        return layers;
    }

    /// <summary>Decodes the kernel's <c>\ooo</c> octal escapes (space, tab, newline, backslash, ',', ':', '=').</summary>
    internal static string Unescape(string value)
    {
        if (!value.Contains('\\', StringComparison.Ordinal))
        {
            return value;
        }

        var bytes = new List<byte>(value.Length);
        for (int i = 0; i < value.Length; i++)
        {
            if (value[i] == '\\' && IsOctal(value, i + 1))
            {
                bytes.Add((byte)(((value[i + 1] - '0') << 6) | ((value[i + 2] - '0') << 3) | (value[i + 3] - '0')));
                i += 3;
            }
            else
            {
                bytes.AddRange(Encoding.UTF8.GetBytes(value[i].ToString()));
            }
        }

        return Encoding.UTF8.GetString([.. bytes]);
    }

    private static bool IsOctal(string s, int at) =>
        at + 2 < s.Length && s[at] is >= '0' and <= '3' && s[at + 1] is >= '0' and <= '7' && s[at + 2] is >= '0' and <= '7';
}
