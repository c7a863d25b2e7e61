using System.Security.Cryptography;
using Writ.Spiffe.Bundles;
using Writ.Spiffe.Jwt;
using Writ.Spiffe.X509;

namespace Writ.Spiffe.Tests.Bundles;

public sealed class BundleRulesTests
{
    private static readonly TrustDomain Td = TrustDomain.Parse("example.org");

    private static string EcJwk(string kid, string use = "jwt-svid")
    {
        using var k = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var b = new TrustBundle(Td, [], [new JwtAuthority(kid, k)]);
        var jwks = b.ToSpiffeJson();
        var start = jwks.IndexOf('[', StringComparison.Ordinal) + 1;
        return jwks[start..jwks.LastIndexOf(']')].Replace("\"jwt-svid\"", $"\"{use}\"", StringComparison.Ordinal);
    }

    [Fact]
    public void Empty_keys_list_is_an_empty_bundle_that_distrusts_everything()
    {
        Assert.True(TrustBundle.TryParseSpiffeJson(Td, """{"keys":[]}""", out var b, out var error), error);
        Assert.True(b.IsEmpty);
        var ca = new TestCa("example.org");
        var (chain, _) = ca.Mint("/w");
        Assert.False(X509SvidValidator.Validate(chain, b, TestCa.Now).IsValid);
    }

    [Fact]
    public void Unknown_kty_and_use_are_ignored()
    {
        var json = $$"""{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AAAA","use":"jwt-svid","kid":"okp"},{{EcJwk("a")}},{{EcJwk("b", "wit-svid")}},{{EcJwk("c", "sig")}}]}""";
        Assert.True(TrustBundle.TryParseSpiffeJson(Td, json, out var b, out var error), error);
        Assert.Equal(["a"], b.JwtAuthorities.Keys);
    }

    [Fact]
    public void Rsa_modulus_with_a_leading_zero_octet_is_read_as_the_same_key()
    {
        using var rsa = RSA.Create(2048);
        var p = rsa.ExportParameters(false);
        static string B64(byte[] b) => Convert.ToBase64String(b).TrimEnd('=').Replace('+', '-').Replace('/', '_');
        var json = $$"""{"keys":[{"kty":"RSA","use":"jwt-svid","kid":"r","n":"{{B64([0, .. p.Modulus!])}}","e":"{{B64(p.Exponent!)}}"}]}""";
        Assert.True(TrustBundle.TryParseSpiffeJson(Td, json, out var b, out var error), error);
        Assert.Equal(2048, b.JwtAuthorities["r"].KeySize);
        Assert.Equal(rsa.ExportSubjectPublicKeyInfo(), b.JwtAuthorities["r"].ExportSubjectPublicKeyInfo());
    }

    [Fact]
    public void Duplicate_kid_is_refused()
    {
        var json = $$"""{"keys":[{{EcJwk("same")}},{{EcJwk("same")}}]}""";
        Assert.False(TrustBundle.TryParseSpiffeJson(Td, json, out _, out var error));
        Assert.Contains("appears twice", error, StringComparison.Ordinal);
        using var k = ECDsa.Create();
        Assert.Throws<ArgumentException>(() => new TrustBundle(Td, [], [new JwtAuthority("x", k), new JwtAuthority("x", k)]));
    }

    [Fact]
    public void Duplicate_json_members_are_refused()
    {
        Assert.False(TrustBundle.TryParseSpiffeJson(Td, """{"keys":[],"keys":[]}""", out _, out var error));
        Assert.Contains("duplicate", error, StringComparison.Ordinal);
    }

