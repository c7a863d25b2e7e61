using System.Text;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;
using Writ.Server.Oidc;
using Writ.Tests.Shared;

namespace Writ.Server.Tests.Oidc;

/// <summary>
/// An issuer that misbehaves (or an attacker in its place): discovery naming another issuer, an http jwks_uri, redirects,
/// oversized or non-JWKS answers, symmetric keys in the JWKS. Served by a real HTTPS server on loopback; every case is
/// refused as Unavailable with a code that tells the operator which.
/// </summary>
public sealed class OidcIssuerEndpointTests : IAsyncLifetime
{
    private readonly string _dir = Directory.CreateTempSubdirectory("writ-oidc-endpoint-").FullName;
    private readonly OidcTestIssuer.SigningKey _key = OidcTestIssuer.SigningKey.Create("ES256");
    private LoopbackHttps _http = null!;
    private OidcTokenValidator _validator = null!;

    public async ValueTask InitializeAsync()
    {
        _http = await LoopbackHttps.StartAsync(_dir, name: "issuer");
        _validator = new OidcTokenValidator(TimeProvider.System, new ListLogger());
    }

    public async ValueTask DisposeAsync()
    {
        _validator.Dispose();
        await _http.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
    }

    private string Issuer => _http.BaseUri.GetLeftPart(UriPartial.Authority);

    private OidcIssuerConfig Config => new() { Issuer = Issuer, Audiences = ["writ"], CaFile = _http.CaPemPath };

    private string Token()
    {
        var now = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        var header = new JsonObject { ["alg"] = "ES256", ["kid"] = _key.Kid, ["typ"] = "JWT" };
        var claims = new JsonObject { ["iss"] = Issuer, ["sub"] = "job", ["aud"] = "writ", ["iat"] = now, ["exp"] = now + 600 };
        var input = OidcTestIssuer.B64(Encoding.UTF8.GetBytes(header.ToJsonString())) + "." + OidcTestIssuer.B64(Encoding.UTF8.GetBytes(claims.ToJsonString()));
        return input + "." + OidcTestIssuer.B64(_key.Sign(Encoding.ASCII.GetBytes(input)));
    }

    /// <summary>Serves discovery (from <paramref name="discovery"/>, default: correct) and the JWKS (from <paramref name="jwks"/>, default: the key).</summary>
    private void Serve(Func<JsonObject>? discovery = null, Func<HttpContext, Task>? jwks = null)
    {
        _http.Handler = async ctx =>
        {
            switch (ctx.Request.Path.Value)
            {
                case "/.well-known/openid-configuration":
                    ctx.Response.ContentType = "application/json";
                    await ctx.Response.WriteAsync((discovery?.Invoke() ?? new JsonObject { ["issuer"] = Issuer, ["jwks_uri"] = Issuer + "/jwks" }).ToJsonString());
                    break;
                case "/jwks":
                    if (jwks is not null)
                    {
                        await jwks(ctx);
                    }
                    else
                    {
                        ctx.Response.ContentType = "application/json";
                        await ctx.Response.WriteAsync(new JsonObject { ["keys"] = new JsonArray(_key.Jwk()) }.ToJsonString());
                    }
                    break;
                default:
                    ctx.Response.StatusCode = 404;
                    break;
            }
        };
    }

    private async Task<string> RefusedAsync(string code)
    {
        var token = Token();
        var e = await OidcAssert.RefusedAsync(code, token, () => _validator.ValidateAsync(token, Config, TestContext.Current.CancellationToken));
        return e.Message;
    }

    [Fact]
    public async Task A_well_behaved_issuer_is_accepted()
    {
        Serve();
        var v = await _validator.ValidateAsync(Token(), Config, TestContext.Current.CancellationToken);
        Assert.Equal("job", v.Subject);
        Assert.Equal(["/.well-known/openid-configuration", "/jwks"], _http.Log);
    }

    [Fact]
    public async Task A_discovery_document_naming_another_issuer_is_refused()
    {
        Serve(discovery: () => new JsonObject { ["issuer"] = "https://token.actions.githubusercontent.com", ["jwks_uri"] = Issuer + "/jwks" });
        var message = await RefusedAsync(OidcErrors.IssuerMisconfigured);
        Assert.Contains("token.actions.githubusercontent.com", message, StringComparison.Ordinal);
        Assert.DoesNotContain("/jwks", _http.Log);
    }

    [Fact]
    public async Task A_discovery_document_with_an_http_jwks_uri_is_refused()
    {
        Serve(discovery: () => new JsonObject { ["issuer"] = Issuer, ["jwks_uri"] = Issuer.Replace("https:", "http:", StringComparison.Ordinal) + "/jwks" });
        Assert.Contains("not an https URL", await RefusedAsync(OidcErrors.IssuerMisconfigured), StringComparison.Ordinal);
        Assert.DoesNotContain("/jwks", _http.Log);
    }

    [Fact]
    public async Task A_discovery_document_that_is_not_json_is_refused()
    {
        _http.Handler = ctx => ctx.Response.WriteAsync("<html>login</html>");
        await RefusedAsync(OidcErrors.IssuerMisconfigured);
    }

    [Fact]
    public async Task Redirects_are_not_followed()
    {
        Serve(jwks: ctx =>
        {
            ctx.Response.StatusCode = 302;
            ctx.Response.Headers.Location = Issuer + "/elsewhere";
            return Task.CompletedTask;
        });
        Assert.Contains("redirects are not followed", await RefusedAsync(OidcErrors.IssuerUnreachable), StringComparison.Ordinal);
        Assert.DoesNotContain("/elsewhere", _http.Log);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task An_oversized_jwks_is_refused(bool withLength)
    {
        var body = new JsonObject { ["keys"] = new JsonArray(_key.Jwk()), ["padding"] = new string('x', OidcIssuerKeys.MaxResponseBytes) }.ToJsonString();
        Serve(jwks: async ctx =>
        {
            if (withLength)
            {
                ctx.Response.ContentLength = Encoding.UTF8.GetByteCount(body);
            }
            await ctx.Response.WriteAsync(body);
        });
        Assert.Contains("larger than 256 KiB", await RefusedAsync(OidcErrors.IssuerUnreachable), StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_jwks_that_is_not_a_key_set_is_refused()
    {
        Serve(jwks: ctx => ctx.Response.WriteAsync("[1,2,3]"));
        await RefusedAsync(OidcErrors.IssuerMisconfigured);
    }

    [Fact]
    public async Task Symmetric_encryption_and_private_keys_in_the_jwks_are_never_used()
    {
        var oct = new JsonObject { ["kty"] = "oct", ["kid"] = _key.Kid, ["k"] = OidcTestIssuer.B64(_key.SubjectPublicKeyInfo), ["alg"] = "HS256" };
        var enc = _key.Jwk();
        enc["use"] = "enc";
        Serve(jwks: ctx => ctx.Response.WriteAsync(new JsonObject { ["keys"] = new JsonArray(oct, enc) }.ToJsonString()));
        Assert.Contains("no RSA or EC signing key", await RefusedAsync(OidcErrors.IssuerMisconfigured), StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_issuer_behind_a_ca_file_that_does_not_exist_is_misconfigured()
    {
        Serve();
        var token = Token();
        var config = Config with { CaFile = Path.Combine(_dir, "missing.pem") };
        await OidcAssert.RefusedAsync(OidcErrors.IssuerMisconfigured, token, () => _validator.ValidateAsync(token, config, TestContext.Current.CancellationToken));
        Assert.Empty(_http.Log);
    }
}
