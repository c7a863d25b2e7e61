using System.Net;
using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Protocols;
using Microsoft.IdentityModel.Protocols.OpenIdConnect;
using Microsoft.IdentityModel.Tokens;
using Writ.IntegrationTests.Harness;
using Writ.Spiffe;
using Writ.Spiffe.Jwt;
using Writ.Tests.Shared;

namespace Writ.IntegrationTests;

/// <summary>
/// Issue #16 item 8: a real server with <c>jwt_issuer</c>, a real `writ oidc-discovery run` over HTTPS (a test CA), and
/// verifiers nobody here wrote — Microsoft.IdentityModel's OIDC configuration manager with JsonWebTokenHandler, and npm
/// jose's createRemoteJWKSet — checking a real JWT-SVID (issuer, audience, signature), refusing a forged one.
/// </summary>
public sealed class OidcDiscoveryTests
{
    private const string Audience = "https://api.example.org";
    private const string Subject = "spiffe://example.org/app";

    [Fact]
    public async Task A_jwt_svid_verifies_through_the_discovery_provider_with_standard_oidc_verifiers_and_a_forged_one_does_not()
    {
        using var dir = new TempDir();
        var caPem = WriteTlsPair(dir, out var certPem, out var keyPem, out var ca);
        var serverDir = dir["server"];
        await using var provider = BackgroundProcess.Start("dotnet", Repo.WritDll, "oidc-discovery", "run", "--bind", "127.0.0.1:0",
            "--tls-cert", certPem, "--tls-key", keyPem, "--admin-socket", Path.Combine(serverDir, "admin.sock"), "--refresh-interval", "200ms");
        var ready = await provider.Stdout.WaitForAsync(l => l.StartsWith("ready ", StringComparison.Ordinal), TimeSpan.FromSeconds(60), () => provider.HasExited);
        var issuer = ready.Split(' ').First(w => w.StartsWith("issuer=", StringComparison.Ordinal))["issuer=".Length..];
        Assert.StartsWith("https://127.0.0.1:", issuer, StringComparison.Ordinal);

        // The provider started first; it serves the keys once the server is up.
        await using var server = await ServerProcess.StartAsync(serverDir, "example.org", "--jwt-issuer", issuer);
        var mint = await server.WritAsync("jwt", "mint", "--spiffe-id", Subject, "--audience", Audience);
        Assert.True(mint.ExitCode == 0, mint.ToString());
        var token = mint.Stdout.Trim();
        Assert.Equal(issuer, new JsonWebToken(token).Issuer);

        using var http = TrustingClient(ca);
        var (config, result) = await WorkloadTools.EventuallyAsync(async () =>
        {
            var manager = new ConfigurationManager<OpenIdConnectConfiguration>(issuer + "/.well-known/openid-configuration",
                new OpenIdConnectConfigurationRetriever(), new HttpDocumentRetriever(http) { RequireHttps = true });
            var c = await manager.GetConfigurationAsync(TestContext.Current.CancellationToken);
            var r = await Validate(token, c);
            return r.IsValid ? (c, r) : throw new InvalidOperationException(r.Exception?.Message ?? "invalid");
        }, TimeSpan.FromSeconds(30), "the token verifying through the discovery provider");
        Assert.Equal(issuer, config.Issuer);
        Assert.Equal(issuer + "/keys", config.JwksUri);
        Assert.Equal(Subject, result.Claims["sub"]);
        Assert.Contains("ES256", config.IdTokenSigningAlgValuesSupported);

        // An attacker's token: the same claims and kid, signed by a key of their own.
        var kid = new JsonWebToken(token).Kid;
        using var attackerKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var now = DateTimeOffset.UtcNow;
        var forged = JwtSvidMinter.Mint(new JwtSigningKey(kid, attackerKey), SpiffeId.Parse(Subject), [Audience], now, now.AddMinutes(5),
            new Dictionary<string, object> { ["iss"] = issuer });
        Assert.False((await Validate(forged, config)).IsValid);
        var otherKid = JwtSvidMinter.Mint(new JwtSigningKey("attacker-kid", attackerKey), SpiffeId.Parse(Subject), [Audience], now, now.AddMinutes(5),
            new Dictionary<string, object> { ["iss"] = issuer });
        Assert.False((await Validate(otherKid, config)).IsValid);
        // The real token for another audience is refused too.
        Assert.False((await Validate(token, config, audience: "https://other.example.org")).IsValid);

        // npm jose, from the issuer URL alone (discovery document, then jwks_uri), trusting only the test CA.
        var env = new Dictionary<string, string?> { ["NODE_EXTRA_CA_CERTS"] = caPem };
        var script = Path.Combine(Repo.Root, "tests", "interop", "oidc-verify.mjs");
        var jose = await Proc.RunAsync("node", [script, issuer, token, Audience], env: env);
        Assert.True(jose.ExitCode == 0, jose.ToString());
        Assert.Contains($"valid sub={Subject} kid={kid}", jose.Stdout, StringComparison.Ordinal);
        var joseForged = await Proc.RunAsync("node", [script, issuer, forged, Audience], env: env);
        Assert.True(joseForged.ExitCode == 1, joseForged.ToString());

        // Only the two documents, only GET; sensible caching.
        using (var keys = await http.GetAsync(new Uri(issuer + "/keys"), TestContext.Current.CancellationToken))
        {
            Assert.Equal(HttpStatusCode.OK, keys.StatusCode);
            Assert.Equal("public, max-age=60", keys.Headers.CacheControl?.ToString());
            var body = await keys.Content.ReadAsStringAsync(TestContext.Current.CancellationToken);
            Assert.DoesNotContain("x5c", body, StringComparison.Ordinal);
            Assert.Contains("\"use\": \"sig\"", body, StringComparison.Ordinal);
        }
        using (var other = await http.GetAsync(new Uri(issuer + "/"), TestContext.Current.CancellationToken))
        {
            Assert.Equal(HttpStatusCode.NotFound, other.StatusCode);
        }
        using (var post = await http.PostAsync(new Uri(issuer + "/keys"), new StringContent("{}"), TestContext.Current.CancellationToken))
        {
            Assert.Equal(HttpStatusCode.MethodNotAllowed, post.StatusCode);
        }

        // The server goes away: the provider keeps serving the keys it read, and says so once.
        await server.KillAsync();
        await provider.Stderr.WaitForAsync(l => l.Contains("[1972]", StringComparison.Ordinal), TimeSpan.FromSeconds(30), () => provider.HasExited);
        var fresh = new ConfigurationManager<OpenIdConnectConfiguration>(issuer + "/.well-known/openid-configuration",
            new OpenIdConnectConfigurationRetriever(), new HttpDocumentRetriever(http) { RequireHttps = true });
        var stillValid = await Validate(token, await fresh.GetConfigurationAsync(TestContext.Current.CancellationToken));
        Assert.True(stillValid.IsValid, stillValid.Exception?.Message);
    }

