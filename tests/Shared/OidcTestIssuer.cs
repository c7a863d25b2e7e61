using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;

namespace Writ.Tests.Shared;

/// <summary>
/// An OIDC issuer on loopback HTTPS, as CI platforms and Kubernetes clusters serve one: a real discovery document at
/// <c>/.well-known/openid-configuration</c> and a JWKS at <c>/jwks</c> with real public keys, and tokens signed by those
/// keys with whatever header and claims a test asks for (so attack tests can make expired, foreign-audience, wrongly
/// signed, <c>alg: none</c> and HS256 tokens). Keys can be added and rotated; the JWKS can be made to fail.
/// The issuer URL is <see cref="Issuer"/> (https://127.0.0.1:PORT, or with a path prefix when asked, as GitLab/GitHub
/// issuers have none but some do). Clients must trust <see cref="CaPemPath"/>.
/// </summary>
public sealed class OidcTestIssuer : IAsyncDisposable
{
    private readonly LoopbackHttps _http;
    private readonly List<SigningKey> _published = [];
    private readonly object _gate = new();

    private OidcTestIssuer(LoopbackHttps http, string pathPrefix)
    {
        _http = http;
        Issuer = http.BaseUri.GetLeftPart(UriPartial.Authority) + pathPrefix;   // no trailing slash: tokens' iss is exactly this
        _http.Handler = HandleAsync;
    }

    /// <summary>The <c>iss</c> of every token and the discovery base URL.</summary>
    public string Issuer { get; }

    public string CaPemPath => _http.CaPemPath;

    public string JwksUri => Issuer + "/jwks";

    /// <summary>Requests for the JWKS so far (to see caching and refresh-on-unknown-kid).</summary>
    public int JwksRequests => Volatile.Read(ref _jwksRequests);

    /// <summary>Requests for the discovery document so far.</summary>
    public int DiscoveryRequests => Volatile.Read(ref _discoveryRequests);

    private int _jwksRequests;
    private int _discoveryRequests;

    /// <summary>When set, the JWKS and discovery answer with this status (e.g. 503) instead.</summary>
    public int? FailWith { get; set; }

    /// <summary>The key tokens are signed with by default (published).</summary>
    public SigningKey Current { get; private set; } = null!;

    public static async Task<OidcTestIssuer> StartAsync(string dir, string pathPrefix = "", string keyType = "ES256")
    {
        var http = await LoopbackHttps.StartAsync(dir, name: "oidc");
        var issuer = new OidcTestIssuer(http, pathPrefix);
        issuer.Current = issuer.AddKey(keyType);
        return issuer;
    }

    /// <summary>A new key of <paramref name="alg"/> (ES256, ES384, RS256, PS256), published in the JWKS unless <paramref name="publish"/> is false.</summary>
    public SigningKey AddKey(string alg = "ES256", bool publish = true)
    {
        var key = SigningKey.Create(alg);
        if (publish)
        {
            lock (_gate)
            {
                _published.Add(key);
            }
        }
        return key;
    }

    /// <summary>Publishes a new key and signs with it from now on; the old one stays published unless <paramref name="dropOld"/>.</summary>
    public SigningKey Rotate(string alg = "ES256", bool dropOld = false)
    {
        var key = AddKey(alg);
        lock (_gate)
        {
            if (dropOld)
            {
                _published.Remove(Current);
            }
        }
        Current = key;
        return key;
    }

    /// <summary>
    /// Claims of a typical job token: iss, sub, aud, iat, nbf, exp (+<paramref name="lifetime"/>), jti; callers add or
    /// override with <paramref name="extra"/> (a null value removes a claim).
    /// </summary>
    public JsonObject Claims(string subject, string audience, TimeSpan? lifetime = null, IDictionary<string, object?>? extra = null)
    {
        var now = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        var claims = new JsonObject
        {
            ["iss"] = Issuer,
            ["sub"] = subject,
            ["aud"] = audience,
            ["iat"] = now,
            ["nbf"] = now,
            ["exp"] = now + (long)(lifetime ?? TimeSpan.FromMinutes(10)).TotalSeconds,
            ["jti"] = Guid.NewGuid().ToString("N"),
        };
        foreach (var (k, v) in extra ?? new Dictionary<string, object?>())
        {
            if (v is null)
            {
                claims.Remove(k);
            }
            else
            {
                claims[k] = JsonSerializer.SerializeToNode(v);
            }
        }
        return claims;
    }

    /// <summary>A token for <paramref name="claims"/> signed by <paramref name="key"/> (default <see cref="Current"/>); header fields may be overridden.</summary>
    public string Mint(JsonObject claims, SigningKey? key = null, IDictionary<string, string?>? header = null)
    {
        key ??= Current;
        var h = new JsonObject { ["alg"] = key.Alg, ["typ"] = "JWT", ["kid"] = key.Kid };
        foreach (var (k, v) in header ?? new Dictionary<string, string?>())
        {
            if (v is null)
            {
                h.Remove(k);
            }
            else
            {
                h[k] = v;
            }
        }
        var signingInput = B64(Encoding.UTF8.GetBytes(h.ToJsonString())) + "." + B64(Encoding.UTF8.GetBytes(claims.ToJsonString()));
        return signingInput + "." + B64(key.Sign(Encoding.ASCII.GetBytes(signingInput)));
    }

    /// <summary>An unsigned token (<c>alg: none</c>, empty signature).</summary>
    public static string MintUnsigned(JsonObject claims) =>
        B64(Encoding.UTF8.GetBytes("{\"alg\":\"none\",\"typ\":\"JWT\"}")) + "." + B64(Encoding.UTF8.GetBytes(claims.ToJsonString())) + ".";

