using System.Security.Cryptography;
using System.Text.Json;
using Writ.Spiffe.Bundles;
using Writ.Spiffe.X509;

namespace Writ.Spiffe.Tests;

public sealed class SerializationTests
{
    private sealed record Holder(SpiffeId? Id, TrustDomain Td);

    [Fact]
    public void Ids_and_trust_domains_serialize_as_strings()
    {
        var json = JsonSerializer.Serialize(new Holder(SpiffeId.Parse("spiffe://example.org/a"), TrustDomain.Parse("example.org")));
        Assert.Equal("""{"Id":"spiffe://example.org/a","Td":"example.org"}""", json);
        var back = JsonSerializer.Deserialize<Holder>(json)!;
        Assert.Equal(SpiffeId.Parse("spiffe://example.org/a"), back.Id);
        Assert.Equal(TrustDomain.Parse("example.org"), back.Td);
        var empty = JsonSerializer.Deserialize<Holder>("""{"Id":null,"Td":""}""")!;
        Assert.Null(empty.Id);
        Assert.True(empty.Td.IsZero);
    }

    [Theory]
    [InlineData("""{"Id":"spiffe://Example.org/a","Td":"example.org"}""", "lowercase")]
    [InlineData("""{"Id":"spiffe://example.org/a","Td":"ex$ample"}""", "trust domain characters")]
    [InlineData("""{"Id":5,"Td":"example.org"}""", "JSON string")]
    public void Invalid_values_are_refused_with_the_rule(string json, string reason)
    {
        var e = Assert.Throws<JsonException>(() => JsonSerializer.Deserialize<Holder>(json));
        Assert.Contains(reason, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Workload_api_der_encodings_round_trip()
    {
        var ca = new TestCa("example.org", intermediate: true);
        var (chain, key) = ca.Mint("/w");
        var svid = new X509Svid(SpiffeId.Parse("spiffe://example.org/w"), chain, key);
        Assert.True(X509Svid.TryParseDer(svid.ChainDer(), svid.PrivateKeyPkcs8(), out var back, out var error), error);
        Assert.Equal(2, back!.Chain.Count);
        Assert.Equal(svid.Id, back.Id);
        Assert.Equal(svid.PrivateKeyPkcs8(), back.PrivateKeyPkcs8());

        var bundle = new TrustBundle(ca.TrustDomain, [ca.Root, new TestCa("example.org").Root], []);
        Assert.True(TrustBundle.TryParseX509Der(ca.TrustDomain, bundle.X509AuthoritiesDer(), out var b2, out error), error);
        Assert.Equal(bundle.X509Authorities.Select(c => c.RawData), b2.X509Authorities.Select(c => c.RawData));
        Assert.True(TrustBundle.TryParseX509Der(ca.TrustDomain, [], out var empty, out _));
        Assert.True(empty.IsEmpty);
    }

    [Fact]
    public void Broken_der_is_refused_without_exceptions()
    {
        var ca = new TestCa("example.org");
        var (chain, key) = ca.Mint("/w");
        var der = chain[0].RawData;
        Assert.False(X509Svid.TryParseDer(der.AsSpan(0, der.Length - 1), [], out _, out var e1));
        Assert.False(string.IsNullOrEmpty(e1));
        Assert.False(X509Svid.TryParseDer([.. der, 0x30], [], out _, out _));
        Assert.False(X509Svid.TryParseDer(der, [1, 2, 3], out _, out var e2));
        Assert.Contains("PKCS#8", e2, StringComparison.Ordinal);
        using var other = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        Assert.False(X509Svid.TryParseDer(der, other.ExportPkcs8PrivateKey(), out _, out var e3));
        Assert.Contains("does not match", e3, StringComparison.Ordinal);
        Assert.True(X509Svid.TryParseDer(der, key.ExportPkcs8PrivateKey(), out _, out _));
        Assert.False(TrustBundle.TryParseX509Der(ca.TrustDomain, [0x30, 0x82, 0xFF], out _, out _));
    }
}
