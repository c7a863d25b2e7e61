using System.Security.Cryptography;
using System.Text;
using Writ.Spiffe.Bundles;
using Writ.Spiffe.Jwt;

namespace Writ.Spiffe.Tests.Jwt;

/// <summary>Tokens an attacker would try; each must be refused for its own reason, and never with an exception.</summary>
public sealed class JwtAttackTests
{
    private static readonly DateTimeOffset Now = TestCa.Now;
    private static readonly TrustDomain Td = TrustDomain.Parse("example.org");
    private static readonly SpiffeId Subject = SpiffeId.Parse("spiffe://example.org/workload");
    private static readonly ECDsa Key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
    private static readonly JwtSigningKey Signer = new("kid-1", Key);
    private static readonly TrustBundle Bundle = new(Td, [], [new JwtAuthority("kid-1", Key)]);
    private static readonly string[] Aud = ["svc"];

    private static string Mint(DateTimeOffset? iat = null, DateTimeOffset? exp = null, string[]? aud = null, SpiffeId? sub = null) =>
        JwtSvidMinter.Mint(Signer, sub ?? Subject, aud ?? Aud, iat ?? Now, exp ?? Now.AddMinutes(5));

    private static JwtSvidValidation Validate(string token, IBundleSource? bundles = null, JwtSvidValidationOptions? options = null) =>
        JwtSvidValidator.Validate(token, bundles ?? Bundle, Aud, Now, options);

    private static string B64(string json) => B64(Encoding.UTF8.GetBytes(json));

    private static string B64(byte[] b) => Convert.ToBase64String(b).TrimEnd('=').Replace('+', '-').Replace('/', '_');

    private static string Claims(string sub = "spiffe://example.org/workload") =>
        $$"""{"sub":"{{sub}}","aud":["svc"],"exp":{{Now.AddMinutes(5).ToUnixTimeSeconds()}},"iat":{{Now.ToUnixTimeSeconds()}}}""";

    /// <summary>Signs an arbitrary header/payload with the real key (ES256), as an attacker who found a signing oracle could.</summary>
    private static string SignEs256(string headerJson, string payloadJson)
    {
        var input = B64(headerJson) + "." + B64(payloadJson);
        return input + "." + B64(Key.SignData(Encoding.ASCII.GetBytes(input), HashAlgorithmName.SHA256));
    }

