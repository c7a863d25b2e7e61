using System.Numerics;
using Writ.Protocol.Errors;
using Writ.Server.Ci;
using Writ.Tests.Shared;

namespace Writ.Server.Tests.Ci;

/// <summary>
/// The attacker's review of CI logins (issue #15): each test is an attack that got past a check before its fix.
/// </summary>
public sealed class CiReviewAttackTests : IAsyncLifetime
{
    private CiHarness _h = null!;

    public async ValueTask InitializeAsync() => _h = await CiHarness.CreateAsync();

    public async ValueTask DisposeAsync() => await _h.DisposeAsync();

    // The order of the P-256 group: for an ECDSA signature (r, s), (r, n - s) verifies too.
    private static readonly BigInteger P256Order = BigInteger.Parse("0FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551", System.Globalization.NumberStyles.HexNumber);

    /// <summary>
    /// A token without jti copied from a build log: its signature is re-encoded so the token's text (and SHA-256)
    /// differs while it still verifies — ECDSA's (r, n-s), or other unused bits in the last base64url character.
    /// The copy must still be the same token to the once-only check.
    /// </summary>
    [Theory]
    [InlineData("ecdsa-high-s")]
    [InlineData("base64url-unused-bits")]
    public async Task A_replayed_token_without_jti_with_a_re_encoded_signature_is_refused(string variant)
    {
        await _h.MainEntryAsync();
        var claims = _h.GitHubClaims();
        claims.Remove("jti");
        var token = _h.Token(claims);
        await _h.LoginAsync(token);

        var parts = token.Split('.');
        var copy = variant == "ecdsa-high-s" ? $"{parts[0]}.{parts[1]}.{HighS(parts[2])}" : $"{parts[0]}.{parts[1]}.{OtherUnusedBits(parts[2])}";
        Assert.NotEqual(token, copy);

        var e = await Assert.ThrowsAsync<WritException>(() => _h.LoginAsync(copy));
        // (r, n-s) verifies, so only the once-only check can catch it; other unused bits are refused by the decoder.
        Assert.Equal(variant == "ecdsa-high-s" ? CiCodes.Replayed : Writ.Server.Oidc.OidcErrors.BadSignature, e.Code);
        Assert.Single(await _h.LedgerAsync("x509.issued"));
    }

    /// <summary>
    /// An admin's entry for CI jobs with only the issuer as selector: every job the issuer signs a token for (with
    /// GitHub's, every repository on github.com) would get the identity under the default policy. Refused at creation;
    /// one claim or the subject narrows it enough to be accepted.
    /// </summary>
    [Fact]
    public void A_ci_entry_matching_every_token_of_an_issuer_is_refused_at_creation()
    {
        Writ.Server.Storage.RegistrationEntry Entry(params string[] selectors) => new()
        {
            SpiffeId = "spiffe://example.org/ci/deployer",
            ParentId = CiHarness.ServerId,
            Selectors = [.. selectors.Select(Writ.Protocol.Evidence.Selector.Parse)],
        };
        var wide = _h.Server.Validator.Check(Entry("oidc:iss:" + _h.Issuer.Issuer), "entry");
        Assert.NotNull(wide);
        Assert.Contains("oidc:claim:", wide, StringComparison.Ordinal);
        Assert.Throws<Writ.Server.Registration.ValidationException>(() => _h.Server.Validator.CheckAll([Entry("oidc:iss:" + _h.Issuer.Issuer)]));

        Assert.Null(_h.Server.Validator.Check(Entry("oidc:iss:" + _h.Issuer.Issuer, "oidc:claim:repository:org/app"), "entry"));
        Assert.Null(_h.Server.Validator.Check(Entry("oidc:iss:" + _h.Issuer.Issuer, "oidc:sub:repo:org/app:ref:refs/heads/main"), "entry"));
    }

    /// <summary>Two jobs racing with one copied token: exactly one login wins, the other is a replay.</summary>
    [Fact]
    public async Task Two_logins_racing_with_one_token_get_one_session()
    {
        await _h.MainEntryAsync();
        var token = _h.Token();

        var results = await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => Task.Run(async () =>
        {
            try
            {
                return (await _h.LoginAsync(token)).Session.Id;
            }
            catch (WritException e)
            {
                return e.Code;
            }
        })));

        Assert.Single(results, r => !r.StartsWith("WRIT-", StringComparison.Ordinal));
        Assert.All(results.Where(r => r.StartsWith("WRIT-", StringComparison.Ordinal)), r => Assert.Equal(CiCodes.Replayed, r));
        Assert.Single(await _h.LedgerAsync("x509.issued"));
    }

    /// <summary>
    /// Key injection through the token's own header: the attacker signs with its key and names it in <c>jwk</c>,
    /// <c>jku</c> or <c>x5u</c>, with no kid or with the issuer's kid. Only the issuer's JWKS is ever used.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_token_carrying_its_own_key_in_the_header_is_refused(bool issuersKid)
    {
        await _h.MainEntryAsync();
        var attacker = _h.Issuer.AddKey(publish: false);
        var header = new System.Text.Json.Nodes.JsonObject
        {
            ["alg"] = "ES256",
            ["typ"] = "JWT",
            ["jwk"] = attacker.Jwk(),
            ["jku"] = "https://evil.example.org/jwks",
            ["x5u"] = "https://evil.example.org/cert.pem",
        };
        if (issuersKid)
            header["kid"] = _h.Issuer.Current.Kid;
        var input = OidcTestIssuer.B64(System.Text.Encoding.UTF8.GetBytes(header.ToJsonString())) + "." + OidcTestIssuer.B64(System.Text.Encoding.UTF8.GetBytes(_h.GitHubClaims().ToJsonString()));
        var token = input + "." + OidcTestIssuer.B64(attacker.Sign(System.Text.Encoding.ASCII.GetBytes(input)));

        var e = await Assert.ThrowsAsync<WritException>(() => _h.LoginAsync(token));
        Assert.Equal(Writ.Server.Oidc.OidcErrors.BadSignature, e.Code);
        Assert.Empty(await _h.LedgerAsync("x509.issued"));
    }

    private static string HighS(string signature)
    {
        var sig = Base64UrlDecode(signature);
        Assert.Equal(64, sig.Length);
        var s = new BigInteger(sig.AsSpan(32), isUnsigned: true, isBigEndian: true);
        var flipped = (P256Order - s).ToByteArray(isUnsigned: true, isBigEndian: true);
        var result = new byte[64];
        sig.AsSpan(0, 32).CopyTo(result);
        flipped.CopyTo(result.AsSpan(64 - flipped.Length));
        return OidcTestIssuer.B64(result);
    }

    // 64 bytes are 86 base64url characters: the last one carries 2 bits of the signature and 4 unused ones.
    private static string OtherUnusedBits(string signature)
    {
        const string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        var last = alphabet.IndexOf(signature[^1], StringComparison.Ordinal);
        Assert.Equal(0, last & 0x0F);
        return signature[..^1] + alphabet[last | 0x01];
    }

    private static byte[] Base64UrlDecode(string s)
    {
        var b = s.Replace('-', '+').Replace('_', '/');
        return Convert.FromBase64String(b + new string('=', (4 - b.Length % 4) % 4));
    }
}
