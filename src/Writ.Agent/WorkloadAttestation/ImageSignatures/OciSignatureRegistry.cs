using System.Net;
using System.Net.Http.Headers;
using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Writ.Agent.WorkloadAttestation.ImageSignatures;

/// <summary>A signature layer of a cosign signature manifest: the layer digest, the payload blob and the signature annotation.</summary>
internal sealed record SignatureLayer(string Digest, byte[] Payload, string? Signature);

/// <summary>A lookup that could not be completed (the code is one of docs/errors.md's <c>WRIT-IMAGESIG-…</c>).</summary>
internal sealed class ImageSignatureLookupException(string code, string message) : Exception($"{code}: {message}")
{
    public string Code { get; } = code;
}

/// <summary>
/// Reads cosign signatures from a registry over the OCI distribution API: <c>GET /v2/&lt;repo&gt;/manifests/sha256-&lt;hex&gt;.sig</c>
/// (OCI or Docker v2 image manifest), then each simple-signing layer's blob. HTTPS only; anonymous pull with the
/// registry token dance (a <c>401</c> with <c>WWW-Authenticate: Bearer realm=…,service=…</c> → a token for
/// <c>repository:&lt;repo&gt;:pull</c> from the realm → the request again). Bodies are size-capped; no redirect is followed
/// except one for a blob (registries hand blobs to a CDN), to an https URL and without the registry token.
/// </summary>
internal sealed partial class OciSignatureRegistry : IDisposable
{
    /// <summary>Largest signature manifest read.</summary>
    public const int MaxManifestBytes = 1024 * 1024;

    /// <summary>Most simple-signing layers checked in one signature manifest.</summary>
    public const int MaxSignatureLayers = 64;

    private const int MaxTokenBytes = 64 * 1024;
    private const string OciManifest = "application/vnd.oci.image.manifest.v1+json";
    private const string DockerManifest = "application/vnd.docker.distribution.manifest.v2+json";

    private readonly HttpClient _http;

    [GeneratedRegex("^sha256:[0-9a-f]{64}$", RegexOptions.CultureInvariant)]
    internal static partial Regex DigestPattern();

    /// <param name="caPath">PEM bundle that replaces the system roots for every connection (registry, token realm, blob
    /// redirect); null: the system roots.</param>
    /// <param name="requestTimeout">Limit for each HTTP request.</param>
    public OciSignatureRegistry(string? caPath, TimeSpan requestTimeout)
    {
        var handler = new SocketsHttpHandler
        {
            AllowAutoRedirect = false,
            ConnectTimeout = requestTimeout,
            AutomaticDecompression = DecompressionMethods.None,
            UseCookies = false,
            UseProxy = true,
        };
        if (caPath is not null)
        {
            var roots = new X509Certificate2Collection();
            roots.ImportFromPemFile(caPath);
            var policy = new X509ChainPolicy { TrustMode = X509ChainTrustMode.CustomRootTrust, RevocationMode = X509RevocationMode.NoCheck };
            policy.CustomTrustStore.AddRange(roots);
            handler.SslOptions = new SslClientAuthenticationOptions { CertificateChainPolicy = policy };
        }
        _http = new HttpClient(handler) { Timeout = requestTimeout };
        _http.DefaultRequestHeaders.UserAgent.ParseAdd("writ-agent");
    }