    private static void Refused(JwtSvidValidation r, string reason)
    {
        Assert.False(r.IsValid);
        Assert.Null(r.Svid);
        Assert.Contains(reason, r.Error, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', r.Error!);
    }

    [Fact]
    public void Baseline_token_is_accepted()
    {
        var r = Validate(Mint());
        Assert.True(r.IsValid, r.Error);
        // The hand-built path used by the attacks below also produces valid tokens.
        Assert.True(Validate(SignEs256("""{"alg":"ES256","kid":"kid-1","typ":"JWT"}""", Claims())).IsValid);
    }

    [Fact]
    public void Alg_none_is_refused()
    {
        var token = B64("""{"alg":"none","kid":"kid-1"}""") + "." + B64(Claims()) + ".";
        Refused(Validate(token), "empty");
        var withJunkSig = B64("""{"alg":"none","kid":"kid-1"}""") + "." + B64(Claims()) + ".AAAA";
        Refused(Validate(withJunkSig), "'none' is not allowed");
    }

    [Fact]
    public void Hs256_with_the_public_key_as_hmac_secret_is_refused()
    {
        // The classic algorithm-confusion attack: sign with HMAC keyed by the verifier's public key bytes.
        var input = B64("""{"alg":"HS256","kid":"kid-1","typ":"JWT"}""") + "." + B64(Claims("spiffe://example.org/admin"));
        foreach (var secret in new[] { Key.ExportSubjectPublicKeyInfo(), Encoding.ASCII.GetBytes(Key.ExportSubjectPublicKeyInfoPem()) })
        {
            var token = input + "." + B64(HMACSHA256.HashData(secret, Encoding.ASCII.GetBytes(input)));
            Refused(Validate(token), "'HS256' is not allowed");
        }
    }

    [Theory]
    [InlineData("HS384")]
    [InlineData("HS512")]
    [InlineData("EdDSA")]
    [InlineData("ES256K")]
    [InlineData("es256")]
    public void Other_algs_are_refused_by_name(string alg)
    {
        var token = SignEs256($$"""{"alg":"{{alg}}","kid":"kid-1"}""", Claims());
        Refused(Validate(token), $"'{alg}' is not allowed");
    }

    [Fact]
    public void Alg_that_does_not_match_the_key_is_refused()
    {
        // ES384 claimed, P-256 key: signature length and curve must match the alg.
        var token = SignEs256("""{"alg":"ES384","kid":"kid-1"}""", Claims());
        Refused(Validate(token), "signature does not verify");
        var rs = SignEs256("""{"alg":"RS256","kid":"kid-1"}""", Claims());
        Refused(Validate(rs), "signature does not verify");
    }

    [Fact]
    public void Altered_payload_is_refused()
    {
        var parts = Mint().Split('.');
        var forged = parts[0] + "." + B64(Claims("spiffe://example.org/admin")) + "." + parts[2];
        Refused(Validate(forged), "signature does not verify");
    }

    [Fact]
    public void Altered_signature_is_refused()
    {
        var parts = Mint().Split('.');
        var sig = Convert.FromBase64String(parts[2].Replace('-', '+').Replace('_', '/') + new string('=', (4 - (parts[2].Length % 4)) % 4));
        sig[10] ^= 0x01;
        Refused(Validate(parts[0] + "." + parts[1] + "." + B64(sig)), "signature does not verify");
    }

    [Fact]
    public void Der_encoded_ecdsa_signature_is_refused()
    {
        // JOSE requires r||s; a DER signature over the same input must not be accepted.
        var input = B64("""{"alg":"ES256","kid":"kid-1"}""") + "." + B64(Claims());
        var der = Key.SignData(Encoding.ASCII.GetBytes(input), HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence);
        Refused(Validate(input + "." + B64(der)), "signature does not verify");
    }

    [Fact]
    public void Wrong_audience_is_refused() => Refused(Validate(Mint(aud: ["other"])), "aud does not contain");

    [Fact]
    public void Empty_audience_is_refused() =>
        Refused(Validate(SignEs256("""{"alg":"ES256","kid":"kid-1"}""",
            $$"""{"sub":"spiffe://example.org/w","aud":[],"exp":{{Now.AddMinutes(5).ToUnixTimeSeconds()}}}""")), "aud claim is empty");

    [Fact]
    public void Missing_aud_sub_or_exp_is_refused()
    {
        var exp = Now.AddMinutes(5).ToUnixTimeSeconds();
        Refused(Validate(SignEs256("""{"alg":"ES256","kid":"kid-1"}""", $$"""{"sub":"spiffe://example.org/w","exp":{{exp}}}""")), "no aud");
        Refused(Validate(SignEs256("""{"alg":"ES256","kid":"kid-1"}""", $$"""{"aud":"svc","exp":{{exp}}}""")), "no sub");
        Refused(Validate(SignEs256("""{"alg":"ES256","kid":"kid-1"}""", """{"sub":"spiffe://example.org/w","aud":"svc"}""")), "no exp");
        Refused(Validate(SignEs256("""{"alg":"ES256","kid":"kid-1"}""", $$"""{"sub":"not-an-id","aud":"svc","exp":{{exp}}}""")), "not a valid SPIFFE ID");
        Refused(Validate(SignEs256("""{"alg":"ES256","kid":"kid-1"}""", $$"""{"sub":"spiffe://example.org/w","aud":"svc","exp":"{{exp}}"}""")), "exp claim is not a NumericDate");
    }

    [Fact]
    public void Single_string_audience_is_accepted()
    {
        var token = SignEs256("""{"alg":"ES256","kid":"kid-1"}""",
            $$"""{"sub":"spiffe://example.org/w","aud":"svc","exp":{{Now.AddMinutes(5).ToUnixTimeSeconds()}}}""");
        var r = Validate(token);
        Assert.True(r.IsValid, r.Error);
        Assert.Equal(["svc"], r.Svid!.Audience);
    }

    [Fact]
    public void Expired_token_is_refused_after_the_leeway_only()
    {
        var token = Mint(iat: Now.AddMinutes(-10), exp: Now.AddSeconds(-20));
        Assert.True(Validate(token).IsValid); // within the default 30 s leeway
        Refused(Validate(token, options: new JwtSvidValidationOptions { Leeway = TimeSpan.FromSeconds(5) }), "expired");
        Refused(Validate(Mint(iat: Now.AddMinutes(-10), exp: Now.AddMinutes(-1))), "expired");
    }

    [Fact]
    public void Token_from_the_future_is_refused()
    {
        Refused(Validate(Mint(iat: Now.AddMinutes(5), exp: Now.AddMinutes(10))), "iat");
        var nbf = SignEs256("""{"alg":"ES256","kid":"kid-1"}""",
            $$"""{"sub":"spiffe://example.org/w","aud":"svc","exp":{{Now.AddMinutes(20).ToUnixTimeSeconds()}},"nbf":{{Now.AddMinutes(10).ToUnixTimeSeconds()}}}""");
        Refused(Validate(nbf), "not valid before");
    }

    [Fact]
    public void Unknown_kid_is_refused()
    {
        var other = new JwtSigningKey("kid-2", ECDsa.Create(ECCurve.NamedCurves.nistP256));
        Refused(Validate(JwtSvidMinter.Mint(other, Subject, Aud, Now, Now.AddMinutes(5))), "kid 'kid-2' is not a JWT authority");
    }

    [Fact]
    public void Right_kid_but_someone_elses_key_is_refused()
    {
        var impostor = new JwtSigningKey("kid-1", ECDsa.Create(ECCurve.NamedCurves.nistP256));
        Refused(Validate(JwtSvidMinter.Mint(impostor, Subject, Aud, Now, Now.AddMinutes(5))), "signature does not verify");
    }

    [Fact]
    public void Missing_kid_is_refused_unless_allowed()
    {
        var token = SignEs256("""{"alg":"ES256","typ":"JWT"}""", Claims());
        Refused(Validate(token), "no kid");
        var r = Validate(token, options: new JwtSvidValidationOptions { AllowMissingKid = true });
        Assert.True(r.IsValid, r.Error);
        Assert.Equal("", r.Svid!.Kid);
    }

    [Fact]
    public void Subject_in_another_trust_domain_is_checked_against_that_domains_keys()
    {
        // Signed by example.org's key, claiming an evil.org subject: evil.org's bundle has another key.
        var evilTd = TrustDomain.Parse("evil.org");
        var evilKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var bundles = new BundleSet([Bundle, new TrustBundle(evilTd, [], [new JwtAuthority("kid-9", evilKey)])]);
        var token = Mint(sub: SpiffeId.Parse("spiffe://evil.org/w"));
        Refused(JwtSvidValidator.Validate(token, bundles, Aud, Now), "is not a JWT authority of trust domain 'evil.org'");
        // Unknown trust domain altogether.
        Refused(Validate(Mint(sub: SpiffeId.Parse("spiffe://other.org/w"))), "no trust bundle for trust domain 'other.org'");
        // And the reverse: evil.org's key cannot vouch for an example.org subject, even with a kid that exists in evil.org.
        var evilSigned = JwtSvidMinter.Mint(new JwtSigningKey("kid-9", evilKey), Subject, Aud, Now, Now.AddMinutes(5));
        Refused(JwtSvidValidator.Validate(evilSigned, bundles, Aud, Now), "is not a JWT authority of trust domain 'example.org'");
    }

    [Theory]
    [InlineData("""{"alg":"ES256","kid":"kid-1","jku":"https://evil.example/jwks"}""", "'jku' is not allowed")]
    [InlineData("""{"alg":"ES256","kid":"kid-1","jwk":{"kty":"EC"}}""", "'jwk' is not allowed")]
    [InlineData("""{"alg":"ES256","kid":"kid-1","x5u":"https://evil.example/x"}""", "'x5u' is not allowed")]
    [InlineData("""{"alg":"ES256","kid":"kid-1","crit":["exp"]}""", "'crit' is not allowed")]
    [InlineData("""{"alg":"ES256","kid":"kid-1","cty":"JWT"}""", "'cty' is not allowed")]
    [InlineData("""{"alg":"ES256","kid":"kid-1","typ":"at+jwt"}""", "typ header must be")]
    [InlineData("""{"alg":"ES256","kid":"kid-1","kid":"kid-2"}""", "not valid JSON")]
    [InlineData("""{"alg":"ES256","kid":7}""", "kid header must be")]
    public void Bad_header_is_refused(string header, string reason) => Refused(Validate(SignEs256(header, Claims())), reason);

    [Fact]
    public void Typ_jose_and_absent_are_accepted()
    {
        Assert.True(Validate(SignEs256("""{"alg":"ES256","kid":"kid-1","typ":"JOSE"}""", Claims())).IsValid);
        Assert.True(Validate(SignEs256("""{"alg":"ES256","kid":"kid-1"}""", Claims())).IsValid);
    }

    [Fact]
    public void Duplicate_claims_are_refused()
    {
        var payload = $$"""{"sub":"spiffe://example.org/w","sub":"spiffe://example.org/admin","aud":"svc","exp":{{Now.AddMinutes(5).ToUnixTimeSeconds()}}}""";
        Refused(Validate(SignEs256("""{"alg":"ES256","kid":"kid-1"}""", payload)), "not valid JSON");
    }

    public static TheoryData<string> Garbage =>
    [
        "",
        "...",
        "..",
        "a.b",
        "a.b.c.d",
        "a.b.c",
        "!!!.###.$$$",
        "eyJhbGciOiJFUzI1NiJ9.e30.AAAA",
        "eyJhbGciOiJFUzI1NiJ9.W10.AAAA",
        "W10.e30.AAAA",
        "bnVsbA.bnVsbA.AAAA",
        "eyJhbGciOiJFUzI1NiI=.e30.AAAA",
        new string('a', 100_000) + "." + new string('b', 100_000) + ".c",
        "\u0000\u0001.\uFFFF.\uD800",
    ];

    [Theory]
    [MemberData(nameof(Garbage))]
    public void Garbage_is_refused_without_exceptions(string token)
    {
        var r = Validate(token);
        Assert.False(r.IsValid);
        Assert.False(string.IsNullOrWhiteSpace(r.Error));
        Assert.False(JwtSvidValidator.TryReadUnverified(token, out _, out var error));
        Assert.False(string.IsNullOrWhiteSpace(error));
    }

    [Fact]
    public void Random_bytes_are_refused_without_exceptions()
    {
        var rng = new Random(1234);
        for (var i = 0; i < 500; i++)
        {
            var bytes = new byte[rng.Next(0, 300)];
            rng.NextBytes(bytes);
            var text = i % 2 == 0 ? Encoding.Latin1.GetString(bytes) : string.Join('.', B64(bytes), B64(bytes.Reverse().ToArray()), B64(bytes));
            Assert.False(Validate(text).IsValid);
        }
        // Mutating a valid token byte by byte never yields a different valid token.
        var good = Mint();
        for (var i = 0; i < good.Length; i += 3)
        {
            var chars = good.ToCharArray();
            chars[i] = chars[i] == 'A' ? 'B' : 'A';
            var r = Validate(new string(chars));
            if (r.IsValid)
            {
                // Only a change in the unused low bits of the last base64 character can keep the bytes identical.
                Assert.Equal(Validate(good).Svid!.Claims.GetRawText(), r.Svid!.Claims.GetRawText());
            }
        }
    }

    [Fact]
    public void Read_unverified_shows_the_claims_of_any_well_formed_token()
    {
        var token = JwtSvidMinter.Mint(new JwtSigningKey("k", ECDsa.Create(ECCurve.NamedCurves.nistP384)), Subject, ["a"], Now, Now.AddMinutes(1));
        Assert.True(JwtSvidValidator.TryReadUnverified(token, out var svid, out var error), error);
        Assert.Equal(Subject, svid!.Id);
        Assert.Equal("k", svid.Kid);
        Assert.Equal(Now.AddMinutes(1), svid.ExpiresAt);
    }

    [Fact]
    public void Minted_token_has_the_jose_layout()
    {
        var parts = Mint().Split('.');
        Assert.Equal(3, parts.Length);
        Assert.DoesNotContain('=', string.Concat(parts));
        var header = Encoding.UTF8.GetString(Convert.FromBase64String(parts[0].Replace('-', '+').Replace('_', '/') + new string('=', (4 - (parts[0].Length % 4)) % 4)));
        Assert.Equal("""{"alg":"ES256","kid":"kid-1","typ":"JWT"}""", header);
        Assert.Equal(86, parts[2].Length); // 64-byte r||s for P-256, not DER
    }

    [Fact]
    public void Minter_refuses_to_overwrite_registered_claims() =>
        Assert.Throws<ArgumentException>(() => JwtSvidMinter.Mint(Signer, Subject, Aud, Now, Now.AddMinutes(5),
            new Dictionary<string, object> { ["sub"] = "spiffe://example.org/admin" }));
}
