using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;
using Writ.Tests.Shared;

namespace Writ.Agent.Tests.WorkloadAttestation.ImageSignatures;

/// <summary>
/// An OCI distribution registry on <see cref="LoopbackHttps"/>: serves manifests by tag and blobs by digest under
/// <c>/v2/&lt;repo&gt;/…</c>, and (by default) the anonymous token dance: a request without a token for its repository gets
/// <c>401</c> with a Bearer challenge naming <c>/token</c>, which hands out a token per <c>repository:&lt;repo&gt;:pull</c> scope.
/// Tests publish cosign signature manifests (<see cref="PublishSignatures"/>) and can take the registry down
/// (<see cref="Down"/>: connections are aborted), redirect blobs to a CDN path, or ask for Basic credentials.
/// </summary>
internal sealed class OciTestRegistry : IAsyncDisposable
{
    private readonly ConcurrentDictionary<string, byte[]> _manifests = new();
    private readonly ConcurrentDictionary<string, byte[]> _blobs = new();
    private readonly ConcurrentDictionary<string, string> _tokens = new(); // token → repository

    private OciTestRegistry(LoopbackHttps server) => Server = server;

    public LoopbackHttps Server { get; }

    /// <summary><c>127.0.0.1:PORT</c>, the registry part of image references.</summary>
    public string Host => $"127.0.0.1:{Server.Port}";

    private string Origin => Server.BaseUri.GetLeftPart(UriPartial.Authority);

    public bool RequireToken { get; set; } = true;
    public bool BasicOnly { get; set; }

    /// <summary>Hands out tokens but refuses them (a registry that needs credentials beyond anonymous pull).</summary>
    public bool RefuseTokens { get; set; }
    public bool Down { get; set; }
    public bool RedirectBlobs { get; set; }

    /// <summary>Scopes asked of the token endpoint.</summary>
    public ConcurrentQueue<string> TokenScopes { get; } = new();

    /// <summary>The Authorization header of each CDN (redirected blob) request ("" when none).</summary>
    public ConcurrentQueue<string> CdnAuthorizations { get; } = new();

    /// <summary>Manifest requests served (any answer).</summary>
    public int ManifestRequests => _manifestRequests;
    private int _manifestRequests;

    /// <summary>Replaces the answer to a manifest request (e.g. a huge body); null: the normal registry.</summary>
    public Func<HttpContext, Task>? ManifestOverride { get; set; }

    public static async Task<OciTestRegistry> StartAsync(string dir)
    {
        var registry = new OciTestRegistry(await LoopbackHttps.StartAsync(dir, name: "registry"));
        registry.Server.Handler = registry.HandleAsync;
        return registry;
    }

    public static string Sha256(byte[] data) => "sha256:" + Convert.ToHexStringLower(SHA256.HashData(data));

    /// <summary>A cosign simple-signing payload (the JSON cosign signs), built as cosign writes it.</summary>
    public static byte[] Payload(string dockerReference, string digest, string type = "cosign container image signature")
    {
        var payload = new JsonObject
        {
            ["critical"] = new JsonObject
            {
                ["identity"] = new JsonObject { ["docker-reference"] = dockerReference },
                ["image"] = new JsonObject { ["docker-manifest-digest"] = digest },
                ["type"] = type,
            },
            ["optional"] = null,
        };
        return Encoding.UTF8.GetBytes(payload.ToJsonString());
    }

    /// <summary>Publishes the tag <c>sha256-&lt;hex&gt;.sig</c> of <paramref name="digest"/> in <paramref name="repository"/>: an OCI
    /// image manifest with one simple-signing layer per signature; each payload is stored as a blob under
    /// <c>layerDigest</c> (default: its own digest).</summary>
    public void PublishSignatures(string repository, string digest, params (byte[] Payload, string Signature, string? LayerDigest)[] signatures)
    {
        var config = Encoding.UTF8.GetBytes("{}");
        _blobs[Sha256(config)] = config;
        var layers = new JsonArray();
        foreach (var (payload, signature, layerDigest) in signatures)
        {
            var d = layerDigest ?? Sha256(payload);
            _blobs[d] = payload;
            layers.Add(new JsonObject
            {
                ["mediaType"] = "application/vnd.dev.cosign.simplesigning.v1+json",
                ["size"] = payload.Length,
                ["digest"] = d,
                ["annotations"] = new JsonObject { ["dev.cosignproject.cosign/signature"] = signature },
            });
        }
        var manifest = new JsonObject
        {
            ["schemaVersion"] = 2,
            ["mediaType"] = "application/vnd.oci.image.manifest.v1+json",
            ["config"] = new JsonObject { ["mediaType"] = "application/vnd.oci.image.config.v1+json", ["size"] = config.Length, ["digest"] = Sha256(config) },
            ["layers"] = layers,
        };
        _manifests[$"{repository}:sha256-{digest["sha256:".Length..]}.sig"] = Encoding.UTF8.GetBytes(manifest.ToJsonString());
    }

