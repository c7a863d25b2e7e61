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
