using System.Text.Json;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using Writ.Server.Ca;
using Writ.Server.Discovery;
using Writ.Server.Keys;
using Writ.Server.Tests.Ca;
using Writ.Spiffe;
using Writ.Spiffe.Jwt;

namespace Writ.Server.Tests.Discovery;

/// <summary>
/// "Keys appear before they sign and stay until their last token expires": a real CA (SQLite store, fake clock) rotated
/// through three JWT key lifetimes, its bundle turned into the provider's JWKS at every step, and every token minted so
/// far checked against it with Microsoft.IdentityModel (a verifier nobody here wrote).
/// </summary>
public sealed class DiscoveryKeyLifecycleTests
{
    private const string Issuer = "https://oidc.example.org";
    private static readonly string[] Audience = ["https://api.example.org"];

    [Fact]
    public async Task Every_key_is_served_before_it_signs_and_until_every_token_it_signed_has_expired()
    {
        await using var h = await CaHarness.CreateAsync();
        var ttl = TimeSpan.FromHours(1);
        var ca = await h.StartCaAsync(new CaOptions { JwtKeyTtl = ttl, CaTtl = TimeSpan.FromHours(24), JwtIssuer = Issuer }, new MemoryKeyManager());
        var firstServed = new Dictionary<string, DateTimeOffset>(StringComparer.Ordinal);
        var firstSigned = new Dictionary<string, DateTimeOffset>(StringComparer.Ordinal);
        var minted = new List<(string Token, string Kid, DateTimeOffset Exp)>();
        var handler = new JsonWebTokenHandler();
        var step = TimeSpan.FromMinutes(1);
        for (var t = TimeSpan.Zero; t < 3 * ttl; t += step)
        {
            await ca.RotateAsync(TestContext.Current.CancellationToken);
            var now = h.Time.GetUtcNow();
            var served = DiscoveryDocuments.Build(CaHarness.Td, ca.Bundle.ToSpiffeJson(), Issuer);
            foreach (var kid in served.Kids)
            {
                firstServed.TryAdd(kid, now);
            }
            // A token every step, asking for longer than the key has left: its TTL is capped by the key's expiry.
            var (token, exp) = ca.MintJwtSvid(CaHarness.Workload, Audience, TimeSpan.FromMinutes(50));
            var kidOf = new JsonWebToken(token).Kid;
            firstSigned.TryAdd(kidOf, now);
            minted.Add((token, kidOf, exp));
            Assert.Contains(kidOf, served.Kids);

            var keys = new JsonWebKeySet(DiscoveryDocuments.Utf8(served.Jwks)).GetSigningKeys();
            foreach (var (old, kid, oldExp) in minted.Where(m => m.Exp > now))
            {
                Assert.True(served.Kids.Contains(kid), $"at {t}: key {kid} left the JWKS while a token it signed is valid until {oldExp:u}");
                var result = await handler.ValidateTokenAsync(old, new TokenValidationParameters
                {
                    ValidIssuer = Issuer,
                    ValidAudiences = Audience,
                    IssuerSigningKeys = keys,
                    ValidateLifetime = false,   // the fake clock is not the library's; expiry is checked against it above
                });
                Assert.True(result.IsValid, $"at {t}: {result.Exception?.Message}");
            }
            h.Time.Advance(step);
        }
        Assert.True(firstSigned.Count >= 3, $"only {firstSigned.Count} keys signed in three lifetimes: the rotation did not run");
        foreach (var (kid, signed) in firstSigned.Skip(1))
        {
            // The first key signs in the pass that made it (a new CA); every later one is served well before.
            Assert.True(firstServed[kid] + TimeSpan.FromMinutes(10) <= signed, $"key {kid} first served at {firstServed[kid]:u}, signing from {signed:u}");
        }
    }

    [Fact]
    public async Task Jwt_svids_carry_the_issuer_and_Writs_own_validator_still_accepts_them()
    {
        await using var h = await CaHarness.CreateAsync();
        var ca = await h.StartCaAsync(new CaOptions { JwtIssuer = Issuer }, new MemoryKeyManager());
        var (token, _) = ca.MintJwtSvid(CaHarness.Workload, Audience, TimeSpan.FromMinutes(5));
        var (bound, _, _) = ca.MintJwtSvidWithId(CaHarness.Workload, Audience, TimeSpan.FromMinutes(5), new byte[32]);
        foreach (var t in new[] { token, bound })
        {
            Assert.Equal(Issuer, new JsonWebToken(t).Issuer);
            var v = JwtSvidValidator.Validate(t, ca.Bundle, Audience, h.Time.GetUtcNow());
            Assert.True(v.IsValid, v.Error);
        }
        var plain = await h.StartCaAsync(new CaOptions(), new MemoryKeyManager());
        Assert.False(new JsonWebToken(plain.MintJwtSvid(CaHarness.Workload, Audience, TimeSpan.FromMinutes(5)).Token).TryGetPayloadValue<string>("iss", out _));
    }

    [Fact]
    public async Task The_jwks_holds_only_jwt_authorities_with_kid_kty_alg_and_use_sig()
    {
        await using var h = await CaHarness.CreateAsync();
        var ca = await h.StartCaAsync(new CaOptions { JwtKeyType = KeyType.Rsa2048 }, new MemoryKeyManager());
        var snapshot = DiscoveryDocuments.Build(CaHarness.Td, ca.Bundle.ToSpiffeJson(), Issuer);
        using var jwks = JsonDocument.Parse(snapshot.Jwks);
        var keys = jwks.RootElement.GetProperty("keys").EnumerateArray().ToList();
        Assert.Equal(ca.Bundle.JwtAuthorityList.Count, keys.Count);
        foreach (var k in keys)
        {
            Assert.Equal("sig", k.GetProperty("use").GetString());
            Assert.Equal("RS256", k.GetProperty("alg").GetString());
            Assert.Equal("RSA", k.GetProperty("kty").GetString());
            Assert.False(string.IsNullOrEmpty(k.GetProperty("kid").GetString()));
            Assert.False(k.TryGetProperty("x5c", out _));   // never an X.509 authority
        }
        using var config = JsonDocument.Parse(snapshot.Configuration);
        Assert.Equal(Issuer, config.RootElement.GetProperty("issuer").GetString());
        Assert.Equal(Issuer + "/keys", config.RootElement.GetProperty("jwks_uri").GetString());
        Assert.Equal(["RS256"], config.RootElement.GetProperty("id_token_signing_alg_values_supported").EnumerateArray().Select(e => e.GetString()));
        // A reply that is not a SPIFFE bundle is refused (the provider keeps its last good keys).
        Assert.ThrowsAny<FormatException>(() => DiscoveryDocuments.Build(TrustDomain.Parse("other.org"), "{\"keys\": 5}", Issuer));
    }
}