    /// <summary>An HS256 token whose HMAC secret is <paramref name="secret"/> (e.g. the issuer's public key: the key-confusion attack).</summary>
    public static string MintHs256(JsonObject claims, byte[] secret, string? kid = null)
    {
        var h = new JsonObject { ["alg"] = "HS256", ["typ"] = "JWT" };
        if (kid is not null)
        {
            h["kid"] = kid;
        }
        var signingInput = B64(Encoding.UTF8.GetBytes(h.ToJsonString())) + "." + B64(Encoding.UTF8.GetBytes(claims.ToJsonString()));
        return signingInput + "." + B64(HMACSHA256.HashData(secret, Encoding.ASCII.GetBytes(signingInput)));
    }

    private async Task HandleAsync(HttpContext ctx)
    {
        var path = ctx.Request.Path.Value ?? "";
        var prefix = new Uri(Issuer).AbsolutePath.TrimEnd('/');
        if (path == prefix + "/.well-known/openid-configuration")
        {
            Interlocked.Increment(ref _discoveryRequests);
            if (FailWith is { } s)
            {
                ctx.Response.StatusCode = s;
                return;
            }
            ctx.Response.ContentType = "application/json";
            await ctx.Response.WriteAsync(new JsonObject
            {
                ["issuer"] = Issuer,
                ["jwks_uri"] = JwksUri,
                ["response_types_supported"] = new JsonArray("id_token"),
                ["subject_types_supported"] = new JsonArray("public", "pairwise"),
                ["id_token_signing_alg_values_supported"] = new JsonArray("RS256", "ES256"),
                ["claims_supported"] = new JsonArray("sub", "aud", "exp", "iat", "iss", "jti", "nbf", "repository", "ref"),
            }.ToJsonString());
            return;
        }
        if (path == prefix + "/jwks")
        {
            Interlocked.Increment(ref _jwksRequests);
            if (FailWith is { } s)
            {
                ctx.Response.StatusCode = s;
                return;
            }
            JsonArray keys;
            lock (_gate)
            {
                keys = [.. _published.Select(k => (JsonNode)k.Jwk())];
            }
            ctx.Response.ContentType = "application/json";
            await ctx.Response.WriteAsync(new JsonObject { ["keys"] = keys }.ToJsonString());
            return;
        }
        ctx.Response.StatusCode = 404;
    }

    public static string B64(ReadOnlySpan<byte> data) => Convert.ToBase64String(data).TrimEnd('=').Replace('+', '-').Replace('/', '_');

    public ValueTask DisposeAsync() => _http.DisposeAsync();

    /// <summary>A signing key with its JWK (public part) and kid.</summary>
    public sealed class SigningKey
    {
        private readonly ECDsa? _ec;
        private readonly RSA? _rsa;

        private SigningKey(string alg, ECDsa? ec, RSA? rsa)
        {
            Alg = alg;
            _ec = ec;
            _rsa = rsa;
            Kid = Convert.ToHexStringLower(SHA256.HashData(SubjectPublicKeyInfo))[..16];
        }

        public string Alg { get; }

        public string Kid { get; }

        public byte[] SubjectPublicKeyInfo => _ec?.ExportSubjectPublicKeyInfo() ?? _rsa!.ExportSubjectPublicKeyInfo();

        /// <summary>The public key as PEM (what an attacker would use as an HMAC secret).</summary>
        public string PublicPem => _ec?.ExportSubjectPublicKeyInfoPem() ?? _rsa!.ExportSubjectPublicKeyInfoPem();

        public static SigningKey Create(string alg) => alg switch
        {
            "ES256" => new(alg, ECDsa.Create(ECCurve.NamedCurves.nistP256), null),
            "ES384" => new(alg, ECDsa.Create(ECCurve.NamedCurves.nistP384), null),
            "RS256" or "PS256" or "RS384" or "RS512" => new(alg, null, RSA.Create(2048)),
            _ => throw new ArgumentException($"unsupported test key algorithm {alg}", nameof(alg)),
        };

        public byte[] Sign(byte[] data) => Alg switch
        {
            "ES256" => _ec!.SignData(data, HashAlgorithmName.SHA256, DSASignatureFormat.IeeeP1363FixedFieldConcatenation),
            "ES384" => _ec!.SignData(data, HashAlgorithmName.SHA384, DSASignatureFormat.IeeeP1363FixedFieldConcatenation),
            "RS256" => _rsa!.SignData(data, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1),
            "RS384" => _rsa!.SignData(data, HashAlgorithmName.SHA384, RSASignaturePadding.Pkcs1),
            "RS512" => _rsa!.SignData(data, HashAlgorithmName.SHA512, RSASignaturePadding.Pkcs1),
            "PS256" => _rsa!.SignData(data, HashAlgorithmName.SHA256, RSASignaturePadding.Pss),
            _ => throw new InvalidOperationException(Alg),
        };

        public JsonObject Jwk()
        {
            if (_ec is not null)
            {
                var p = _ec.ExportParameters(false);
                return new JsonObject
                {
                    ["kty"] = "EC",
                    ["crv"] = Alg == "ES384" ? "P-384" : "P-256",
                    ["x"] = B64(p.Q.X),
                    ["y"] = B64(p.Q.Y),
                    ["kid"] = Kid,
                    ["alg"] = Alg,
                    ["use"] = "sig",
                };
            }
            var r = _rsa!.ExportParameters(false);
            return new JsonObject { ["kty"] = "RSA", ["n"] = B64(r.Modulus), ["e"] = B64(r.Exponent), ["kid"] = Kid, ["alg"] = Alg, ["use"] = "sig" };
        }
    }
}