    /// <summary>The simple-signing layers of the signature of <paramref name="digest"/>; empty when the registry has none (404).</summary>
    public async Task<IReadOnlyList<SignatureLayer>> FetchAsync(ImageReference image, string digest, CancellationToken ct)
    {
        if (!DigestPattern().IsMatch(digest))
            throw new ImageSignatureLookupException("WRIT-IMAGESIG-REFERENCE", $"image digest '{digest}' is not sha256:<64 hex>");
        var registry = new Uri($"https://{image.ApiHost}/");
        string? token = null;
        var manifestUri = new Uri(registry, $"v2/{image.Repository}/manifests/sha256-{digest["sha256:".Length..]}.sig");
        byte[]? manifest;
        (manifest, token) = await GetAsync(image, manifestUri, token, accept: true, MaxManifestBytes, "signature manifest", followRedirect: false, ct);
        if (manifest is null)
            return [];
        var layers = ParseManifest(manifest);
        var result = new List<SignatureLayer>(layers.Count);
        foreach (var (layerDigest, signature) in layers)
        {
            var blobUri = new Uri(registry, $"v2/{image.Repository}/blobs/{layerDigest}");
            byte[]? blob;
            (blob, token) = await GetAsync(image, blobUri, token, accept: false, CosignSimpleSigning.MaxPayloadBytes, "signature payload", followRedirect: true, ct);
            if (blob is not null)
                result.Add(new SignatureLayer(layerDigest, blob, signature));
        }
        return result;
    }

    private static List<(string Digest, string? Signature)> ParseManifest(byte[] manifest)
    {
        var layers = new List<(string, string?)>();
        try
        {
            using var doc = JsonDocument.Parse(manifest, new JsonDocumentOptions { MaxDepth = 16 });
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw new JsonException();
            if (root.TryGetProperty("mediaType", out var mt) && mt.ValueKind == JsonValueKind.String && mt.GetString() is not (OciManifest or DockerManifest))
                throw new ImageSignatureLookupException("WRIT-IMAGESIG-REGISTRY", $"the signature tag is a {mt.GetString()}, not an image manifest");
            if (!root.TryGetProperty("layers", out var list) || list.ValueKind != JsonValueKind.Array)
                throw new ImageSignatureLookupException("WRIT-IMAGESIG-REGISTRY", "the signature manifest has no layers");
            foreach (var layer in list.EnumerateArray())
            {
                if (layer.ValueKind != JsonValueKind.Object
                    || !layer.TryGetProperty("mediaType", out var lmt) || lmt.ValueKind != JsonValueKind.String
                    || lmt.GetString() != CosignSimpleSigning.LayerMediaType)
                    continue;
                if (!layer.TryGetProperty("digest", out var d) || d.ValueKind != JsonValueKind.String || !DigestPattern().IsMatch(d.GetString()!))
                    continue; // Only sha256 layers are fetched; another digest cannot be checked, so it cannot count.
                if (layer.TryGetProperty("size", out var size) && (size.ValueKind != JsonValueKind.Number || !size.TryGetInt64(out var n) || n < 0 || n > CosignSimpleSigning.MaxPayloadBytes))
                    continue;
                string? signature = null;
                if (layer.TryGetProperty("annotations", out var ann) && ann.ValueKind == JsonValueKind.Object
                    && ann.TryGetProperty(CosignSimpleSigning.SignatureAnnotation, out var s) && s.ValueKind == JsonValueKind.String)
                    signature = s.GetString();
                if (layers.Count == MaxSignatureLayers)
                    throw new ImageSignatureLookupException("WRIT-IMAGESIG-REGISTRY", $"the signature manifest has more than {MaxSignatureLayers} signature layers");
                layers.Add((d.GetString()!, signature));
            }
        }
        catch (JsonException)
        {
            throw new ImageSignatureLookupException("WRIT-IMAGESIG-REGISTRY", "the signature manifest is not JSON");
        }
        return layers;
    }

