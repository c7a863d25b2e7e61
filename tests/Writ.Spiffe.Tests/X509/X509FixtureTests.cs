using System.Security.Cryptography.X509Certificates;
using Writ.Spiffe.X509;

namespace Writ.Spiffe.Tests.X509;

/// <summary>go-spiffe's x509svid fixtures (conformance/spiffe/fixtures, Apache-2.0). They have expired, so structure is validated.</summary>
public sealed class X509FixtureTests
{
    private static List<X509Certificate2> Certs(string name)
    {
        var col = new X509Certificate2Collection();
        col.ImportFromPem(File.ReadAllText(TestData.X509SvidFixture(name)));
        return [.. col];
    }

    [Theory]
    [InlineData("wrong-leaf-ca-true.pem", "CA flag")]
    [InlineData("wrong-leaf-cert-sign.pem", "keyCertSign")]
    [InlineData("wrong-leaf-crl-sign.pem", "cRLSign")]
    [InlineData("wrong-leaf-empty-id.pem", "URI SAN")]
    [InlineData("wrong-leaf-no-digital-signature.pem", "digitalSignature")]
    [InlineData("wrong-intermediate-no-ca.pem", "chain certificate 1 is a signing certificate but does not have the CA flag")]
    [InlineData("wrong-intermediate-no-key-cert-sign.pem", "chain certificate 1 is a signing certificate but does not have the keyCertSign")]
    public void Wrong_fixtures_are_refused_for_the_right_reason(string file, string reason)
    {
        var chain = Certs(file);
        Assert.NotEmpty(chain);
        var r = X509SvidValidator.ValidateStructure(chain);
        Assert.False(r.IsValid);
        Assert.Contains(reason, r.Error, StringComparison.Ordinal);
        Assert.Null(r.Id);
    }

    [Theory]
    [InlineData("good-leaf-only.pem")]
    [InlineData("good-leaf-and-intermediate.pem")]
    public void Good_fixtures_pass_structure_checks(string file)
    {
        var r = X509SvidValidator.ValidateStructure(Certs(file));
        Assert.True(r.IsValid, r.Error);
        Assert.Equal(SpiffeId.Parse("spiffe://example.org/workload-1"), r.Id);
        Assert.True(X509SvidValidator.ValidateLeaf(Certs(file)[0]).IsValid);
    }

    [Theory]
    [InlineData("good-cert-and-key.pem")]
    [InlineData("good-key-and-cert.pem")]
    public void Svid_pem_with_cert_and_key_in_one_file_parses(string file)
    {
        var pem = File.ReadAllText(TestData.X509SvidFixture(file));
        Assert.True(X509Svid.TryParsePem(pem, null, out var svid, out var error), error);
        Assert.NotNull(svid!.PrivateKey);
        Assert.Equal("spiffe://example.org/workload-1", svid.Id.ToString());
        Assert.StartsWith("-----BEGIN PRIVATE KEY-----", svid.PrivateKeyPem(), StringComparison.Ordinal);
    }

    [Fact]
    public void Svid_pem_with_separate_chain_and_key_parses()
    {
        var chain = File.ReadAllText(TestData.X509SvidFixture("good-leaf-and-intermediate.pem"));
        Assert.True(X509Svid.TryParsePem(chain, null, out var svid, out var error), error);
        Assert.Equal(2, svid!.Chain.Count);
        Assert.Null(svid.PrivateKey);
        // A key that belongs to another certificate is refused.
        var otherKey = File.ReadAllText(TestData.X509SvidFixture("key-pkcs8-rsa.pem"));
        Assert.False(X509Svid.TryParsePem(chain, otherKey, out _, out error));
        Assert.Contains("does not match", error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("corrupt-cert.pem")]
    [InlineData("not-pem")]
    public void Broken_svid_files_are_refused_without_exceptions(string file)
    {
        var text = File.ReadAllText(TestData.X509SvidFixture(file));
        Assert.False(X509Svid.TryParsePem(text, null, out var svid, out var error));
        Assert.Null(svid);
        Assert.False(string.IsNullOrWhiteSpace(error));
    }

    [Fact]
    public void Corrupt_key_is_refused()
    {
        var chain = File.ReadAllText(TestData.X509SvidFixture("good-leaf-only.pem"));
        var key = File.ReadAllText(TestData.X509SvidFixture("corrupt-key.pem"));
        Assert.False(X509Svid.TryParsePem(chain, key, out _, out var error));
        Assert.False(string.IsNullOrWhiteSpace(error));
    }
}
