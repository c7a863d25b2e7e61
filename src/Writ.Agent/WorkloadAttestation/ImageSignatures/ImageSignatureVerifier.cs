using System.Collections.Concurrent;
using System.Text.Json;
using Microsoft.Extensions.Logging;

namespace Writ.Agent.WorkloadAttestation.ImageSignatures;

/// <summary>
/// Which registered keys signed an image digest (cosign simple signing, <see cref="CosignSimpleSigning"/>): from the
/// registry (<see cref="OciSignatureRegistry"/>) or, when <see cref="ImageSignatureOptions.SignaturesDir"/> is set, only from
/// that directory (<c>sha256-&lt;hex&gt;.sig</c> or <c>.json</c>, the output of <c>cosign download signature</c>; no registry
/// contact). Results are cached per (registry/repository, digest) for <see cref="ImageSignatureOptions.CacheTtl"/>; a lookup
/// that failed is cached for at most <see cref="RetryAfter"/> so it is retried soon. Concurrent lookups of one image share
/// one fetch. Keys are loaded once, at construction. Never throws for bad input, bad signatures or a registry that is down.
/// </summary>
public sealed partial class ImageSignatureVerifier : IImageSignatureVerifier, IDisposable
{
    /// <summary>How long a failed lookup's result is reused before the registry is asked again.</summary>
    public static readonly TimeSpan RetryAfter = TimeSpan.FromSeconds(30);

    /// <summary>Limit for one lookup (manifest, token and blobs together).</summary>
    public static readonly TimeSpan LookupTimeout = TimeSpan.FromSeconds(30);

    private const int MaxCacheEntries = 10_000;
    private const int MaxSignatureFileBytes = 1024 * 1024;
    private static readonly string[] SignatureFileExtensions = [".sig", ".json"];

    private readonly ImageSignatureOptions _options;
    private readonly ILogger _log;
    private readonly TimeProvider _time;
    private readonly TimeSpan _retryAfter;
    private readonly RegisteredImageKeys _keys;
    private readonly OciSignatureRegistry? _registry;
    private readonly ConcurrentDictionary<(string Image, string Digest), (ImageSignatureResult Result, DateTimeOffset Until)> _cache = new();
    private readonly ConcurrentDictionary<(string Image, string Digest), Lazy<Task<ImageSignatureResult>>> _inflight = new();