    private async Task HandleAsync(HttpContext ctx)
    {
        if (Down)
        {
            ctx.Abort();
            return;
        }
        var path = ctx.Request.Path.Value ?? "";
        if (path == "/token")
        {
            var scope = ctx.Request.Query["scope"].ToString();
            TokenScopes.Enqueue(scope);
            var parts = scope.Split(':');
            if (parts.Length != 3 || parts[0] != "repository" || parts[2] != "pull" || ctx.Request.Query["service"] != "test-registry")
            {
                ctx.Response.StatusCode = 400;
                return;
            }
            var token = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16));
            _tokens[token] = parts[1];
            ctx.Response.ContentType = "application/json";
            await ctx.Response.WriteAsync(new JsonObject { ["token"] = token, ["expires_in"] = 300 }.ToJsonString());
            return;
        }
        if (path.StartsWith("/cdn/", StringComparison.Ordinal))
        {
            CdnAuthorizations.Enqueue(ctx.Request.Headers.Authorization.ToString());
            await ServeAsync(ctx, _blobs.TryGetValue(path["/cdn/".Length..], out var cdnBlob) ? cdnBlob : null, "application/octet-stream");
            return;
        }
        if (!path.StartsWith("/v2/", StringComparison.Ordinal))
        {
            ctx.Response.StatusCode = 404;
            return;
        }
        var rest = path["/v2/".Length..];
        var isManifest = rest.Contains("/manifests/", StringComparison.Ordinal);
        var split = rest.LastIndexOf(isManifest ? "/manifests/" : "/blobs/", StringComparison.Ordinal);
        if (split < 0)
        {
            ctx.Response.StatusCode = 404;
            return;
        }
        var repository = rest[..split];
        var reference = rest[(split + (isManifest ? "/manifests/" : "/blobs/").Length)..];
        if (isManifest)
            Interlocked.Increment(ref _manifestRequests);
        if (BasicOnly)
        {
            ctx.Response.StatusCode = 401;
            ctx.Response.Headers.WWWAuthenticate = "Basic realm=\"registry\"";
            return;
        }
        if (RequireToken)
        {
            var auth = ctx.Request.Headers.Authorization.ToString();
            if (!auth.StartsWith("Bearer ", StringComparison.Ordinal) || !_tokens.TryGetValue(auth["Bearer ".Length..], out var granted) || granted != repository || RefuseTokens)
            {
                ctx.Response.StatusCode = 401;
                ctx.Response.Headers.WWWAuthenticate = $"Bearer realm=\"{Origin}/token\",service=\"test-registry\",scope=\"repository:{repository}:pull\"";
                return;
            }
        }
        if (isManifest)
        {
            if (ManifestOverride is { } over)
            {
                await over(ctx);
                return;
            }
            await ServeAsync(ctx, _manifests.TryGetValue($"{repository}:{reference}", out var m) ? m : null, "application/vnd.oci.image.manifest.v1+json");
            return;
        }
        if (RedirectBlobs && _blobs.ContainsKey(reference))
        {
            ctx.Response.StatusCode = 307;
            ctx.Response.Headers.Location = $"{Origin}/cdn/{reference}";
            return;
        }
        await ServeAsync(ctx, _blobs.TryGetValue(reference, out var blob) ? blob : null, "application/octet-stream");
    }

    private static async Task ServeAsync(HttpContext ctx, byte[]? body, string contentType)
    {
        if (body is null)
        {
            ctx.Response.StatusCode = 404;
            return;
        }
        ctx.Response.ContentType = contentType;
        ctx.Response.ContentLength = body.Length;
        await ctx.Response.Body.WriteAsync(body);
    }

    public ValueTask DisposeAsync() => Server.DisposeAsync();
}
