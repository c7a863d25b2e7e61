using System.Security.Cryptography;
using Writ.Spiffe.Bundles;
using Writ.Spiffe.Jwt;
using Writ.Spiffe.X509;

namespace Writ.Spiffe.Tests;

/// <summary>The CA key and bundle keys are shared objects: concurrent minting and validation must all succeed.</summary>
public sealed class ConcurrencyTests
{
    [Fact]
    public async Task Concurrent_mint_and_validate_share_keys_safely()
    {
        var ca = new TestCa("example.org");
        var jwtKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var bundle = new TrustBundle(ca.TrustDomain, [ca.Root], [new JwtAuthority("k", jwtKey)]);
        var signer = new JwtSigningKey("k", jwtKey);
        var id = SpiffeId.Parse("spiffe://example.org/w");
        var tasks = Enumerable.Range(0, 8).Select(_ => Task.Run(() =>
        {
            var failures = 0;
            for (var i = 0; i < 50; i++)
            {
                var token = JwtSvidMinter.Mint(signer, id, ["a"], TestCa.Now, TestCa.Now.AddMinutes(5));
                failures += JwtSvidValidator.Validate(token, bundle, ["a"], TestCa.Now).IsValid ? 0 : 1;
                using var leafKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
                var leaf = X509SvidMinter.SignLeaf(ca.Root, ca.RootKey, id, new System.Security.Cryptography.X509Certificates.PublicKey(leafKey), TestCa.Now, TimeSpan.FromHours(1));
                failures += X509SvidValidator.Validate([leaf], bundle, TestCa.Now).IsValid ? 0 : 1;
            }
            return failures;
        }, TestContext.Current.CancellationToken)).ToArray();
        var results = await Task.WhenAll(tasks);
        Assert.All(results, f => Assert.Equal(0, f));
    }
}
