using System.Collections.Concurrent;
using System.Globalization;
using System.Security.Cryptography;
using Microsoft.Win32.SafeHandles;
using Writ.Agent.PeerTracking;

namespace Writ.Agent.WorkloadAttestation;

/// <summary>
/// SHA-256 of a running executable, read through <c>/proc/&lt;pid&gt;/exe</c> (the file the process is
/// actually running, even if it was deleted or its path now names another file), with a size limit
/// and a cache keyed by the file's identity (device, inode, size, mtime ns, ctime ns) taken with
/// statx on the opened file. A binary rewritten in place changes at least its ctime, so it is
/// hashed again.
/// </summary>
public sealed class ExecutableHasher
{
    private const int ChunkSize = 1 << 20;
    private const long FuseSuperMagic = 0x65735546;
    private readonly ConcurrentDictionary<FileIdentity, string> _cache = new();
    private readonly int _maxCacheEntries;
    private readonly bool _hashOnFuse;
    private long _hashesComputed;

    public ExecutableHasher(long maxBytes, int maxCacheEntries = 4096, bool hashOnFuse = false)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxBytes);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxCacheEntries);
        MaxBytes = maxBytes;
        _maxCacheEntries = maxCacheEntries;
        _hashOnFuse = hashOnFuse;
    }

    public long MaxBytes { get; }

    /// <summary>How many files were actually read and hashed (not served from the cache).</summary>
    public long HashesComputed => Interlocked.Read(ref _hashesComputed);

    /// <summary>Hashes the file at <paramref name="path"/> (e.g. /proc/1234/exe); lowercase hex.</summary>
    public bool TryHash(string path, CancellationToken ct, out string? sha256Hex, out FileIdentity identity, out string? error) =>
        TryHash(path, readContent: true, ct, out sha256Hex, out identity, out error);

    /// <summary>
    /// Like <see cref="TryHash(string, CancellationToken, out string?, out FileIdentity, out string?)"/> but never reads
    /// the file's content: the same checks on the opened file (identity, FUSE, size) and the cache. False with a null
    /// <paramref name="error"/> means "not cached": hash it with <c>TryHash</c> (which may take long).
    /// </summary>
    public bool TryHashCached(string path, out string? sha256Hex, out FileIdentity identity, out string? error) =>
        TryHash(path, readContent: false, CancellationToken.None, out sha256Hex, out identity, out error);

    private bool TryHash(string path, bool readContent, CancellationToken ct, out string? sha256Hex, out FileIdentity identity, out string? error)
    {
        ArgumentNullException.ThrowIfNull(path);
        sha256Hex = null;
        identity = default;
        SafeFileHandle handle;
        try
        {
            handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            error = $"cannot open the executable for hashing ({ex.GetType().Name}); the agent must run as root to read /proc/<pid>/exe";
            return false;
        }

        using (handle)
        {
            if (!FileIdentity.TryGet(handle, out identity, out string? statError))
            {
                error = $"cannot stat the executable for hashing: {statError}";
                return false;
            }

            // A FUSE file's content (and the speed of every read, so a read can block forever) is
            // decided by whoever mounted it, possibly the workload's own user. Its cache key is
            // not trustworthy either: the daemon can serve other bytes without any metadata change.
            if (!_hashOnFuse && IsFuse(handle))
            {
                error = "the executable is on a FUSE filesystem whose content its mounter controls, so it is not hashed; set the unix attestor's hash-on-FUSE option only if the mounter is trusted";
                return false;
            }

            if (_cache.TryGetValue(identity, out sha256Hex))
            {
                error = null;
                return true;
            }

            if (!readContent)
            {
                error = null;
                return false;
            }

            if (identity.Size > MaxBytes)
            {
                error = string.Create(CultureInfo.InvariantCulture,
                    $"the executable is {identity.Size} bytes, over the {MaxBytes}-byte hashing limit; raise the unix attestor's max hash size to get a sha256 selector");
                return false;
            }

            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            byte[] buffer = new byte[ChunkSize];
            long offset = 0;
            while (true)
            {
                ct.ThrowIfCancellationRequested();
                int read = RandomAccess.Read(handle, buffer, offset);
                if (read == 0)
                {
                    break;
                }

                offset += read;
                if (offset > MaxBytes)
                {
                    error = string.Create(CultureInfo.InvariantCulture,
                        $"the executable grew past the {MaxBytes}-byte hashing limit while being hashed; raise the unix attestor's max hash size to get a sha256 selector");
                    return false;
                }

                hash.AppendData(buffer, 0, read);
            }

            if (!FileIdentity.TryGet(handle, out FileIdentity after, out statError) || after != identity || offset != identity.Size)
            {
                error = "the executable changed while it was being hashed; retry the request";
                return false;
            }

            sha256Hex = Convert.ToHexStringLower(hash.GetHashAndReset());
            if (_hashOnFuse && IsFuse(handle))
            {
                // Never cache FUSE content: the same identity may serve other bytes next time.
                Interlocked.Increment(ref _hashesComputed);
                error = null;
                return true;
            }

            Interlocked.Increment(ref _hashesComputed);
            if (_cache.Count >= _maxCacheEntries)
            {
                _cache.Clear();
            }

            _cache[identity] = sha256Hex;
            error = null;
            return true;
        }
    }

    /// <summary>True if the open file lives on a FUSE filesystem (fstatfs f_type; unknown counts as not FUSE).</summary>
    internal static bool IsFuse(SafeFileHandle handle)
    {
        if (!OperatingSystem.IsLinux())
        {
            return false;
        }

        bool added = false;
        try
        {
            handle.DangerousAddRef(ref added);
            Span<byte> buffer = stackalloc byte[256]; // struct statfs: f_type (a long) comes first on every 64-bit Linux ABI
            if (NativeMethods.Fstatfs(checked((int)handle.DangerousGetHandle()), ref System.Runtime.InteropServices.MemoryMarshal.GetReference(buffer)) != 0)
            {
                return false;
            }

            long type = IntPtr.Size == 8 ? BitConverter.ToInt64(buffer) : BitConverter.ToInt32(buffer);
            return type == FuseSuperMagic;
        }
        finally
        {
            if (added)
            {
                handle.DangerousRelease();
            }
        }
    }

    private static class NativeMethods
    {
        [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "fstatfs", SetLastError = true)]
        [System.Runtime.InteropServices.DefaultDllImportSearchPaths(System.Runtime.InteropServices.DllImportSearchPath.SafeDirectories)]
        public static extern int Fstatfs(int fd, ref byte buffer);
    }
}
