using System.Net;
using System.Security.Cryptography;
using System.Text;
using Writ.Spiffe.Jwt;
using Writ.Workload.AspNetCore;
using static Writ.Workload.Tests.AspNetCore.X509SvidAuthenticationTests;

namespace Writ.Workload.Tests.AspNetCore;

/// <summary>The JWT-SVID scheme on a real Kestrel: audience, signature, expiry, alg, revocation, cnf binding, replay.</summary>
public sealed class JwtSvidAuthenticationTests : IAsyncLifetime
{
    private const string Audience = "spiffe://example.test/service/quotes";
    private readonly TestTrustDomain _td = new("example.test");
    private readonly TestTrustDomain _foreign = new("foreign.test");
    private readonly MutableRevocations _revocations = new();
    private RelyingPartyHost _host = null!;

    public async ValueTask InitializeAsync() => _host = await StartAsync(_ => { });

    public async ValueTask DisposeAsync() => await _host.DisposeAsync();

    private Task<RelyingPartyHost> StartAsync(Action<WritJwtSvidOptions> configure) =>
        RelyingPartyHost.StartAsync(_td.Svid("/service/quotes"), auth => auth.AddWritJwtSvid(o =>
        {
            o.Audience = Audience;
            o.Bundles = new MutableBundles(_td.Bundle, _foreign.Bundle);
            o.Revocations = _revocations;
            o.Authorizer = Authorize.MemberOf(_td.TrustDomain);
            configure(o);
        }));

    [Fact]
    public async Task A_valid_bearer_token_is_accepted_with_its_SPIFFE_ID_and_jti()
    {
        var token = _td.Jwt("/sample/greeter", Audience, jti: "jti-ok-1");
        var (status, body, _) = await GetAsync(_host.Client(), "/jwt", token);
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal("spiffe://example.test/sample/greeter|example.test|jti-ok-1", body);
    }

    [Fact]
    public async Task No_token_is_401_with_a_bare_Bearer_challenge()
    {
        using var client = _host.Client();
        using var response = await client.GetAsync("/jwt", TestContext.Current.CancellationToken);
        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        Assert.Equal("Bearer", response.Headers.WwwAuthenticate.Single().ToString());
    }