    [Fact]
    public void X5c_certificate_whose_key_differs_from_the_jwk_is_refused()
    {
        var a = new TestCa("example.org");
        var b = new TestCa("example.org");
        var json = new TrustBundle(Td, [a.Root], []).ToSpiffeJson();
        var swapped = json.Replace(Convert.ToBase64String(a.Root.RawData), Convert.ToBase64String(b.Root.RawData), StringComparison.Ordinal);
        Assert.False(TrustBundle.TryParseSpiffeJson(Td, swapped, out _, out var error));
        Assert.Contains("do not match", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Emitted_json_has_the_spiffe_shape()
    {
        var ca = new TestCa("example.org");
        using var k = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var json = new TrustBundle(Td, [ca.Root], [new JwtAuthority("kid-1", k)], 7, TimeSpan.FromSeconds(90)).ToSpiffeJson();
        using var doc = System.Text.Json.JsonDocument.Parse(json);
        var keys = doc.RootElement.GetProperty("keys");
        Assert.Equal(2, keys.GetArrayLength());
        Assert.Equal("x509-svid", keys[0].GetProperty("use").GetString());
        Assert.False(keys[0].TryGetProperty("kid", out _));
        Assert.Equal(1, keys[0].GetProperty("x5c").GetArrayLength());
        Assert.Equal("jwt-svid", keys[1].GetProperty("use").GetString());
        Assert.Equal("kid-1", keys[1].GetProperty("kid").GetString());
        Assert.Equal("EC", keys[1].GetProperty("kty").GetString());
        Assert.Equal("P-256", keys[1].GetProperty("crv").GetString());
        Assert.Equal(7, doc.RootElement.GetProperty("spiffe_sequence").GetInt64());
        Assert.Equal(90, doc.RootElement.GetProperty("spiffe_refresh_hint").GetInt64());
    }

    [Theory]
    [InlineData("")]
    [InlineData("null")]
    [InlineData("[]")]
    [InlineData("{\"keys\":{}}")]
    [InlineData("{\"keys\":[1]}")]
    [InlineData("{\"keys\":[],\"spiffe_sequence\":-1}")]
    [InlineData("{\"keys\":[],\"spiffe_sequence\":\"1\"}")]
    [InlineData("{\"keys\":[],\"spiffe_refresh_hint\":1.5}")]
    [InlineData("{\"keys\":[{\"kty\":\"EC\",\"use\":\"jwt-svid\",\"kid\":\"k\",\"crv\":\"P-256\",\"x\":\"AA\",\"y\":\"AA\"}]}")]
    [InlineData("{\"keys\":[{\"kty\":\"EC\",\"use\":\"x509-svid\",\"x5c\":[\"not base64!\"]}]}")]
    [InlineData("{\"keys\":[{\"kty\":\"EC\",\"use\":\"x509-svid\",\"x5c\":[\"AAAA\"]}]}")]
    public void Malformed_bundles_are_refused_without_exceptions(string json)
    {
        Assert.False(TrustBundle.TryParseSpiffeJson(Td, json, out var b, out var error));
        Assert.Null(b);
        Assert.False(string.IsNullOrWhiteSpace(error));
        Assert.DoesNotContain('\n', error);
    }

    [Fact]
    public void Bundle_set_round_trips_and_serves_each_domain()
    {
        var a = new TestCa("a.org");
        var b = new TestCa("b.org");
        using var k = ECDsa.Create(ECCurve.NamedCurves.nistP384);
        var set = new BundleSet([a.Bundle, new TrustBundle(b.TrustDomain, [b.Root], [new JwtAuthority("k", k)], 3)]);
        Assert.True(BundleSet.TryParseJson(set.ToJson(), out var back, out var error), error);
        Assert.Equal(2, back.Count);
        Assert.Equal(a.Root.RawData, back.GetBundle(a.TrustDomain)!.X509Authorities[0].RawData);
        Assert.Equal(3, back.GetBundle(b.TrustDomain)!.Sequence);
        Assert.Null(back.GetBundle(TrustDomain.Parse("c.org")));
        Assert.Throws<ArgumentException>(() => back.Add(a.Bundle));
        back.Set(new TrustBundle(a.TrustDomain, [], [], 9));
        Assert.Equal(9, back.GetBundle(a.TrustDomain)!.Sequence);
    }

    [Theory]
    [InlineData("""{"trust_domains":{"a.org":{"keys":[]},"a.org":{"keys":[]}}}""", "duplicate")]
    [InlineData("""{"trust_domains":{"a.org":{"keys":[]},"spiffe://a.org":{"keys":[]}}}""", "twice")]
    [InlineData("""{"trust_domains":{"A.org":{"keys":[]}}}""", "not a trust domain")]
    [InlineData("""{"trust_domains":{"a.org":{}}}""", "no 'keys' member")]
    [InlineData("""{"domains":{}}""", "trust_domains")]
    public void Bad_bundle_maps_are_refused(string json, string reason)
    {
        Assert.False(BundleSet.TryParseJson(json, out _, out var error));
        Assert.Contains(reason, error, StringComparison.Ordinal);
    }
}
