using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;
using Writ.Protocol.Errors;
using Writ.Server.Oidc;
using Writ.Tests.Shared;

namespace Writ.Server.Tests.Oidc;

/// <summary>
/// The OIDC token validator against a real issuer on loopback HTTPS (discovery, JWKS, real keys): what it accepts, and
/// each way an attacker or a broken issuer tries to get a token past it.
/// </summary>
public sealed class OidcTokenValidatorTests : IAsyncLifetime
{
    private const string Audience = "writ";
    private readonly string _dir = Directory.CreateTempSubdirectory("writ-oidc-").FullName;
    private readonly FakeTimeProvider _time = new(DateTimeOffset.UtcNow);
    private readonly ListLogger _log = new();
    private OidcTestIssuer _issuer = null!;
    private OidcTokenValidator _validator = null!;

    public async ValueTask InitializeAsync()
    {
        _issuer = await OidcTestIssuer.StartAsync(_dir);
        _validator = new OidcTokenValidator(_time, _log);
    }

    public async ValueTask DisposeAsync()
    {
        _validator.Dispose();
        await _issuer.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
    }

    private OidcIssuerConfig Config(IReadOnlyList<string>? algorithms = null, string? caFile = null) => new()
    {
        Issuer = _issuer.Issuer,
        Audiences = [Audience, "other-writ"],
        Claims = ["repository"],
        Algorithms = algorithms ?? OidcOptions.SupportedAlgorithms,
        CaFile = caFile ?? _issuer.CaPemPath,
    };

    private string Token(IDictionary<string, object?>? extra = null, TimeSpan? lifetime = null, string audience = Audience, OidcTestIssuer.SigningKey? key = null, IDictionary<string, string?>? header = null) =>
        _issuer.Mint(_issuer.Claims("repo:acme/app:ref:refs/heads/main", audience, lifetime, extra), key, header);

    private Task<ValidatedToken> Validate(string token, OidcIssuerConfig? config = null) =>
        _validator.ValidateAsync(token, config ?? Config(), TestContext.Current.CancellationToken);

    private Task<WritException> Refused(string code, string token, OidcIssuerConfig? config = null) =>
        OidcAssert.RefusedAsync(code, token, () => Validate(token, config));

