using System.Diagnostics;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;
using Writ.Server.Oidc;
using Writ.Tests.Shared;

namespace Writ.Server.Tests.Oidc;

/// <summary>
/// Tokens minted by <c>jose</c> (npm, tests/interop/jose-check.mjs), a JOSE library nobody on this project wrote, with
/// its own freshly generated keys, served from a discovery document and JWKS on loopback HTTPS: our validator accepts
/// them, and refuses them once tampered with.
/// </summary>
public sealed class OidcJoseInteropTests : IAsyncLifetime
{
    private readonly string _dir = Directory.CreateTempSubdirectory("writ-oidc-jose-").FullName;
    private LoopbackHttps _http = null!;
    private JsonObject? _jwk;

    public async ValueTask InitializeAsync()
    {
        _http = await LoopbackHttps.StartAsync(_dir, name: "jose-issuer");
        _http.Handler = async ctx =>
        {
            ctx.Response.ContentType = "application/json";
            var body = ctx.Request.Path.Value switch
            {
                "/.well-known/openid-configuration" => new JsonObject { ["issuer"] = Issuer, ["jwks_uri"] = Issuer + "/jwks" },
                "/jwks" => new JsonObject { ["keys"] = new JsonArray(_jwk!.DeepClone()) },
                _ => null,
            };
            if (body is null)
            {
                ctx.Response.StatusCode = 404;
                return;
            }
            await ctx.Response.WriteAsync(body.ToJsonString());
        };
    }

    public async ValueTask DisposeAsync()
    {
        await _http.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
    }

    private string Issuer => _http.BaseUri.GetLeftPart(UriPartial.Authority);

    [Theory]
    [InlineData("ES256")]
    [InlineData("ES384")]
    [InlineData("RS256")]
    [InlineData("PS256")]
    [InlineData("RS512")]
    public async Task A_token_minted_by_jose_is_accepted(string alg)
    {
        var now = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        var claims = new JsonObject
        {
            ["iss"] = Issuer,
            ["sub"] = "project_path:acme/app:ref_type:branch:ref:main",
            ["aud"] = new JsonArray("writ"),
            ["iat"] = now,
            ["nbf"] = now,
            ["exp"] = now + 300,
            ["project_path"] = "acme/app",
        };
        var minted = Jose(new JsonObject { ["op"] = "sign", ["alg"] = alg, ["kid"] = "jose-" + alg, ["claims"] = claims });
        _jwk = minted["jwk"]!.AsObject();
        var token = minted["token"]!.GetValue<string>();

        using var validator = new OidcTokenValidator(TimeProvider.System, new ListLogger());
        var config = new OidcIssuerConfig { Issuer = Issuer, Audiences = ["writ"], Claims = ["project_path"], CaFile = _http.CaPemPath };
        var v = await validator.ValidateAsync(token, config, TestContext.Current.CancellationToken);
        Assert.Equal(alg, v.Algorithm);
        Assert.Equal("jose-" + alg, v.KeyId);
        Assert.Contains(OidcSelectors.From(v, config).Selectors, s => s.ToString() == "oidc:claim:project_path:acme/app");

        // The same token with one signature byte changed is refused.
        var sig = token[(token.LastIndexOf('.') + 1)..].ToCharArray();
        sig[5] = sig[5] == 'A' ? 'B' : 'A';
        var tampered = token[..(token.LastIndexOf('.') + 1)] + new string(sig);
        await OidcAssert.RefusedAsync(OidcErrors.BadSignature, tampered, () => validator.ValidateAsync(tampered, config, TestContext.Current.CancellationToken));
    }

    /// <summary>Runs tests/interop/jose-check.mjs with one JSON request (npm ci first when jose is not installed).</summary>
    private static JsonObject Jose(JsonObject request)
    {
        var dir = Path.Combine(OidcAssert.RepoRoot, "tests", "interop");
        if (!File.Exists(Path.Combine(dir, "node_modules", "jose", "package.json")))
        {
            var (code, output) = Run("npm", ["ci", "--no-audit", "--no-fund", "--loglevel=error"], null, dir, TimeSpan.FromMinutes(5));
            Assert.True(code == 0, "npm ci in tests/interop failed: " + output);
        }
        var (exit, stdout) = Run("node", ["jose-check.mjs"], request.ToJsonString(), dir, TimeSpan.FromSeconds(60));
        Assert.True(exit == 0, stdout);
        var result = JsonNode.Parse(stdout.Trim().Split('\n')[^1])!.AsObject();
        Assert.True(result["ok"]!.GetValue<bool>(), result.ToJsonString());
        return result;
    }

    private static (int Code, string Output) Run(string file, string[] args, string? stdin, string cwd, TimeSpan timeout)
    {
        var psi = new ProcessStartInfo(file)
        {
            WorkingDirectory = cwd,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        using var p = Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {file}");
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (stdin is not null)
        {
            p.StandardInput.Write(stdin);
        }
        p.StandardInput.Close();
        if (!p.WaitForExit(timeout))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} did not finish within {timeout}");
        }
        return (p.ExitCode, stdout.Result + stderr.Result);
    }
}
