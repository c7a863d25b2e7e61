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
            // A cache holding this JWKS asks with its ETag and gets 304 without a body; a stale or forged tag gets the keys.
            var etag = keys.Headers.ETag;
            Assert.NotNull(etag);
            using var revalidate = new HttpRequestMessage(HttpMethod.Get, new Uri(issuer + "/keys"));
            revalidate.Headers.IfNoneMatch.Add(etag);
            using var notModified = await http.SendAsync(revalidate, TestContext.Current.CancellationToken);
            Assert.Equal(HttpStatusCode.NotModified, notModified.StatusCode);
            Assert.Empty(await notModified.Content.ReadAsByteArrayAsync(TestContext.Current.CancellationToken));
            using var stale = new HttpRequestMessage(HttpMethod.Get, new Uri(issuer + "/keys"));
            stale.Headers.IfNoneMatch.Add(new System.Net.Http.Headers.EntityTagHeaderValue("\"not-the-keys\""));
            using var full = await http.SendAsync(stale, TestContext.Current.CancellationToken);
            Assert.Equal(HttpStatusCode.OK, full.StatusCode);
            Assert.Equal(body, await full.Content.ReadAsStringAsync(TestContext.Current.CancellationToken));
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

    /// <summary>
    /// A JWT key lifetime of one minute (the shortest): the next key is served from about 30 s, signs from about 50 s, and
    /// the old one is still served then, so a token it signed keeps verifying until it expires (about 60 s).
    /// </summary>
    [Fact]
    public async Task After_a_jwt_key_rotation_the_new_key_was_served_before_it_signed_and_the_old_one_stays_for_its_tokens()
    {
        using var dir = new TempDir();
        var caPem = WriteTlsPair(dir, out var certPem, out var keyPem, out var ca);
        var serverDir = dir["server"];
        await using var provider = BackgroundProcess.Start("dotnet", Repo.WritDll, "oidc-discovery", "run", "--bind", "127.0.0.1:0",
            "--tls-cert", certPem, "--tls-key", keyPem, "--admin-socket", Path.Combine(serverDir, "admin.sock"), "--refresh-interval", "200ms");
        var ready = await provider.Stdout.WaitForAsync(l => l.StartsWith("ready ", StringComparison.Ordinal), TimeSpan.FromSeconds(60), () => provider.HasExited);
        var issuer = ready.Split(' ').First(w => w.StartsWith("issuer=", StringComparison.Ordinal))["issuer=".Length..];
        await using var server = await ServerProcess.StartAsync(serverDir, "example.org", "--jwt-issuer", issuer,
            "--ca-jwt-key-ttl", "1m", "--rotation-interval", "200ms");
        async Task<string> MintAsync()
        {
            var r = await server.WritAsync("jwt", "mint", "--spiffe-id", Subject, "--audience", Audience, "--ttl", "5m");
            Assert.True(r.ExitCode == 0, r.ToString());
            return r.Stdout.Trim();
        }
        using var http = TrustingClient(ca);
        async Task<JsonWebKeySet> KeysAsync() => new(await http.GetStringAsync(new Uri(issuer + "/keys"), TestContext.Current.CancellationToken));

        var old = await MintAsync();
        var oldKid = new JsonWebToken(old).Kid;
        var next = await WorkloadTools.EventuallyAsync(async () =>
        {
            var kids = (await KeysAsync()).Keys.Select(k => k.Kid).ToList();
            return kids.Count >= 2 ? kids.Single(k => k != oldKid) : throw new InvalidOperationException($"keys {string.Join(",", kids)}");
        }, TimeSpan.FromSeconds(90), "the next JWT key being served");
        // Served, not yet signing.
        Assert.Equal(oldKid, new JsonWebToken(await MintAsync()).Kid);

        var signedByNext = await WorkloadTools.EventuallyAsync(async () =>
        {
            var t = await MintAsync();
            return new JsonWebToken(t).Kid == next ? t : throw new InvalidOperationException("still the old key");
        }, TimeSpan.FromSeconds(90), "the next JWT key signing");

        // The old key's token never outlives its key, and the key is still served after the switch.
        var keys = await KeysAsync();
        Assert.Contains(keys.Keys, k => k.Kid == oldKid);
        var parameters = new TokenValidationParameters
        {
            ValidIssuer = issuer, ValidAudience = Audience, IssuerSigningKeys = keys.GetSigningKeys(),
            ValidateLifetime = false,   // a slow machine may be past its (capped) expiry already: the key, not the clock, is checked here
        };
        foreach (var t in new[] { old, signedByNext })
        {
            var r = await new JsonWebTokenHandler().ValidateTokenAsync(t, parameters);
            Assert.True(r.IsValid, r.Exception?.Message);
        }
        Assert.True(new JsonWebToken(old).ValidTo <= DateTime.UtcNow.AddSeconds(30), $"a token of the old key is valid until {new JsonWebToken(old).ValidTo:u}: longer than its key");
        var jose = await Proc.RunAsync("node", [Path.Combine(Repo.Root, "tests", "interop", "oidc-verify.mjs"), issuer, signedByNext, Audience],
            env: new Dictionary<string, string?> { ["NODE_EXTRA_CA_CERTS"] = caPem });
        Assert.True(jose.ExitCode == 0, jose.ToString());
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
