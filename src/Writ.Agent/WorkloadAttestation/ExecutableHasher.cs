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
/// statx on the opened file and by the never-reused id of the mount it was reached through. A hash is cached only where that key must change when the content does:
/// the file is writable by root alone (owner uid 0, no group/other write bit, no ACL) and lives on a
/// filesystem where every in-place write moves its ctime. On tmpfs, ramfs and hugetlbfs a write
/// through a shared mapping moves no time at all, and a non-root writer could race a rewrite into the
/// timestamp tick of its previous change; such files are hashed again on every attestation (while a
/// process executes the file, the kernel refuses to open it for writing, so a fresh hash is of what runs).
/// FUSE files, directly or under an overlay, are not hashed unless allowed, and then never cached.
/// </summary>
public sealed class ExecutableHasher
{
    private const int ChunkSize = 1 << 20;
    private readonly ConcurrentDictionary<(FileIdentity File, ulong Mount), string> _cache = new();
    private readonly int _maxCacheEntries;
    private readonly bool _hashOnFuse;
    private readonly string _ownMountInfoPath;
    private long _hashesComputed;

    public ExecutableHasher(long maxBytes, int maxCacheEntries = 4096, bool hashOnFuse = false, string ownMountInfoPath = "/proc/self/mountinfo")
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxBytes);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxCacheEntries);
        ArgumentException.ThrowIfNullOrWhiteSpace(ownMountInfoPath);
        MaxBytes = maxBytes;
        _maxCacheEntries = maxCacheEntries;
        _hashOnFuse = hashOnFuse;
        _ownMountInfoPath = ownMountInfoPath;
    }

    public long MaxBytes { get; }

    /// <summary>How many files were actually read and hashed (not served from the cache).</summary>
    public long HashesComputed => Interlocked.Read(ref _hashesComputed);

    /// <summary>Hashes the file at <paramref name="path"/> (e.g. /proc/1234/exe); lowercase hex.</summary>
    public bool TryHash(string path, CancellationToken ct, out string? sha256Hex, out FileIdentity identity, out string? error) =>
        TryHash(path, null, readContent: true, ct, out sha256Hex, out identity, out _, out error);

    /// <summary>
    /// Like <see cref="TryHash(string, CancellationToken, out string?, out FileIdentity, out string?)"/> but never reads
    /// the file's content: the same checks on the opened file (identity, FUSE, size) and the cache. False with a null
    /// <paramref name="error"/> means "not cached": hash it with <c>TryHash</c> (which may take long).
    /// </summary>
    public bool TryHashCached(string path, out string? sha256Hex, out FileIdentity identity, out string? error) =>
        TryHash(path, null, readContent: false, CancellationToken.None, out sha256Hex, out identity, out _, out error);

    /// <summary>
    /// The full form. <paramref name="peerMountInfoPath"/> (/proc/&lt;pid&gt;/mountinfo of the process running the file)
    /// lets an overlay mounted only in that process's mount namespace be matched, by superblock, with its mount in the
    /// agent's. With <paramref name="readContent"/> false the content is never read: false with a null
    /// <paramref name="error"/> means "not cached". <paramref name="uncachedReason"/> says why a hash just computed was
    /// not cached (and will be computed again next time); null when it was cached or served from the cache.
    /// </summary>
    public bool TryHash(string path, string? peerMountInfoPath, bool readContent, CancellationToken ct,
        out string? sha256Hex, out FileIdentity identity, out string? uncachedReason, out string? error)
    {
        ArgumentNullException.ThrowIfNull(path);
        sha256Hex = null;
        identity = default;
        uncachedReason = null;
        // Opening a FIFO blocks until a writer comes, and the cached path runs on the Workload API's thread: only a
        // regular file is opened (a running program's /proc/<pid>/exe always is one; a fake or tampered root may not be).
        if (FileIdentity.TryGet(path, out FileIdentity before, out _) && !before.IsRegularFile)
        {
            error = "the executable is not a regular file, so it is not hashed";
            return false;
        }

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
            if (!_hashOnFuse && ExecutableStorage.IsDirectlyOnFuse(handle))
            {
                error = "the executable is on a FUSE filesystem whose content its mounter controls, so it is not hashed; set the unix attestor's hash-on-FUSE option only if the mounter is trusted";
                return false;
            }

            // Only files that passed every check below when they were hashed are in the cache, and none of what was
            // checked can change without changing the key: chmod, chown and setfacl move the ctime, and the mount
            // (never reused) keeps its filesystem and an overlay its layers. Before Linux 6.8 mount ids are reused,
            // so a hit is classified again (an overlay over FUSE could have got both numbers back); the direct
            // FUSE check above covers the rest.
            ulong? uniqueMount = ExecutableStorage.UniqueMountId(handle);
            ulong? mount = uniqueMount ?? ExecutableStorage.ReusableMountId(handle);
            ExecutableStorage? classifiedOnHit = null;
            if (mount is not null && _cache.TryGetValue((identity, mount.Value), out sha256Hex))
            {
                if (uniqueMount is not null ||
                    (classifiedOnHit = ExecutableStorage.Classify(handle, _ownMountInfoPath, peerMountInfoPath)).Value.Kind == StorageKind.TimesMove)
                {
                    error = null;
                    return true;
                }

                sha256Hex = null;
            }

            // An overlay is looked through: a FUSE layer under it serves the bytes just the same.
            ExecutableStorage storage = classifiedOnHit ?? ExecutableStorage.Classify(handle, _ownMountInfoPath, peerMountInfoPath);
            if (!_hashOnFuse && storage.Kind is StorageKind.Fuse or StorageKind.Unverified)
            {
                error = storage.Kind == StorageKind.Fuse
                    ? $"the executable is on a FUSE filesystem whose content its mounter controls ({storage.Description}), so it is not hashed; set the unix attestor's hash-on-FUSE option only if the mounter is trusted"
                    : $"the executable is on an {storage.Description}; it could be FUSE underneath, so it is not hashed; run the agent in the host's mount namespace, or set the unix attestor's hash-on-FUSE option only if every mounter is trusted";
                return false;
            }

            uncachedReason = storage.Kind switch
            {
                StorageKind.TimesMove when mount is null => "not cached: the kernel gives no mount id (Linux 5.8+) to keep the hash under",
                StorageKind.TimesMove => ExecutableStorage.WhoElseCanWrite(handle) is { } who ? $"not cached: {who}" : null,
                StorageKind.TimesStill => $"not cached: {storage.Description}, where a write through a shared mapping changes no time",
                _ => $"not cached: {storage.Description} serves its own bytes",
            };

            if (!readContent)
            {
                error = null;
                return false;
            }

            if (identity.Size > MaxBytes)
            {
                uncachedReason = null;
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
                    uncachedReason = null;
                    error = string.Create(CultureInfo.InvariantCulture,
                        $"the executable grew past the {MaxBytes}-byte hashing limit while being hashed; raise the unix attestor's max hash size to get a sha256 selector");
                    return false;
                }

                hash.AppendData(buffer, 0, read);
            }

            if (!FileIdentity.TryGet(handle, out FileIdentity after, out statError) || after != identity || offset != identity.Size)
            {
                uncachedReason = null;
                error = "the executable changed while it was being hashed; retry the request";
                return false;
            }

            sha256Hex = Convert.ToHexStringLower(hash.GetHashAndReset());
            Interlocked.Increment(ref _hashesComputed);
            error = null;
            if (uncachedReason is not null)
            {
                return true;
            }

            if (_cache.Count >= _maxCacheEntries)
            {
                _cache.Clear();
            }

            _cache[(identity, mount!.Value)] = sha256Hex;
            return true;
        }
    }
}