    [Fact]
    public async Task A_token_for_another_audience_is_refused_with_invalid_token()
    {
        var token = _td.Jwt("/sample/greeter", "spiffe://example.test/service/other");
        using var client = _host.Client();
        using var request = new HttpRequestMessage(HttpMethod.Get, "/jwt");
        request.Headers.Authorization = new("Bearer", token);
        using var response = await client.SendAsync(request, TestContext.Current.CancellationToken);
        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        var challenge = response.Headers.WwwAuthenticate.Single();
        Assert.Equal("Bearer", challenge.Scheme);
        Assert.StartsWith("error=\"invalid_token\", error_description=\"WRIT-SDK-AUTH-JWT-INVALID: JWT aud does not contain", challenge.Parameter);
        var body = await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken);
        Assert.DoesNotContain(token, body, StringComparison.Ordinal);   // the token is never echoed
        Assert.Single(body.TrimEnd('\n').Split('\n'));
    }

    [Fact]
    public async Task An_expired_token_is_refused()
    {
        var token = _td.Jwt("/sample/greeter", Audience, ttl: TimeSpan.FromMinutes(5), issuedAt: DateTimeOffset.UtcNow.AddHours(-1));
        var (status, body, code) = await GetAsync(_host.Client(), "/jwt", token);
        Assert.Equal(HttpStatusCode.Unauthorized, status);
        Assert.Equal(WritAuthCodes.InvalidJwtSvid, code);
        Assert.Contains("expired", body, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_token_signed_by_another_key_under_the_trust_domains_kid_is_refused()
    {
        var forger = new JwtSigningKey(_td.JwtKey.KeyId, ECDsa.Create(ECCurve.NamedCurves.nistP256));
        var token = _td.Jwt("/sample/greeter", Audience, signWith: forger);
        var (status, body, code) = await GetAsync(_host.Client(), "/jwt", token);
        Assert.Equal(HttpStatusCode.Unauthorized, status);
        Assert.Equal(WritAuthCodes.InvalidJwtSvid, code);
        Assert.Contains("signature does not verify", body, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_unsigned_alg_none_token_is_refused()
    {
        static string B64(string s) => Convert.ToBase64String(Encoding.UTF8.GetBytes(s)).TrimEnd('=').Replace('+', '-').Replace('/', '_');
        var exp = DateTimeOffset.UtcNow.AddMinutes(5).ToUnixTimeSeconds();
        var payload = $"{{\"sub\":\"spiffe://example.test/sample/greeter\",\"aud\":[\"{Audience}\"],\"exp\":{exp}}}";
        foreach (var token in new[] { $"{B64("{\"alg\":\"none\",\"kid\":\"" + _td.JwtKey.KeyId + "\"}")}.{B64(payload)}.", $"{B64("{\"alg\":\"none\",\"kid\":\"" + _td.JwtKey.KeyId + "\"}")}.{B64(payload)}.{B64("x")}" })
        {
            var (status, _, code) = await GetAsync(_host.Client(), "/jwt", token);
            Assert.Equal(HttpStatusCode.Unauthorized, status);
            Assert.Equal(WritAuthCodes.InvalidJwtSvid, code);
        }
    }

    [Fact]
    public async Task A_token_of_a_trust_domain_the_authorizer_refuses_is_refused()
    {
        var token = _foreign.Jwt("/sample/greeter", Audience);
        var (status, _, code) = await GetAsync(_host.Client(), "/jwt", token);
        Assert.Equal(HttpStatusCode.Unauthorized, status);
        Assert.Equal(WritAuthCodes.NotAuthorized, code);
    }

    [Fact]
    public async Task A_jti_revoked_after_first_use_is_refused_on_the_next_request()
    {
        var token = _td.Jwt("/sample/greeter", Audience, jti: "jti-revoke-me");
        using var client = _host.Client();
        Assert.Equal(HttpStatusCode.OK, (await GetAsync(client, "/jwt", token)).Status);
        _revocations.RevokeJti("jti-revoke-me");
        var (status, _, code) = await GetAsync(client, "/jwt", token);
        Assert.Equal(HttpStatusCode.Unauthorized, status);
        Assert.Equal(WritAuthCodes.Revoked, code);
    }

    [Fact]
    public async Task A_bound_token_with_its_certificate_is_accepted_and_with_another_certificate_refused()
    {
        using var greeterCert = _td.Svid("/sample/greeter");
        using var thiefCert = _td.Svid("/sample/thief");
        var token = _td.Jwt("/sample/greeter", Audience, boundTo: greeterCert);

        var (stolen, body, code) = await GetAsync(_host.Client(thiefCert), "/jwt", token);
        Assert.Equal(HttpStatusCode.Unauthorized, stolen);
        Assert.Equal(WritAuthCodes.BindingMismatch, code);
        Assert.Contains("bound", body, StringComparison.Ordinal);

        Assert.Equal(HttpStatusCode.OK, (await GetAsync(_host.Client(greeterCert), "/jwt", token)).Status);
    }

    [Fact]
    public async Task A_bound_token_without_mTLS_is_refused_unless_allowed()
    {
        using var greeterCert = _td.Svid("/sample/greeter");
        var token = _td.Jwt("/sample/greeter", Audience, boundTo: greeterCert);
        var (status, _, code) = await GetAsync(_host.Client(), "/jwt", token);
        Assert.Equal(HttpStatusCode.Unauthorized, status);
        Assert.Equal(WritAuthCodes.BindingRequiresMtls, code);

        await using var lenient = await StartAsync(o => o.AllowBoundTokenWithoutMtls = true);
        Assert.Equal(HttpStatusCode.OK, (await GetAsync(lenient.Client(), "/jwt", token)).Status);
    }

    [Fact]
    public async Task Bearer_tokens_are_refused_when_only_bound_tokens_are_allowed()
    {
        await using var strict = await StartAsync(o => o.AllowBearerTokens = false);
        using var greeterCert = _td.Svid("/sample/greeter");
        var (status, _, code) = await GetAsync(strict.Client(greeterCert), "/jwt", _td.Jwt("/sample/greeter", Audience));
        Assert.Equal(HttpStatusCode.Unauthorized, status);
        Assert.Equal(WritAuthCodes.BearerNotAllowed, code);
        Assert.Equal(HttpStatusCode.OK, (await GetAsync(strict.Client(greeterCert), "/jwt", _td.Jwt("/sample/greeter", Audience, boundTo: greeterCert))).Status);
    }

    [Fact]
    public async Task A_token_replayed_by_another_presenter_is_refused_and_the_first_presenter_keeps_working()
    {
        using var greeterCert = _td.Svid("/sample/greeter");
        using var thiefCert = _td.Svid("/sample/thief");
        var token = _td.Jwt("/sample/greeter", Audience);   // a bearer token: anyone holding it could present it
        using var greeter = _host.Client(greeterCert);
        Assert.Equal(HttpStatusCode.OK, (await GetAsync(greeter, "/jwt", token)).Status);
        Assert.Equal(HttpStatusCode.OK, (await GetAsync(greeter, "/jwt", token)).Status);   // the same presenter again: not a replay

        var (status, _, code) = await GetAsync(_host.Client(thiefCert), "/jwt", token);
        Assert.Equal(HttpStatusCode.Unauthorized, status);
        Assert.Equal(WritAuthCodes.Replayed, code);
        var (noMtls, _, code2) = await GetAsync(_host.Client(), "/jwt", token);
        Assert.Equal(HttpStatusCode.Unauthorized, noMtls);
        Assert.Equal(WritAuthCodes.Replayed, code2);

        Assert.Equal(HttpStatusCode.OK, (await GetAsync(greeter, "/jwt", token)).Status);
    }

    [Fact]
    public async Task A_token_without_jti_replayed_in_another_encoding_of_the_same_signature_is_still_a_replay()
    {
        // Tokens without jti (a federated SPIRE issues them) are remembered by the hash of their text. The thief re-encodes
        // the same token: the unused low bits of the signature's last base64url character, or the ECDSA twin (r, n - s).
        using var greeterCert = _td.Svid("/sample/greeter");
        using var thiefCert = _td.Svid("/sample/thief");
        var now = DateTimeOffset.UtcNow;
        var token = Writ.Spiffe.Jwt.JwtSvidMinter.Mint(_td.JwtKey, Writ.Spiffe.SpiffeId.Parse("spiffe://example.test/sample/greeter"), [Audience],
            now, now + TimeSpan.FromMinutes(5), new Dictionary<string, object>());
        Assert.DoesNotContain("jti", System.Text.Encoding.UTF8.GetString(System.Buffers.Text.Base64Url.DecodeFromChars(token.Split('.')[1])), StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.OK, (await GetAsync(_host.Client(greeterCert), "/jwt", token)).Status);

        var dot = token.LastIndexOf('.');
        var sig = System.Buffers.Text.Base64Url.DecodeFromChars(token.AsSpan(dot + 1));
        const string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        var last = alphabet.IndexOf(token[^1], StringComparison.Ordinal);
        var lowBits = token[..^1] + alphabet[last ^ 1];                          // 64 bytes = 86 chars: the last char has 4 unused bits
        var n = System.Numerics.BigInteger.Parse("0FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551", System.Globalization.NumberStyles.HexNumber);
        var sValue = new System.Numerics.BigInteger(sig.AsSpan(32), isUnsigned: true, isBigEndian: true);
        var twinS = (n - sValue).ToByteArray(isUnsigned: true, isBigEndian: true);
        var twin = new byte[64];
        sig.AsSpan(0, 32).CopyTo(twin);
        twinS.CopyTo(twin.AsSpan(64 - twinS.Length));
        var highS = token[..(dot + 1)] + System.Buffers.Text.Base64Url.EncodeToString(twin);

        foreach (var (what, variant) in new[] { ("low bits", lowBits), ("twin signature", highS) })
        {
            Assert.NotEqual(token, variant);
            var (status, _, code) = await GetAsync(_host.Client(thiefCert), "/jwt", variant);
            Assert.True(status != HttpStatusCode.OK, $"the {what} re-encoding was accepted from another presenter (code {code})");
        }
    }

    [Fact]
    public async Task Several_Authorization_headers_and_oversized_tokens_are_refused()
    {
        using var client = _host.Client();
        using var request = new HttpRequestMessage(HttpMethod.Get, "/jwt");
        request.Headers.TryAddWithoutValidation("Authorization", ["Bearer a.b.c", "Bearer d.e.f"]);
        using var response = await client.SendAsync(request, TestContext.Current.CancellationToken);
        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        Assert.Equal(WritAuthCodes.MalformedAuthorization, response.Headers.GetValues("Writ-Error-Code").Single());

        var (status, body, code) = await GetAsync(client, "/jwt", new string('a', 20_000) + ".b.c");
        Assert.Equal(HttpStatusCode.Unauthorized, status);
        Assert.Equal(WritAuthCodes.InvalidJwtSvid, code);
        Assert.True(body.Length < 400, body);
    }
}