    /// <summary>GET with the token dance. Null body: 404. Returns the token to reuse for the next request of the lookup.</summary>
    private async Task<(byte[]? Body, string? Token)> GetAsync(
        ImageReference image, Uri uri, string? token, bool accept, int maxBytes, string what, bool followRedirect, CancellationToken ct)
    {
        for (var attempt = 0; ; attempt++)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, uri);
            if (accept)
            {
                request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue(OciManifest));
                request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue(DockerManifest));
            }
            if (token is not null)
                request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
            using var response = await SendAsync(request, image, ct);
            switch (response.StatusCode)
            {
                case HttpStatusCode.OK:
                    return (await ReadCappedAsync(response, maxBytes, what, image, ct), token);
                case HttpStatusCode.NotFound:
                    return (null, token);
                case HttpStatusCode.Unauthorized when attempt == 0:
                    token = await TokenAsync(image, response, ct);
                    continue;
                case HttpStatusCode.Unauthorized:
                    throw new ImageSignatureLookupException("WRIT-IMAGESIG-AUTH", $"registry {image.Registry} refused anonymous pull of {image.Repository} even with a token: registry credentials are not supported; use k8s.image_signatures_dir");
                case HttpStatusCode.MovedPermanently or HttpStatusCode.Found or HttpStatusCode.SeeOther or HttpStatusCode.TemporaryRedirect or HttpStatusCode.PermanentRedirect
                    when followRedirect && response.Headers.Location is { } location:
                    return (await FollowBlobRedirectAsync(image, uri, location, maxBytes, what, ct), token);
                default:
                    throw new ImageSignatureLookupException("WRIT-IMAGESIG-REGISTRY", $"registry {image.Registry} answered {(int)response.StatusCode} for the {what} of {image.Repository}");
            }
        }
    }

    private async Task<byte[]?> FollowBlobRedirectAsync(ImageReference image, Uri from, Uri location, int maxBytes, string what, CancellationToken ct)
    {
        var target = location.IsAbsoluteUri ? location : new Uri(from, location);
        if (target.Scheme != Uri.UriSchemeHttps)
            throw new ImageSignatureLookupException("WRIT-IMAGESIG-REGISTRY", $"registry {image.Registry} redirected the {what} to a non-https URL");
        // The registry token is for the registry; the redirect target (a CDN URL) carries its own authorization.
        using var request = new HttpRequestMessage(HttpMethod.Get, target);
        using var response = await SendAsync(request, image, ct);
        return response.StatusCode switch
        {
            HttpStatusCode.OK => await ReadCappedAsync(response, maxBytes, what, image, ct),
            HttpStatusCode.NotFound => null,
            _ => throw new ImageSignatureLookupException("WRIT-IMAGESIG-REGISTRY", $"the redirect of registry {image.Registry} for the {what} answered {(int)response.StatusCode}"),
        };
    }

    private async Task<string> TokenAsync(ImageReference image, HttpResponseMessage challenge, CancellationToken ct)
    {
        var bearer = challenge.Headers.WwwAuthenticate.FirstOrDefault(h => string.Equals(h.Scheme, "Bearer", StringComparison.OrdinalIgnoreCase));
        if (bearer is null)
            throw new ImageSignatureLookupException("WRIT-IMAGESIG-AUTH", $"registry {image.Registry} asks for credentials (no Bearer challenge): registry credentials are not supported; use k8s.image_signatures_dir");
        var parameters = ParseChallenge(bearer.Parameter);
        if (!parameters.TryGetValue("realm", out var realm) || !Uri.TryCreate(realm, UriKind.Absolute, out var realmUri) || realmUri.Scheme != Uri.UriSchemeHttps)
            throw new ImageSignatureLookupException("WRIT-IMAGESIG-AUTH", $"registry {image.Registry} names no https token realm in its Bearer challenge");
        var query = new StringBuilder(realmUri.Query.Length > 1 ? realmUri.Query[1..] + "&" : "");
        if (parameters.TryGetValue("service", out var service))
            query.Append("service=").Append(Uri.EscapeDataString(service)).Append('&');
        query.Append("scope=").Append(Uri.EscapeDataString($"repository:{image.Repository}:pull"));
        var tokenUri = new UriBuilder(realmUri) { Query = query.ToString() }.Uri;
        using var request = new HttpRequestMessage(HttpMethod.Get, tokenUri);
        using var response = await SendAsync(request, image, ct);
        if (response.StatusCode != HttpStatusCode.OK)
            throw new ImageSignatureLookupException("WRIT-IMAGESIG-AUTH", $"the token realm of registry {image.Registry} answered {(int)response.StatusCode} for anonymous pull of {image.Repository}");
        var body = await ReadCappedAsync(response, MaxTokenBytes, "token answer", image, ct);
        try
        {
            using var doc = JsonDocument.Parse(body);
            foreach (var name in (ReadOnlySpan<string>)["token", "access_token"])
            {
                if (doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty(name, out var t)
                    && t.ValueKind == JsonValueKind.String && t.GetString() is { Length: > 0 } value && value.All(c => c is > ' ' and < '\u007f'))
                    return value;
            }
        }
        catch (JsonException)
        {
        }
        throw new ImageSignatureLookupException("WRIT-IMAGESIG-AUTH", $"the token realm of registry {image.Registry} answered no usable token");
    }

    /// <summary>The <c>key="value"</c> pairs of a challenge (values may hold commas inside quotes).</summary>
    internal static Dictionary<string, string> ParseChallenge(string? text)
    {
        var result = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        var s = text ?? "";
        var i = 0;
        while (i < s.Length)
        {
            while (i < s.Length && (s[i] == ',' || s[i] == ' '))
                i++;
            var eq = s.IndexOf('=', i);
            if (eq < 0)
                break;
            var key = s[i..eq].Trim();
            i = eq + 1;
            string value;
            if (i < s.Length && s[i] == '"')
            {
                var sb = new StringBuilder();
                i++;
                while (i < s.Length && s[i] != '"')
                {
                    if (s[i] == '\\' && i + 1 < s.Length)
                        i++;
                    sb.Append(s[i++]);
                }
                i++;
                value = sb.ToString();
            }
            else
            {
                var comma = s.IndexOf(',', i);
                value = (comma < 0 ? s[i..] : s[i..comma]).Trim();
                i = comma < 0 ? s.Length : comma;
            }
            result.TryAdd(key, value);
        }
        return result;
    }

    private async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, ImageReference image, CancellationToken ct)
    {
        try
        {
            return await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, ct);
        }
        catch (Exception e) when (e is HttpRequestException or IOException or AuthenticationException
                                  || (e is TaskCanceledException && !ct.IsCancellationRequested))
        {
            throw new ImageSignatureLookupException("WRIT-IMAGESIG-UNREACHABLE", $"{request.RequestUri!.Host}:{request.RequestUri.Port} (for registry {image.Registry}) unreachable: {OneLine(e)}");
        }
    }

    private static async Task<byte[]> ReadCappedAsync(HttpResponseMessage response, int maxBytes, string what, ImageReference image, CancellationToken ct)
    {
        if (response.Content.Headers.ContentLength > maxBytes)
            throw new ImageSignatureLookupException("WRIT-IMAGESIG-REGISTRY", $"the {what} from registry {image.Registry} is larger than {maxBytes} bytes");
        try
        {
            await using var stream = await response.Content.ReadAsStreamAsync(ct);
            using var buffer = new MemoryStream();
            var chunk = new byte[16 * 1024];
            int n;
            while ((n = await stream.ReadAsync(chunk, ct)) > 0)
            {
                if (buffer.Length + n > maxBytes)
                    throw new ImageSignatureLookupException("WRIT-IMAGESIG-REGISTRY", $"the {what} from registry {image.Registry} is larger than {maxBytes} bytes");
                buffer.Write(chunk, 0, n);
            }
            return buffer.ToArray();
        }
        catch (Exception e) when (e is HttpRequestException or IOException || (e is TaskCanceledException && !ct.IsCancellationRequested))
        {
            throw new ImageSignatureLookupException("WRIT-IMAGESIG-UNREACHABLE", $"registry {image.Registry} broke off the {what}: {OneLine(e)}");
        }
    }

    private static string OneLine(Exception e)
    {
        var inner = e;
        while (inner.InnerException is not null)
            inner = inner.InnerException;
        var text = inner == e ? e.Message : $"{e.Message} ({inner.Message})";
        return text.ReplaceLineEndings(" ");
    }

    public void Dispose() => _http.Dispose();
}
