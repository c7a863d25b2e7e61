using Writ.Spiffe.Bundles;

namespace Writ.Spiffe.Tests.Bundles;

/// <summary>go-spiffe's bundle fixtures (conformance/spiffe/fixtures/bundle, Apache-2.0) behave as go-spiffe and the checklist say.</summary>
public sealed class BundleFixtureTests
{
    private static readonly TrustDomain Td = TrustDomain.Parse("example.org");

    private static string Read(string kind, string name) => File.ReadAllText(TestData.BundleFixture(kind, name));

    [Theory]
    [InlineData("spiffebundle_valid_1.json", 1, 1, null, null)]
    [InlineData("spiffebundle_valid_2.json", 1, 6, 1L, 60)]
    [InlineData("spiffebundle_valid_with_wit.json", 1, 2, 1L, 60)] // wit-svid keys have an unknown use: ignored (§4.2)
    public void Valid_spiffe_bundles_parse_with_the_right_key_counts(string file, int x509, int jwt, long? seq, int? hint)
    {
        Assert.True(TrustBundle.TryParseSpiffeJson(Td, Read("spiffebundle", file), out var b, out var error), error);
        Assert.Equal(x509, b.X509Authorities.Count);
        Assert.Equal(jwt, b.JwtAuthorities.Count);
        Assert.Equal(seq, b.Sequence);
        Assert.Equal(hint is null ? null : TimeSpan.FromSeconds(hint.Value), b.RefreshHint);
        Assert.Equal(Td, b.TrustDomain);
        // And they survive our own serialization.
        var again = TrustBundle.ParseSpiffeJson(Td, b.ToSpiffeJson());
        Assert.Equal(b.X509Authorities.Select(c => c.Thumbprint), again.X509Authorities.Select(c => c.Thumbprint));
        Assert.Equal(b.JwtAuthorities.Keys.Order(), again.JwtAuthorities.Keys.Order());
    }

    [Theory]
    [InlineData("spiffebundle_missing_kid.json", "keyID cannot be empty")]
    [InlineData("spiffebundle_multiple_x509.json", "expected a single certificate in x509-svid entry 0; got 2")]
    [InlineData("spiffebundle_no_keys.json", "no 'keys' member")]
    public void Invalid_spiffe_bundles_are_refused_as_go_spiffe_does(string file, string reason)
    {
        Assert.False(TrustBundle.TryParseSpiffeJson(Td, Read("spiffebundle", file), out var b, out var error));
        Assert.Null(b);
        Assert.Contains(reason, error, StringComparison.Ordinal);
        var e = Assert.Throws<FormatException>(() => TrustBundle.ParseSpiffeJson(Td, Read("spiffebundle", file)));
        Assert.Equal(error, e.Message);
    }

    [Theory]
    [InlineData("cert.pem", 1)]
    [InlineData("certs.pem", 2)]
    [InlineData("empty.pem", 0)]
    public void X509_pem_bundles_parse(string file, int count)
    {
        Assert.True(TrustBundle.TryParsePem(Td, Read("x509bundle", file), out var b, out var error), error);
        Assert.Equal(count, b.X509Authorities.Count);
        Assert.Empty(b.JwtAuthorities);
        if (count > 0)
        {
            Assert.Equal(b.X509Authorities.Select(c => c.RawData), TrustBundle.ParsePem(Td, b.ToPem()).X509Authorities.Select(c => c.RawData));
        }
    }

    [Theory]
    [InlineData("corrupted.pem", "")]
    [InlineData("not-pem.pem", "no PEM blocks")]
    [InlineData("key.pem", "expected PEM block type CERTIFICATE")]
    public void Broken_x509_pem_bundles_are_refused(string file, string reason)
    {
        Assert.False(TrustBundle.TryParsePem(Td, Read("x509bundle", file), out var b, out var error));
        Assert.Null(b);
        Assert.False(string.IsNullOrWhiteSpace(error));
        Assert.Contains(reason, error, StringComparison.Ordinal);
        Assert.Throws<FormatException>(() => TrustBundle.ParsePem(Td, Read("x509bundle", file)));
    }

    [Theory]
    [InlineData("jwtbundle", "jwks_valid_1.json", 1)]
    [InlineData("jwtbundle", "jwks_valid_2.json", 2)]
    public void Jwks_bundles_parse(string kind, string file, int count)
    {
        Assert.True(TrustBundle.TryParseJwks(Td, Read(kind, file), out var b, out var error), error);
        Assert.Equal(count, b.JwtAuthorities.Count);
        Assert.True(b.JwtAuthorities.ContainsKey("C6vs25welZOx6WksNYfbMfiw9l96pMnD"));
    }

    [Fact]
    public void Jwks_bundle_with_a_key_missing_its_kid_is_refused()
    {
        Assert.False(TrustBundle.TryParseJwks(Td, Read("jwtbundle", "jwks_missing_kid.json"), out _, out var error));
        Assert.Contains("keyID cannot be empty", error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("jwks_valid_1.json", 1)]
    [InlineData("jwks_valid_2.json", 2)]
    [InlineData("jwks_missing_kid.json", -1)]
    public void Experimental_wit_bundles_behave_like_jwt_bundles(string file, int count)
    {
        var path = TestData.Conformance("fixtures", "exp", "bundle", "witbundle", "testdata", file);
        var ok = TrustBundle.TryParseJwks(Td, File.ReadAllText(path), out var b, out _);
        Assert.Equal(count >= 0, ok);
        if (ok)
        {
            Assert.Equal(count, b!.JwtAuthorities.Count);
        }
    }
}