    [Fact]
    public async Task Plain_http_on_an_address_that_is_not_loopback_and_a_bad_issuer_are_refused_at_start()
    {
        using var dir = new TempDir();
        var plain = await Proc.WritAsync("oidc-discovery", "run", "--bind", "0.0.0.0:0", "--issuer", "https://oidc.example.org", "--admin-socket", dir["admin.sock"]);
        Assert.Equal(2, plain.ExitCode);
        Assert.Contains("error: WRIT-DISCOVERY-PLAIN-HTTP:", plain.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", plain.Stderr, StringComparison.Ordinal);

        var issuer = await Proc.WritAsync("oidc-discovery", "run", "--bind", "127.0.0.1:0", "--issuer", "http://oidc.example.org", "--admin-socket", dir["admin.sock"]);
        Assert.Equal(2, issuer.ExitCode);
        Assert.Contains("error: WRIT-DISCOVERY-ISSUER:", issuer.Stderr, StringComparison.Ordinal);

        var half = await Proc.WritAsync("oidc-discovery", "run", "--bind", "127.0.0.1:0", "--tls-cert", dir["missing.pem"], "--admin-socket", dir["admin.sock"]);
        Assert.Equal(2, half.ExitCode);
        Assert.Contains("error: WRIT-DISCOVERY-TLS:", half.Stderr, StringComparison.Ordinal);

        var server = await Proc.WritAsync("server", "validate", "--trust-domain", "example.org", "--data-dir", dir["server"], "--jwt-issuer", "http://oidc.example.org");
        Assert.Equal(2, server.ExitCode);
        Assert.Contains("error: WRIT-CONFIG-JWT-ISSUER:", server.Stderr, StringComparison.Ordinal);
    }

    private static Task<TokenValidationResult> Validate(string token, OpenIdConnectConfiguration config, string audience = Audience) =>
        new JsonWebTokenHandler().ValidateTokenAsync(token, new TokenValidationParameters
        {
            ValidIssuer = config.Issuer,
            ValidAudience = audience,
            IssuerSigningKeys = config.SigningKeys,
        });

    /// <summary>A test CA and an HTTPS certificate for 127.0.0.1 as PEM files; returns the CA's PEM path.</summary>
    private static string WriteTlsPair(TempDir dir, out string certPem, out string keyPem, out X509Certificate2 ca)
    {
        (ca, var cert) = LoopbackHttps.IssueCertificates("oidc");
        certPem = dir["tls.pem"];
        keyPem = dir["tls.key"];
        File.WriteAllText(certPem, cert.ExportCertificatePem());
        File.WriteAllText(keyPem, cert.GetECDsaPrivateKey()!.ExportPkcs8PrivateKeyPem());
        var caPem = dir["ca.pem"];
        File.WriteAllText(caPem, ca.ExportCertificatePem());
        return caPem;
    }

    /// <summary>An HTTP client that trusts only the test CA (and checks the host name).</summary>
    private static HttpClient TrustingClient(X509Certificate2 ca)
    {
        var handler = new SocketsHttpHandler();
        handler.SslOptions.RemoteCertificateValidationCallback = (_, cert, _, errors) =>
        {
            if (cert is null || (errors & ~SslPolicyErrors.RemoteCertificateChainErrors) != SslPolicyErrors.None)
            {
                return false;
            }
            using var chain = new X509Chain();
            chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
            chain.ChainPolicy.CustomTrustStore.Add(ca);
            chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
            return chain.Build(new X509Certificate2(cert));
        };
        return new HttpClient(handler);
    }
}
