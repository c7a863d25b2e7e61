using System.Security.Cryptography;
using System.Text.Json;

namespace Writ.Server.Keys;

/// <summary>The key types a CA or JWT authority can use.</summary>
public enum KeyType
{
    EcP256,
    EcP384,
    Rsa2048,
}

public static class KeyTypes
{
    public static bool TryParse(string? text, out KeyType type)
    {
        switch (text?.ToLowerInvariant())
        {
            case "ec-p256" or "p256" or "ecdsa-p256":
                type = KeyType.EcP256;
                return true;
            case "ec-p384" or "p384" or "ecdsa-p384":
                type = KeyType.EcP384;
                return true;
            case "rsa-2048" or "rsa2048":
                type = KeyType.Rsa2048;
                return true;
            default:
                type = default;
                return false;
        }
    }

    public static string Name(KeyType t) => t switch
    {
        KeyType.EcP256 => "ec-p256",
        KeyType.EcP384 => "ec-p384",
        _ => "rsa-2048",
    };

    public static AsymmetricAlgorithm Generate(KeyType t) => t switch
    {
        KeyType.EcP256 => ECDsa.Create(ECCurve.NamedCurves.nistP256),
        KeyType.EcP384 => ECDsa.Create(ECCurve.NamedCurves.nistP384),
        _ => RSA.Create(2048),
    };

    public static AsymmetricAlgorithm Import(byte[] pkcs8) =>
        ImportEcOrRsa(k => k.ImportPkcs8PrivateKey(pkcs8, out _)) ?? throw new CryptographicException("the key is neither an EC nor an RSA PKCS#8 private key");

    /// <summary>An EC key, else an RSA key, as <paramref name="import"/> fills it in; null when it takes neither.</summary>
    public static AsymmetricAlgorithm? ImportEcOrRsa(Action<AsymmetricAlgorithm> import)
    {
        ArgumentNullException.ThrowIfNull(import);
        foreach (var create in (Func<AsymmetricAlgorithm>[])[ECDsa.Create, RSA.Create])
        {
            var key = create();
            try
            {
                import(key);
                return key;
            }
            catch (Exception e) when (e is CryptographicException or ArgumentException)
            {
                key.Dispose();
            }
        }
        return null;
    }
}

/// <summary>
/// Holds the server's private keys by id. Keys never leave the key manager except as key objects used for signing
/// in-process; they are never written to the database or sent to clients.
/// </summary>
public interface IKeyManager
{
    string Name { get; }

    /// <summary>Generates (replacing any existing) the key with this id and returns it.</summary>
    Task<AsymmetricAlgorithm> GenerateAsync(string keyId, KeyType type, CancellationToken ct);

    /// <summary>The key with this id, or null when it does not exist (e.g. a memory key manager after restart).</summary>
    Task<AsymmetricAlgorithm?> GetAsync(string keyId, CancellationToken ct);

    Task DeleteAsync(string keyId, CancellationToken ct);
}

/// <summary>Keys live only in memory: a restart means new CA keys (and a new bundle).</summary>
public sealed class MemoryKeyManager : IKeyManager
{
    private readonly Dictionary<string, AsymmetricAlgorithm> _keys = new(StringComparer.Ordinal);
    private readonly Lock _lock = new();

    public string Name => "memory";

    public Task<AsymmetricAlgorithm> GenerateAsync(string keyId, KeyType type, CancellationToken ct)
    {
        ArgumentException.ThrowIfNullOrEmpty(keyId);
        var key = KeyTypes.Generate(type);
        lock (_lock)
        {
            _keys[keyId] = key;
        }
        return Task.FromResult(key);
    }

    public Task<AsymmetricAlgorithm?> GetAsync(string keyId, CancellationToken ct)
    {
        ArgumentException.ThrowIfNullOrEmpty(keyId);
        lock (_lock)
        {
            return Task.FromResult(_keys.TryGetValue(keyId, out var k) ? k : null);
        }
    }

    public Task DeleteAsync(string keyId, CancellationToken ct)
    {
        ArgumentException.ThrowIfNullOrEmpty(keyId);
        lock (_lock)
        {
            _keys.Remove(keyId);
        }
        return Task.CompletedTask;
    }
}

/// <summary>
/// Keys in one JSON file (PKCS#8, base64) in the data directory, mode 0600, replaced atomically
/// (write to a temp file, fsync, rename) so a crash never leaves a half-written key file.
/// A key file that is corrupt, or readable by group or others, is refused with a one-line
/// <see cref="InvalidOperationException"/> and never modified. The file is re-read before every write and when a key
/// is not in the cache, so instances sharing the file one after another never drop each other's keys (writers in
/// separate processes at the same instant are not locked against each other: give each server its own data dir).
/// </summary>
public sealed class DiskKeyManager : IKeyManager
{
    private const UnixFileMode OwnerOnly = UnixFileMode.UserRead | UnixFileMode.UserWrite;
    private readonly string _path;
    private readonly SemaphoreSlim _lock = new(1, 1);
    private Dictionary<string, string>? _cache;

