using System.Security.Cryptography;
using Writ.Spiffe.Bundles;
using Writ.Spiffe.Jwt;

namespace Writ.Spiffe.Tests.Jwt;

public sealed class JwtSvidTests
{
    private static readonly DateTimeOffset Now = TestCa.Now;
    private static readonly TrustDomain Td = TrustDomain.Parse("example.org");
    private static readonly SpiffeId Subject = SpiffeId.Parse("spiffe://example.org/workload");

    [Theory]
    [InlineData("p256")]
    [InlineData("p384")]
    [InlineData("p521")]
    [InlineData("rsa")]
    public void Mint_then_validate_round_trips(string kind)
    {
        AsymmetricAlgorithm key = kind switch
        {
            "p256" => ECDsa.Create(ECCurve.NamedCurves.nistP256),
            "p384" => ECDsa.Create(ECCurve.NamedCurves.nistP384),
            "p521" => ECDsa.Create(ECCurve.NamedCurves.nistP521),
            _ => RSA.Create(2048),
        };
        var signing = new JwtSigningKey("kid-1", key);
        var bundle = new TrustBundle(Td, [], [new JwtAuthority("kid-1", key)]);
        var token = JwtSvidMinter.Mint(signing, Subject, ["svc-a", "svc-b"], Now, Now.AddMinutes(5),
            new Dictionary<string, object> { ["tenant"] = "t1", ["n"] = 3L, ["flag"] = true, ["groups"] = new[] { "x", "y" } });
        var result = JwtSvidValidator.Validate(token, bundle, ["svc-b"], Now.AddMinutes(1));
        Assert.True(result.IsValid, result.Error);
        var svid = result.Svid!;
        Assert.Equal(Subject, svid.Id);
        Assert.Equal(["svc-a", "svc-b"], svid.Audience);
        Assert.Equal(Now.AddMinutes(5), svid.ExpiresAt);
        Assert.Equal(Now, svid.IssuedAt);
        Assert.Equal("kid-1", svid.Kid);
        Assert.Equal("t1", svid.Claims.GetProperty("tenant").GetString());
        Assert.Equal(3, svid.Claims.GetProperty("n").GetInt64());
    }
}