    [Theory]
    [InlineData("ES256")]
    [InlineData("ES384")]
    [InlineData("RS256")]
    [InlineData("RS384")]
    [InlineData("RS512")]
    [InlineData("PS256")]
    public async Task A_token_signed_by_a_published_key_is_accepted_with_every_field(string alg)
    {
        var key = _issuer.Rotate(alg);
        var token = Token(new Dictionary<string, object?> { ["repository"] = "acme/app" }, key: key);

        var v = await Validate(token);

        Assert.Equal(_issuer.Issuer, v.Issuer);
        Assert.Equal("repo:acme/app:ref:refs/heads/main", v.Subject);
        Assert.Equal([Audience], v.Audiences);
        Assert.Equal(alg, v.Algorithm);
        Assert.Equal(key.Kid, v.KeyId);
        Assert.NotNull(v.Jti);
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(Encoding.ASCII.GetBytes(token))), v.TokenSha256);
        Assert.Equal("acme/app", v.Claims.GetProperty("repository").GetString());
        Assert.InRange(v.ExpiresAt, DateTimeOffset.UtcNow.AddMinutes(9), DateTimeOffset.UtcNow.AddMinutes(11));
        Assert.NotNull(v.IssuedAt);
        Assert.NotNull(v.NotBefore);
        Assert.Equal(1, _issuer.DiscoveryRequests);
        Assert.Equal(1, _issuer.JwksRequests);
        Assert.Equal(1, _log.Count(1140));
    }

    [Fact]
    public async Task The_keys_are_cached_so_many_tokens_cost_one_fetch()
    {
        for (var i = 0; i < 20; i++)
        {
            await Validate(Token());
        }
        Assert.Equal(1, _issuer.JwksRequests);
        Assert.Equal(1, _issuer.DiscoveryRequests);

        _time.Advance(OidcIssuerKeys.CacheLifetime + TimeSpan.FromSeconds(1));
        await Validate(Token(lifetime: TimeSpan.FromHours(1)));
        Assert.Equal(2, _issuer.JwksRequests);   // an old cache is fetched again on the next token
    }

    [Fact]
    public async Task An_audience_array_containing_ours_is_accepted()
    {
        var v = await Validate(Token(new Dictionary<string, object?> { ["aud"] = new[] { "someone-else", "other-writ" } }));
        Assert.Equal(["someone-else", "other-writ"], v.Audiences);
    }

    [Fact]
    public async Task A_token_for_another_audience_is_refused()
    {
        var e = await Refused(OidcErrors.WrongAudience, Token(audience: "https://github.com/acme"));
        Assert.Contains("writ", e.Message, StringComparison.Ordinal);
        await Refused(OidcErrors.WrongAudience, Token(new Dictionary<string, object?> { ["aud"] = null }));
    }

    [Fact]
    public async Task An_expired_token_is_refused_after_the_clock_skew_but_not_within_it()
    {
        var claims = _issuer.Claims("repo:acme/app:ref:refs/heads/main", Audience, TimeSpan.FromMinutes(5));
        var token = _issuer.Mint(claims);
        var exp = DateTimeOffset.FromUnixTimeSeconds((long)claims["exp"]!);
        await Validate(token);
        _time.SetUtcNow(exp + OidcTokenValidator.ClockSkew - TimeSpan.FromSeconds(10));
        await Validate(token);
        _time.SetUtcNow(exp + OidcTokenValidator.ClockSkew + TimeSpan.FromSeconds(10));
        var e = await Refused(OidcErrors.Expired, token);
        Assert.Contains(exp.UtcDateTime.ToString("u", System.Globalization.CultureInfo.InvariantCulture), e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_token_not_yet_valid_is_refused()
    {
        var now = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        await Refused(OidcErrors.NotYetValid, Token(new Dictionary<string, object?> { ["nbf"] = now + 300, ["exp"] = now + 900 }));
        await Refused(OidcErrors.NotYetValid, Token(new Dictionary<string, object?> { ["iat"] = now + 300 }));
        await Validate(Token(new Dictionary<string, object?> { ["nbf"] = now + 30 }));   // within the skew
    }

    [Theory]
    [InlineData("iat", "\"yesterday\"")]
    [InlineData("iat", "9000000000000000000")]
    [InlineData("iat", "-5")]
    [InlineData("nbf", "\"0\"")]
    public async Task A_time_claim_that_is_not_a_time_is_refused(string claim, string json)
    {
        var claims = _issuer.Claims("repo:acme/app:ref:refs/heads/main", Audience);
        claims[claim] = JsonNode.Parse(json);
        await Refused(OidcErrors.Malformed, _issuer.Mint(claims));
    }

    [Fact]
    public async Task A_token_without_exp_is_refused()
    {
        await Refused(OidcErrors.NoExpiry, Token(new Dictionary<string, object?> { ["exp"] = null }));
    }

    [Fact]
    public async Task A_token_without_sub_is_refused()
    {
        await Refused(OidcErrors.Malformed, Token(new Dictionary<string, object?> { ["sub"] = null }));
        await Refused(OidcErrors.Malformed, Token(new Dictionary<string, object?> { ["sub"] = 42 }));
    }

    [Fact]
    public async Task A_token_of_another_issuer_is_refused_before_any_network_call()
    {
        var token = Token(new Dictionary<string, object?> { ["iss"] = "https://token.actions.githubusercontent.com" });
        await Refused(OidcErrors.WrongIssuer, token);
        // The issuer differs by a trailing slash only: still not the same issuer.
        await Refused(OidcErrors.WrongIssuer, Token(new Dictionary<string, object?> { ["iss"] = _issuer.Issuer + "/" }));
        await Refused(OidcErrors.WrongIssuer, Token(new Dictionary<string, object?> { ["iss"] = null }));
        Assert.Equal(0, _issuer.JwksRequests + _issuer.DiscoveryRequests);
    }

    [Fact]
    public void The_issuer_config_is_picked_by_the_unverified_iss_and_an_unknown_one_is_named()
    {
        var github = Config() with { Issuer = "https://token.actions.githubusercontent.com" };
        IReadOnlyList<OidcIssuerConfig> issuers = [github, Config()];
        Assert.Same(issuers[1], OidcTokenValidator.FindIssuer(Token(), issuers));

        var token = Token(new Dictionary<string, object?> { ["iss"] = "https://evil.example" });
        var e = Assert.Throws<WritException>(() => OidcTokenValidator.FindIssuer(token, issuers));
        Assert.Equal(OidcErrors.UnknownIssuer, e.Code);
        Assert.Contains("https://evil.example", e.Message, StringComparison.Ordinal);
        Assert.Equal(WritErrorKind.Unauthenticated, e.Kind);
        Assert.Equal(OidcErrors.Malformed, Assert.Throws<WritException>(() => OidcTokenValidator.FindIssuer("not-a-jwt", issuers)).Code);
    }

    [Fact]
    public async Task Against_a_list_the_tokens_own_issuer_is_used_and_a_forged_iss_gains_nothing()
    {
        await using var second = await OidcTestIssuer.StartAsync(Path.Combine(_dir, "second"));
        var other = new OidcIssuerConfig { Issuer = second.Issuer, Audiences = [Audience], CaFile = second.CaPemPath };
        IReadOnlyList<OidcIssuerConfig> issuers = [other, Config()];
        var (v, issuer) = await _validator.ValidateAnyAsync(Token(new Dictionary<string, object?> { ["repository"] = "acme/app" }), issuers, TestContext.Current.CancellationToken);
        Assert.Same(issuers[1], issuer);
        Assert.Contains(OidcSelectors.From(v, issuer).Selectors, s => s.Value == "claim:repository:acme/app");

        // A token signed by the first issuer's key that claims to come from the second is checked against the second's keys.
        var forged = Token(new Dictionary<string, object?> { ["iss"] = second.Issuer });
        await OidcAssert.RefusedAsync(OidcErrors.UnknownKey, forged, () => _validator.ValidateAnyAsync(forged, issuers, TestContext.Current.CancellationToken));
        // ... and under the kid of the second's key, its signature fails.
        var forgedKid = Token(new Dictionary<string, object?> { ["iss"] = second.Issuer }, header: new Dictionary<string, string?> { ["kid"] = second.Current.Kid });
        await OidcAssert.RefusedAsync(OidcErrors.BadSignature, forgedKid, () => _validator.ValidateAnyAsync(forgedKid, issuers, TestContext.Current.CancellationToken));
        Assert.Equal(1, second.JwksRequests);
    }

    [Fact]
    public async Task A_token_signed_by_a_key_the_issuer_does_not_publish_is_refused()
    {
        var foreign = _issuer.AddKey("ES256", publish: false);
        await Refused(OidcErrors.UnknownKey, Token(key: foreign));
        // The same foreign signature under the kid of a published key: the signature check refuses it.
        await Refused(OidcErrors.BadSignature, Token(key: foreign, header: new Dictionary<string, string?> { ["kid"] = _issuer.Current.Kid }));
        // ... and with no kid at all, every published key is tried and none verifies.
        await Refused(OidcErrors.BadSignature, Token(key: foreign, header: new Dictionary<string, string?> { ["kid"] = null }));
    }

    [Fact]
    public async Task A_token_without_kid_signed_by_a_published_key_is_accepted()
    {
        var v = await Validate(Token(header: new Dictionary<string, string?> { ["kid"] = null }));
        Assert.Null(v.KeyId);
    }

    [Fact]
    public async Task A_tampered_payload_fails_the_signature()
    {
        var parts = Token().Split('.');
        var claims = _issuer.Claims("repo:acme/admin:ref:refs/heads/main", Audience);
        var forged = parts[0] + "." + OidcTestIssuer.B64(Encoding.UTF8.GetBytes(claims.ToJsonString())) + "." + parts[2];
        await Refused(OidcErrors.BadSignature, forged);
    }

    [Fact]
    public async Task An_unsigned_token_is_refused_before_any_network_call()
    {
        var claims = _issuer.Claims("repo:acme/app:ref:refs/heads/main", Audience);
        await Refused(OidcErrors.AlgRefused, OidcTestIssuer.MintUnsigned(claims));
        // "None" in another case, and with a signature part present, is the same.
        var noneAgain = OidcTestIssuer.B64("{\"alg\":\"NoNe\"}"u8) + "." + OidcTestIssuer.B64(Encoding.UTF8.GetBytes(claims.ToJsonString())) + ".c2ln";
        await Refused(OidcErrors.AlgRefused, noneAgain);
        Assert.Equal(0, _issuer.JwksRequests + _issuer.DiscoveryRequests);
    }

    [Theory]
    [InlineData("pem")]
    [InlineData("der")]
    public async Task An_hs256_token_keyed_with_the_issuers_public_key_is_refused(string form)
    {
        var claims = _issuer.Claims("repo:acme/app:ref:refs/heads/main", Audience);
        var secret = form == "pem" ? Encoding.ASCII.GetBytes(_issuer.Current.PublicPem) : _issuer.Current.SubjectPublicKeyInfo;
        var token = OidcTestIssuer.MintHs256(claims, secret, _issuer.Current.Kid);
        await Refused(OidcErrors.AlgRefused, token);
        // Even a configuration that lists HS256 (not possible through oidc_issuers, but another component could build one) cannot enable it.
        await Refused(OidcErrors.AlgRefused, token, Config(algorithms: ["HS256", "ES256"]));
        Assert.Equal(0, _issuer.JwksRequests + _issuer.DiscoveryRequests);
    }

    [Fact]
    public async Task An_algorithm_outside_the_issuers_list_is_refused()
    {
        await Refused(OidcErrors.AlgRefused, Token(), Config(algorithms: ["RS256"]));
        // The header claims another algorithm than the one the key is published for.
        await Refused(OidcErrors.AlgRefused, Token(header: new Dictionary<string, string?> { ["alg"] = "ES384" }));
    }

    [Fact]
    public async Task A_rotated_key_is_accepted_after_one_refresh_and_unknown_kids_cannot_storm_the_issuer()
    {
        await Validate(Token());
        Assert.Equal(1, _issuer.JwksRequests);

        var next = _issuer.Rotate("ES256");
        var rotated = Token(key: next);
        // Just fetched: an unknown kid does not fetch again within 30 s.
        await Refused(OidcErrors.UnknownKey, rotated);
        Assert.Equal(1, _issuer.JwksRequests);

        _time.Advance(OidcIssuerKeys.MinRefreshInterval + TimeSpan.FromSeconds(1));
        var v = await Validate(rotated);
        Assert.Equal(next.Kid, v.KeyId);
        Assert.Equal(2, _issuer.JwksRequests);

        // An attacker sends tokens naming random kids: at most one fetch per 30 s.
        for (var round = 0; round < 3; round++)
        {
            _time.Advance(OidcIssuerKeys.MinRefreshInterval + TimeSpan.FromSeconds(1));
            for (var i = 0; i < 15; i++)
            {
                await Refused(OidcErrors.UnknownKey, Token(header: new Dictionary<string, string?> { ["kid"] = Guid.NewGuid().ToString("N") }));
            }
            Assert.Equal(3 + round, _issuer.JwksRequests);
        }
        // Known kids still validate from the cache meanwhile.
        await Validate(Token(key: next));
        Assert.Equal(5, _issuer.JwksRequests);
    }

    [Fact]
    public async Task An_unreachable_issuer_with_cached_keys_keeps_validating()
    {
        await Validate(Token());
        _issuer.FailWith = 503;
        _time.Advance(OidcIssuerKeys.CacheLifetime + TimeSpan.FromSeconds(1));

        var v = await Validate(Token(lifetime: TimeSpan.FromHours(1)));
        Assert.Equal(_issuer.Current.Kid, v.KeyId);
        Assert.Equal(2, _issuer.DiscoveryRequests);   // it tried ...
        Assert.Equal(1, _log.Count(1141));             // ... and said it is using the cache

        // It does not retry for every token.
        await Validate(Token(lifetime: TimeSpan.FromHours(1)));
        Assert.Equal(2, _issuer.DiscoveryRequests);

        // Once the issuer is back, the next due fetch succeeds.
        _issuer.FailWith = null;
        _time.Advance(OidcIssuerKeys.MinRefreshInterval + TimeSpan.FromSeconds(1));
        await Validate(Token(lifetime: TimeSpan.FromHours(1)));
        Assert.Equal(2, _issuer.JwksRequests);
    }

    [Fact]
    public async Task An_unreachable_issuer_without_cached_keys_is_unavailable_and_not_asked_for_every_token()
    {
        _issuer.FailWith = 503;
        var e = await Refused(OidcErrors.IssuerUnreachable, Token());
        Assert.Contains("503", e.Message, StringComparison.Ordinal);
        Assert.Equal(1, _log.Count(1142));
        await Refused(OidcErrors.IssuerUnreachable, Token());
        Assert.Equal(1, _issuer.DiscoveryRequests);

        _issuer.FailWith = null;
        _time.Advance(OidcIssuerKeys.ColdRetryInterval + TimeSpan.FromSeconds(1));
        await Validate(Token());
        Assert.Equal(2, _issuer.DiscoveryRequests);
    }

    [Fact]
    public async Task An_issuer_whose_tls_certificate_does_not_chain_to_ca_file_is_unreachable()
    {
        await using var other = await LoopbackHttps.StartAsync(Path.Combine(_dir, "other"), name: "other");
        var e = await Refused(OidcErrors.IssuerUnreachable, Token(), Config(caFile: other.CaPemPath));
        Assert.Contains("TLS", e.Message, StringComparison.Ordinal);
        Assert.Equal(0, _issuer.DiscoveryRequests);
    }

    [Fact]
    public async Task A_certificate_from_the_ca_file_for_another_host_name_is_refused()
    {
        // The CA in ca_file is right, but the certificate names another host: the host name is still checked.
        using var caKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var caReq = new CertificateRequest("CN=other-name CA", caKey, HashAlgorithmName.SHA256);
        caReq.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        caReq.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign, true));
        var now = DateTimeOffset.UtcNow;
        using var ca = caReq.CreateSelfSigned(now.AddHours(-1), now.AddDays(1));
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var req = new CertificateRequest("CN=issuer.other.example", key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddDnsName("issuer.other.example");
        req.CertificateExtensions.Add(san.Build());
        req.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false));
        using var signed = req.Create(ca, now.AddHours(-1), now.AddDays(1), RandomNumberGenerator.GetBytes(12));
        using var cert = X509CertificateLoader.LoadPkcs12(signed.CopyWithPrivateKey(key).Export(X509ContentType.Pkcs12), null);
        var caPem = Path.Combine(_dir, "other-name-ca.pem");
        await File.WriteAllTextAsync(caPem, ca.ExportCertificatePem());

        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0, lo => lo.UseHttps(cert)));
        await using var app = builder.Build();
        var requests = 0;
        app.Run(ctx =>
        {
            Interlocked.Increment(ref requests);
            ctx.Response.StatusCode = 404;
            return Task.CompletedTask;
        });
        await app.StartAsync(TestContext.Current.CancellationToken);
        var issuer = new Uri(app.Urls.First()).GetLeftPart(UriPartial.Authority);
        var config = Config(caFile: caPem) with { Issuer = issuer };
        var token = Token(new Dictionary<string, object?> { ["iss"] = issuer });

        var e = await Refused(OidcErrors.IssuerUnreachable, token, config);
        Assert.Contains("TLS", e.Message, StringComparison.Ordinal);
        Assert.Equal(0, requests);
        await app.StopAsync(TestContext.Current.CancellationToken);
    }

    [Fact]
    public async Task Concurrent_first_tokens_share_one_fetch()
    {
        var tokens = Enumerable.Range(0, 16).Select(_ => Token()).ToList();
        var results = await Task.WhenAll(tokens.Select(t => Validate(t)));
        Assert.Equal(16, results.Length);
        Assert.Equal(1, _issuer.DiscoveryRequests);
        Assert.Equal(1, _issuer.JwksRequests);
    }

    [Fact]
    public async Task Without_ca_file_only_the_system_roots_are_trusted()
    {
        var config = Config() with { CaFile = null };
        var e = await Refused(OidcErrors.IssuerUnreachable, Token(), config);
        Assert.Contains("TLS", e.Message, StringComparison.Ordinal);
        Assert.Equal(0, _issuer.DiscoveryRequests);
    }

    [Fact]
    public async Task A_configured_jwks_uri_skips_discovery()
    {
        var config = Config() with { JwksUri = new Uri(_issuer.JwksUri) };
        await Validate(Token(), config);
        Assert.Equal(0, _issuer.DiscoveryRequests);
        Assert.Equal(1, _issuer.JwksRequests);
    }

    [Fact]
    public async Task An_oversized_token_is_refused_unread()
    {
        var token = Token(new Dictionary<string, object?> { ["padding"] = new string('a', OidcTokenValidator.MaxTokenChars) });
        await Refused(OidcErrors.TooLarge, token);
        Assert.Equal(0, _issuer.JwksRequests + _issuer.DiscoveryRequests);
    }

    [Theory]
    [InlineData("")]
    [InlineData("abc")]
    [InlineData("abc.def")]
    [InlineData("a.b.c.d.e")]
    [InlineData("a b.c.d")]
    [InlineData("!!!.e30.c2ln")]
    [InlineData("e30.e30.")]
    [InlineData("WzFd.e30.c2ln")]
    public async Task A_malformed_token_is_refused_before_any_network_call(string token)
    {
        await Refused(OidcErrors.Malformed, token);
        Assert.Equal(0, _issuer.JwksRequests + _issuer.DiscoveryRequests);
    }

    [Fact]
    public async Task A_payload_with_a_claim_given_twice_is_refused_even_when_signed()
    {
        // Signed by the issuer's key, with "sub" twice: one reader could take the first, another the last.
        var claims = _issuer.Claims("repo:acme/app:ref:refs/heads/main", Audience).ToJsonString();
        var payload = claims[..^1] + ",\"sub\":\"repo:acme/admin:ref:refs/heads/main\"}";
        var header = new JsonObject { ["alg"] = "ES256", ["kid"] = _issuer.Current.Kid };
        var input = OidcTestIssuer.B64(Encoding.UTF8.GetBytes(header.ToJsonString())) + "." + OidcTestIssuer.B64(Encoding.UTF8.GetBytes(payload));
        await Refused(OidcErrors.Malformed, input + "." + OidcTestIssuer.B64(_issuer.Current.Sign(Encoding.ASCII.GetBytes(input))));
        Assert.Equal(0, _issuer.JwksRequests);

        var twoAlgs = OidcTestIssuer.B64("{\"alg\":\"ES256\",\"alg\":\"HS256\"}"u8) + "." + OidcTestIssuer.B64(Encoding.UTF8.GetBytes(claims)) + ".c2ln";
        await Refused(OidcErrors.Malformed, twoAlgs);
    }

    [Fact]
    public async Task A_kid_that_is_not_a_string_is_refused()
    {
        var claims = _issuer.Claims("repo:acme/app:ref:refs/heads/main", Audience);
        var header = new JsonObject { ["alg"] = "ES256", ["kid"] = 7 };
        var input = OidcTestIssuer.B64(Encoding.UTF8.GetBytes(header.ToJsonString())) + "." + OidcTestIssuer.B64(Encoding.UTF8.GetBytes(claims.ToJsonString()));
        await Refused(OidcErrors.Malformed, input + "." + OidcTestIssuer.B64(_issuer.Current.Sign(Encoding.ASCII.GetBytes(input))));
    }

    [Fact]
    public async Task A_token_with_critical_header_extensions_is_refused()
    {
        var claims = _issuer.Claims("repo:acme/app:ref:refs/heads/main", Audience);
        var header = new JsonObject { ["alg"] = "ES256", ["kid"] = _issuer.Current.Kid, ["crit"] = new JsonArray("exp"), ["exp"] = 1 };
        var input = OidcTestIssuer.B64(Encoding.UTF8.GetBytes(header.ToJsonString())) + "." + OidcTestIssuer.B64(Encoding.UTF8.GetBytes(claims.ToJsonString()));
        var token = input + "." + OidcTestIssuer.B64(_issuer.Current.Sign(Encoding.ASCII.GetBytes(input)));
        await Refused(OidcErrors.Malformed, token);
    }

    [Fact]
    public async Task Logs_carry_a_token_hash_prefix_but_never_the_token()
    {
        var token = Token(audience: "someone-else");
        await Refused(OidcErrors.WrongAudience, token);
        var line = Assert.Single(_log.Lines, l => l.EventId == 1143);
        Assert.Contains(OidcTokenValidator.Sha256Hex(token)[..16], line.Message, StringComparison.Ordinal);
        foreach (var part in token.Split('.'))
        {
            Assert.DoesNotContain(_log.Lines, l => l.Message.Contains(part, StringComparison.Ordinal));
        }
    }
}
