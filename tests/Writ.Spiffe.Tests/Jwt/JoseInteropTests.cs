using System.Diagnostics;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using Writ.Spiffe.Bundles;
using Writ.Spiffe.Jwt;

namespace Writ.Spiffe.Tests.Jwt;

/// <summary>Installs the `jose` npm package once (pinned in tests/interop/package.json) for the interop tests.</summary>
public sealed class JoseFixture
{
    public JoseFixture()
    {
        Dir = Path.Combine(TestData.RepoRoot, "tests", "interop");   // shared with the other interop tests; test.sh runs npm ci there
        if (!File.Exists(Path.Combine(Dir, "node_modules", "jose", "package.json")))
        {
            var (code, output) = Run("npm", ["ci", "--no-audit", "--no-fund", "--loglevel=error"], null, TimeSpan.FromMinutes(5));
            if (code != 0)
            {
                throw new InvalidOperationException("npm install of the jose interop client failed: " + output);
            }
        }
    }

    public string Dir { get; }

    public JsonObject Call(JsonObject request)
    {
        var (code, output) = Run("node", ["jose-check.mjs"], request.ToJsonString(), TimeSpan.FromSeconds(60), Dir);
        Assert.True(code == 0, output);
        return JsonNode.Parse(output.Trim().Split('\n')[^1])!.AsObject();
    }

    private (int Code, string Output) Run(string file, string[] args, string? stdin, TimeSpan timeout, string? cwd = null)
    {
        var psi = new ProcessStartInfo(file)
        {
            WorkingDirectory = cwd ?? Dir,
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

/// <summary>JWT-SVIDs exchanged with `jose`, a JOSE library nobody on this project wrote, in both directions.</summary>
public sealed class JoseInteropTests(JoseFixture jose) : IClassFixture<JoseFixture>
{
    private static readonly DateTimeOffset Now = TestCa.Now;
    private static readonly TrustDomain Td = TrustDomain.Parse("example.org");
    private static readonly SpiffeId Subject = SpiffeId.Parse("spiffe://example.org/workload");

    [Theory]
    [InlineData("p256", "ES256")]
    [InlineData("p384", "ES384")]
    [InlineData("p521", "ES512")]
    [InlineData("rsa", "RS256")]
    public void Jose_verifies_our_tokens_with_our_jwks(string kind, string alg)
    {
        AsymmetricAlgorithm key = kind switch
        {
            "p256" => ECDsa.Create(ECCurve.NamedCurves.nistP256),
            "p384" => ECDsa.Create(ECCurve.NamedCurves.nistP384),
            "p521" => ECDsa.Create(ECCurve.NamedCurves.nistP521),
            _ => RSA.Create(2048),
        };
        var bundle = new TrustBundle(Td, [], [new JwtAuthority("kid-1", key)]);
        var token = JwtSvidMinter.Mint(new JwtSigningKey("kid-1", key), Subject, ["svc"], Now, Now.AddMinutes(5),
            new Dictionary<string, object> { ["tenant"] = "t1" });
        var ok = jose.Call(Verify(token, bundle.JwksJson(), "svc"));
        Assert.True(ok["ok"]!.GetValue<bool>(), ok.ToJsonString());
        Assert.Equal(Subject.ToString(), ok["payload"]!["sub"]!.GetValue<string>());
        Assert.Equal(alg, ok["header"]!["alg"]!.GetValue<string>());
        Assert.Equal("t1", ok["payload"]!["tenant"]!.GetValue<string>());

        // Control: jose really checks — a wrong audience and a tampered signature fail there too.
        Assert.False(jose.Call(Verify(token, bundle.JwksJson(), "other"))["ok"]!.GetValue<bool>());
        var tampered = token[..^4] + (token[^4] == 'A' ? "B" : "A") + token[^3..];
        Assert.False(jose.Call(Verify(tampered, bundle.JwksJson(), "svc"))["ok"]!.GetValue<bool>());
    }

    [Theory]
    [InlineData("ES256")]
    [InlineData("ES384")]
    [InlineData("ES512")]
    [InlineData("RS256")]
    [InlineData("RS384")]
    [InlineData("RS512")]
    [InlineData("PS256")]
    [InlineData("PS384")]
    [InlineData("PS512")]
    public void We_validate_tokens_signed_by_jose(string alg)
    {
        var claims = new JsonObject
        {
            ["sub"] = Subject.ToString(),
            ["aud"] = new JsonArray("svc"),
            ["exp"] = Now.AddMinutes(5).ToUnixTimeSeconds(),
            ["iat"] = Now.ToUnixTimeSeconds(),
        };
        var signed = jose.Call(new JsonObject { ["op"] = "sign", ["alg"] = alg, ["kid"] = "jose-kid", ["claims"] = claims });
        Assert.True(signed["ok"]!.GetValue<bool>(), signed.ToJsonString());
        var jwks = new JsonObject { ["keys"] = new JsonArray(signed["jwk"]!.DeepClone()) }.ToJsonString();
        Assert.True(TrustBundle.TryParseJwks(Td, jwks, out var bundle, out var error), error);
        var token = signed["token"]!.GetValue<string>();
        var r = JwtSvidValidator.Validate(token, bundle, ["svc"], Now);
        Assert.True(r.IsValid, r.Error);
        Assert.Equal(Subject, r.Svid!.Id);
        Assert.False(JwtSvidValidator.Validate(token, bundle, ["other"], Now).IsValid);
    }

    private static JsonObject Verify(string token, string jwks, string audience) => new()
    {
        ["op"] = "verify",
        ["token"] = token,
        ["jwks"] = JsonNode.Parse(jwks),
        ["audience"] = audience,
        ["now"] = Now.ToUnixTimeSeconds(),
    };
}