    public DiskKeyManager(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        _path = path;
    }

    public string Name => "disk";

    public async Task<AsymmetricAlgorithm> GenerateAsync(string keyId, KeyType type, CancellationToken ct)
    {
        ArgumentException.ThrowIfNullOrEmpty(keyId);
        var key = KeyTypes.Generate(type);
        await _lock.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            // Re-read first (another instance may have written since), and change a copy: if writing fails, the cache
            // must still say what the file says.
            var all = new Dictionary<string, string>(await LoadAsync(ct, reload: true).ConfigureAwait(false), StringComparer.Ordinal)
            {
                [keyId] = Convert.ToBase64String(key.ExportPkcs8PrivateKey()),
            };
            await SaveAsync(all, ct).ConfigureAwait(false);
        }
        finally
        {
            _lock.Release();
        }
        return key;
    }

    public async Task<AsymmetricAlgorithm?> GetAsync(string keyId, CancellationToken ct)
    {
        ArgumentException.ThrowIfNullOrEmpty(keyId);
        await _lock.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            var all = await LoadAsync(ct).ConfigureAwait(false);
            if (!all.ContainsKey(keyId))
            {
                all = await LoadAsync(ct, reload: true).ConfigureAwait(false);   // written by another instance since?
            }
            return all.TryGetValue(keyId, out var b64) ? KeyTypes.Import(Convert.FromBase64String(b64)) : null;
        }
        finally
        {
            _lock.Release();
        }
    }

    public async Task DeleteAsync(string keyId, CancellationToken ct)
    {
        ArgumentException.ThrowIfNullOrEmpty(keyId);
        await _lock.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            var all = new Dictionary<string, string>(await LoadAsync(ct, reload: true).ConfigureAwait(false), StringComparer.Ordinal);
            if (all.Remove(keyId))
            {
                await SaveAsync(all, ct).ConfigureAwait(false);
            }
        }
        finally
        {
            _lock.Release();
        }
    }

    private async Task<Dictionary<string, string>> LoadAsync(CancellationToken ct, bool reload = false)
    {
        if (_cache is not null && !reload)
        {
            return _cache;
        }
        if (!File.Exists(_path))
        {
            return _cache = new(StringComparer.Ordinal);
        }
        var mode = File.GetUnixFileMode(_path);
        if ((mode & ~(OwnerOnly | UnixFileMode.UserExecute)) != 0)
        {
            throw new InvalidOperationException($"key file '{_path}' is accessible by group or others (mode {Convert.ToString((int)mode, 8)}): run chmod 600 on it, and treat its keys as exposed if others could read it");
        }
        Dictionary<string, string>? all;
        try
        {
            await using var s = File.OpenRead(_path);
            all = await JsonSerializer.DeserializeAsync<Dictionary<string, string>>(s, cancellationToken: ct).ConfigureAwait(false);
        }
        catch (JsonException)
        {
            throw Corrupt();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new InvalidOperationException($"key file '{_path}' could not be read ({e.GetType().Name}): make it readable by the server's user");
        }
        if (all is null)
        {
            throw Corrupt();
        }
        // Check every key now, so a damaged file stops the start instead of failing on some later signing.
        foreach (var b64 in all.Values)
        {
            try
            {
                using var k = KeyTypes.Import(Convert.FromBase64String(b64 ?? ""));
            }
            catch (Exception e) when (e is FormatException or CryptographicException)
            {
                throw Corrupt();
            }
        }
        return _cache = new(all, StringComparer.Ordinal);
    }

    private InvalidOperationException Corrupt() =>
        new($"key file '{_path}' is corrupt: restore it from backup, or remove it to start a new CA (agents must then re-attest)");

    private async Task SaveAsync(Dictionary<string, string> all, CancellationToken ct)
    {
        var tmp = _path + ".tmp";
        try
        {
            // A temp file left by a crash may have any mode; only a newly created file gets UnixCreateMode.
            File.Delete(tmp);
            var opts = new FileStreamOptions
            {
                Mode = FileMode.CreateNew,
                Access = FileAccess.Write,
                UnixCreateMode = OwnerOnly,
            };
            await using (var s = new FileStream(tmp, opts))
            {
                await JsonSerializer.SerializeAsync(s, all, cancellationToken: ct).ConfigureAwait(false);
                await s.FlushAsync(ct).ConfigureAwait(false);
                s.Flush(flushToDisk: true);
            }
            File.Move(tmp, _path, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            TryDelete(tmp);
            throw new InvalidOperationException($"key file '{_path}' could not be written ({e.GetType().Name}): check the data directory's permissions and free space");
        }
        catch (OperationCanceledException)
        {
            TryDelete(tmp);
            throw;
        }
        _cache = all;
    }

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Best effort: the next save deletes it again.
        }
    }
}
