using System.Security.Cryptography;
using Writ.Spiffe.Bundles;
using Writ.Spiffe.Jwt;

namespace Writ.Spiffe.Tests.Bundles;

public sealed class TrustBundleTests
{
    private static readonly TrustDomain Td = TrustDomain.Parse("example.org");

    [Fact]
    public void Spiffe_json_round_trips()
    {
        var ca = new TestCa("example.org", () => RSA.Create(2048));
        var ec = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var rsa = RSA.Create(2048);
        var bundle = new TrustBundle(Td, [ca.Root], [new JwtAuthority("a", ec), new JwtAuthority("b", rsa)], 42, TimeSpan.FromMinutes(5));
        var json = bundle.ToSpiffeJson();
        var back = TrustBundle.ParseSpiffeJson(Td, json);
        Assert.Equal(42, back.Sequence);
        Assert.Equal(TimeSpan.FromMinutes(5), back.RefreshHint);
        Assert.Single(back.X509Authorities);
        Assert.Equal(ca.Root.RawData, back.X509Authorities[0].RawData);
        Assert.Equal(["a", "b"], back.JwtAuthorities.Keys.Order());
        Assert.Equal(ec.ExportSubjectPublicKeyInfo(), back.JwtAuthorities["a"].ExportSubjectPublicKeyInfo());
        Assert.Equal(json, back.ToSpiffeJson());
    }

    [Fact]
    public void Fixture_valid_1_parses_with_one_key_of_each_kind()
    {
        var b = TrustBundle.ParseSpiffeJson(Td, File.ReadAllText(TestData.BundleFixture("spiffebundle", "spiffebundle_valid_1.json")));
        Assert.Single(b.X509Authorities);
        Assert.Single(b.JwtAuthorities);
        Assert.True(b.JwtAuthorities.ContainsKey("C6vs25welZOx6WksNYfbMfiw9l96pMnD"));
    }

    [Fact]
    public void Pem_round_trips()
    {
        var a = new TestCa("example.org");
        var b = new TestCa("example.org");
        var bundle = new TrustBundle(Td, [a.Root, b.Root], []);
        var back = TrustBundle.ParsePem(Td, bundle.ToPem());
        Assert.Equal([a.Root.RawData, b.Root.RawData], back.X509Authorities.Select(c => c.RawData));
        Assert.Equal(a.Root.RawData.Concat(b.Root.RawData), bundle.X509AuthoritiesDer());
    }
}