    public ImageSignatureVerifier(ImageSignatureOptions options, ILogger log, TimeProvider time)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(log);
        ArgumentNullException.ThrowIfNull(time);
        if (options.KeysDir is null)
            throw new ArgumentException("image signature checks need k8s.image_keys_dir", nameof(options));
        _options = options;
        _log = log;
        _time = time;
        _retryAfter = options.CacheTtl < RetryAfter ? options.CacheTtl : RetryAfter;
        var skipped = new List<(string File, string Reason)>();
        _keys = RegisteredImageKeys.Load(options.KeysDir, skipped);
        foreach (var (file, reason) in skipped)
            LogKeySkipped(_log, file, reason);
        if (_keys.Names.Count == 0)
            LogNoKeys(_log, options.KeysDir);
        else
            LogKeysLoaded(_log, _keys.Names.Count, string.Join(',', _keys.Names), options.SignaturesDir is null ? "registries" : options.SignaturesDir);
        if (options.SignaturesDir is null)
            _registry = new OciSignatureRegistry(options.RegistryCaPath, TimeSpan.FromSeconds(10));
    }

    /// <summary>The names of the keys loaded from <see cref="ImageSignatureOptions.KeysDir"/>.</summary>
    public IReadOnlyList<string> KeyNames => _keys.Names;

    public async ValueTask<ImageSignatureResult> SignersAsync(string imageReference, string imageDigest, CancellationToken ct)
    {
        if (imageDigest is null || !OciSignatureRegistry.DigestPattern().IsMatch(imageDigest))
            return new([], $"WRIT-IMAGESIG-REFERENCE: image digest is not sha256:<64 lower-case hex>");
        if (!ImageReference.TryParse(imageReference, out var image, out var error))
            return new([], $"WRIT-IMAGESIG-REFERENCE: {error}");
        if (_keys.Names.Count == 0)
            return ImageSignatureResult.None;
        var key = (image.ToString(), imageDigest);
        if (_cache.TryGetValue(key, out var cached) && _time.GetUtcNow() < cached.Until)
            return cached.Result;
        var lookup = _inflight.GetOrAdd(key, k => new Lazy<Task<ImageSignatureResult>>(() => LookupAndCacheAsync(k, image, imageDigest)));
        return await lookup.Value.WaitAsync(ct);
    }

    private async Task<ImageSignatureResult> LookupAndCacheAsync((string, string) key, ImageReference image, string digest)
    {
        try
        {
            var result = await LookupAsync(image, digest);
            var ttl = result.Error is null ? _options.CacheTtl : _retryAfter;
            if (ttl > TimeSpan.Zero)
            {
                if (_cache.Count >= MaxCacheEntries)
                    Prune();
                _cache[key] = (result, _time.GetUtcNow() + ttl);
            }
            return result;
        }
        finally
        {
            _inflight.TryRemove(key, out _);
        }
    }

    private async Task<ImageSignatureResult> LookupAsync(ImageReference image, string digest)
    {
        try
        {
            List<(string? LayerDigest, byte[] Payload, string? Signature)> candidates;
            if (_registry is not null)
            {
                using var timeout = new CancellationTokenSource(LookupTimeout);
                try
                {
                    var layers = await _registry.FetchAsync(image, digest, timeout.Token);
                    candidates = [.. layers.Select(l => ((string?)l.Digest, l.Payload, l.Signature))];
                }
                catch (OperationCanceledException) when (timeout.IsCancellationRequested)
                {
                    throw new ImageSignatureLookupException("WRIT-IMAGESIG-UNREACHABLE", $"registry {image.Registry} did not answer within {LookupTimeout.TotalSeconds:0} s");
                }
            }
            else
            {
                candidates = await ReadSignatureFilesAsync(digest);
            }
            var signers = new SortedSet<string>(StringComparer.Ordinal);
            var refused = 0;
            for (var i = 0; i < candidates.Count; i++)
            {
                var (layerDigest, payload, signature) = candidates[i];
                var (names, refusal) = CosignSimpleSigning.Check(image, digest, payload, signature, layerDigest, _keys);
                if (refusal is not null)
                {
                    refused++;
                    LogSignatureRefused(_log, image.ToString(), digest, i, refusal);
                }
                signers.UnionWith(names);
            }
            LogLookedUp(_log, image.ToString(), digest, signers.Count == 0 ? "none" : string.Join(',', signers), candidates.Count, refused);
            return new ImageSignatureResult([.. signers], null);
        }
        catch (ImageSignatureLookupException e)
        {
            LogLookupFailed(_log, image.ToString(), digest, e.Message, _retryAfter);
            return new ImageSignatureResult([], e.Message);
        }
    }

    /// <summary>The air-gapped directory: <c>sha256-&lt;hex&gt;.sig</c> and <c>sha256-&lt;hex&gt;.json</c>, each line a JSON
    /// object with <c>Payload</c> (base64 of the payload bytes) and <c>Base64Signature</c>. A missing file: unsigned.</summary>
    private async Task<List<(string?, byte[], string?)>> ReadSignatureFilesAsync(string digest)
    {
        var result = new List<(string?, byte[], string?)>();
        var stem = "sha256-" + digest["sha256:".Length..];
        foreach (var ext in SignatureFileExtensions)
        {
            var path = Path.Combine(_options.SignaturesDir!, stem + ext);
            string text;
            try
            {
                var info = new FileInfo(path);
                if (!info.Exists)
                    continue;
                if (info.Length > MaxSignatureFileBytes)
                    throw new ImageSignatureLookupException("WRIT-IMAGESIG-OFFLINE", $"signature file {path} is larger than {MaxSignatureFileBytes} bytes");
                text = await File.ReadAllTextAsync(path);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new ImageSignatureLookupException("WRIT-IMAGESIG-OFFLINE", $"cannot read signature file {path}: {e.Message}");
            }
            foreach (var line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                byte[] payload = [];
                string? signature = null;
                try
                {
                    using var doc = JsonDocument.Parse(line, new JsonDocumentOptions { MaxDepth = 16 });
                    if (doc.RootElement.ValueKind == JsonValueKind.Object)
                    {
                        if (doc.RootElement.TryGetProperty("Payload", out var p) && p.ValueKind == JsonValueKind.String)
                            payload = Convert.FromBase64String(p.GetString()!);
                        if (doc.RootElement.TryGetProperty("Base64Signature", out var s) && s.ValueKind == JsonValueKind.String)
                            signature = s.GetString();
                    }
                }
                catch (Exception e) when (e is JsonException or FormatException)
                {
                    payload = [];
                }
                // An unreadable line still goes through the check, which refuses it (and says so in the log).
                result.Add((null, payload, signature));
            }
        }
        return result;
    }

    private void Prune()
    {
        var now = _time.GetUtcNow();
        foreach (var (k, v) in _cache)
        {
            if (v.Until <= now)
                _cache.TryRemove(k, out _);
        }
        if (_cache.Count >= MaxCacheEntries)
            _cache.Clear();
    }

    public void Dispose()
    {
        _registry?.Dispose();
        _keys.Dispose();
    }

    [LoggerMessage(EventId = 2780, Level = LogLevel.Warning, Message = "Image signing key {File} skipped: {Reason}")]
    private static partial void LogKeySkipped(ILogger logger, string file, string reason);

    [LoggerMessage(EventId = 2781, Level = LogLevel.Information, Message = "Image signature checks: {Count} registered key(s) {Names}; signatures from {Source}")]
    private static partial void LogKeysLoaded(ILogger logger, int count, string names, string source);

    [LoggerMessage(EventId = 2782, Level = LogLevel.Warning, Message = "No usable image signing key in {Dir}: no image gets k8s:image-signed-by")]
    private static partial void LogNoKeys(ILogger logger, string dir);

    [LoggerMessage(EventId = 2783, Level = LogLevel.Warning, Message = "Image signature lookup for {Image}@{Digest} failed: {Reason}; retried after {RetryAfter}")]
    private static partial void LogLookupFailed(ILogger logger, string image, string digest, string reason, TimeSpan retryAfter);

    [LoggerMessage(EventId = 2784, Level = LogLevel.Warning, Message = "Image {Image}@{Digest}: signature {Index} not counted: {Reason}")]
    private static partial void LogSignatureRefused(ILogger logger, string image, string digest, int index, string reason);

    [LoggerMessage(EventId = 2785, Level = LogLevel.Debug, Message = "Image {Image}@{Digest}: signed by {Signers} ({Signatures} signature(s), {Refused} not counted)")]
    private static partial void LogLookedUp(ILogger logger, string image, string digest, string signers, int signatures, int refused);
}
