using System.Diagnostics;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Writ.Spiffe.Tests.X509;

/// <summary>Our X.509-SVIDs checked by software nobody here wrote: the real openssl command.</summary>
public sealed class OpenSslInteropTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("writ-spiffe-openssl-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    public static TheoryData<string> Kinds => ["p256", "p384", "rsa2048", "intermediate"];

    [Theory]
    [MemberData(nameof(Kinds))]
    public void Openssl_verifies_the_minted_chain_for_client_and_server_use(string kind)
    {
        var ca = kind switch
        {
            "p256" => new TestCa("example.org", () => ECDsa.Create(ECCurve.NamedCurves.nistP256)),
            "p384" => new TestCa("example.org", () => ECDsa.Create(ECCurve.NamedCurves.nistP384)),
            "rsa2048" => new TestCa("example.org", () => RSA.Create(2048)),
            _ => new TestCa("example.org", intermediate: true),
        };
        var (chain, _) = ca.Mint("/ns/prod/web");
        var root = Write("root.pem", ca.Root);
        var leaf = Write("leaf.pem", chain[0]);
        var at = TestCa.Now.ToUnixTimeSeconds().ToString(System.Globalization.CultureInfo.InvariantCulture);
        foreach (var purpose in new[] { "sslclient", "sslserver" })
        {
            List<string> args = ["verify", "-attime", at, "-purpose", purpose, "-x509_strict", "-CAfile", root];
            if (ca.Intermediate is not null)
            {
                args.AddRange(["-untrusted", Write("intermediate.pem", ca.Intermediate)]);
            }
            args.Add(leaf);
            var (code, output) = OpenSsl(args);
            Assert.True(code == 0, output);
            Assert.Contains(": OK", output, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void Openssl_refuses_the_leaf_without_its_intermediate()
    {
        // The control for the test above: openssl really checks the path.
        var ca = new TestCa("example.org", intermediate: true);
        var (chain, _) = ca.Mint("/w");
        var at = TestCa.Now.ToUnixTimeSeconds().ToString(System.Globalization.CultureInfo.InvariantCulture);
        var (code, _) = OpenSsl(["verify", "-attime", at, "-CAfile", Write("root.pem", ca.Root), Write("leaf.pem", chain[0])]);
        Assert.NotEqual(0, code);
    }

    [Fact]
    public void Openssl_text_shows_one_uri_san_critical_digital_signature_and_ca_false()
    {
        var ca = new TestCa("example.org");
        var (chain, _) = ca.Mint("/ns/prod/web");
        var (code, text) = OpenSsl(["x509", "-noout", "-text", "-in", Write("leaf.pem", chain[0])]);
        Assert.Equal(0, code);
        Assert.Equal(1, Count(text, "URI:"));
        Assert.Contains("URI:spiffe://example.org/ns/prod/web", text, StringComparison.Ordinal);
        Assert.Contains("X509v3 Key Usage: critical", text, StringComparison.Ordinal);
        var ku = text[(text.IndexOf("X509v3 Key Usage: critical", StringComparison.Ordinal) + 27)..].TrimStart().Split('\n')[0].Trim();
        Assert.Equal("Digital Signature", ku);
        Assert.Contains("X509v3 Basic Constraints: critical", text, StringComparison.Ordinal);
        Assert.Contains("CA:FALSE", text, StringComparison.Ordinal);
        Assert.Contains("TLS Web Server Authentication, TLS Web Client Authentication", text, StringComparison.Ordinal);
        Assert.Contains("X509v3 Subject Key Identifier", text, StringComparison.Ordinal);
        Assert.Contains("X509v3 Authority Key Identifier", text, StringComparison.Ordinal);
    }

    [Fact]
    public void Openssl_text_shows_the_ca_profile()
    {
        var ca = new TestCa("example.org");
        var (code, text) = OpenSsl(["x509", "-noout", "-text", "-in", Write("root.pem", ca.Root)]);
        Assert.Equal(0, code);
        Assert.Equal(1, Count(text, "URI:"));
        Assert.Contains("URI:spiffe://example.org\n", text.Replace("\r", "", StringComparison.Ordinal), StringComparison.Ordinal);
        Assert.Contains("CA:TRUE", text, StringComparison.Ordinal);
        Assert.Contains("Certificate Sign, CRL Sign", text, StringComparison.Ordinal);
        Assert.Contains("X509v3 Key Usage: critical", text, StringComparison.Ordinal);
        var subject = text.Split('\n').Single(l => l.TrimStart().StartsWith("Subject:", StringComparison.Ordinal));
        Assert.Contains("O = Writ", subject, StringComparison.Ordinal);
        Assert.Contains("CN = example.org", subject, StringComparison.Ordinal);
    }

    [Fact]
    public void Openssl_reads_our_csr_and_checks_its_signature()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var path = Path.Combine(_dir, "req.der");
        File.WriteAllBytes(path, Writ.Spiffe.X509.Csr.Create(key));
        var (code, output) = OpenSsl(["req", "-inform", "DER", "-in", path, "-noout", "-verify"]);
        Assert.True(code == 0, output);
        Assert.Contains("verify OK", output, StringComparison.OrdinalIgnoreCase);
    }

    [Theory]
    [InlineData("ec", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "", "")]
    [InlineData("ec384", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384", "", "")]
    [InlineData("rsa-pss-padding", "-newkey", "rsa:2048", "-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:digest")]
    [InlineData("rsa", "-newkey", "rsa:2048", "-sha384", "", "", "")]
    public void Csr_made_by_openssl_with_a_spiffe_san_verifies_and_its_key_gets_a_valid_svid(string name, string a1, string a2, string a3, string a4, string a5, string a6)
    {
        var csr = Path.Combine(_dir, name + ".csr");
        List<string> args = ["req", "-new", "-nodes", "-keyout", Path.Combine(_dir, name + ".key"), "-outform", "DER", "-out", csr,
            "-subj", "/O=SPIRE", "-addext", "subjectAltName=URI:spiffe://example.org/agent", a1, a2];
        args.AddRange(new[] { a3, a4, a5, a6 }.Where(a => a.Length > 0));
        var (code, output) = OpenSsl(args);
        Assert.True(code == 0, output);
        Assert.True(Writ.Spiffe.X509.Csr.TryVerify(File.ReadAllBytes(csr), out var pk, out var error), error);
        var ca = new TestCa("example.org");
        var leaf = Writ.Spiffe.X509.X509SvidMinter.SignLeaf(ca.Root, ca.RootKey, SpiffeId.Parse("spiffe://example.org/agent"), pk, TestCa.Now, TimeSpan.FromHours(1));
        var r = Writ.Spiffe.X509.X509SvidValidator.Validate([leaf], ca.Bundle, TestCa.Now);
        Assert.True(r.IsValid, r.Error);
        // The signed key is the one openssl holds.
        var (c2, o2) = OpenSsl(["x509", "-noout", "-pubkey", "-in", Write("agent.pem", leaf)]);
        var (c3, o3) = OpenSsl(["pkey", "-pubout", "-in", Path.Combine(_dir, name + ".key")]);
        Assert.Equal(0, c2 + c3);
        Assert.Equal(o3.Trim(), o2.Trim());
    }

    private static int Count(string text, string what)
    {
        var n = 0;
        for (var i = text.IndexOf(what, StringComparison.Ordinal); i >= 0; i = text.IndexOf(what, i + 1, StringComparison.Ordinal))
        {
            n++;
        }
        return n;
    }

    private string Write(string name, X509Certificate2 cert) => OpenSslCli.WritePem(_dir, name, cert);

    private static (int Code, string Output) OpenSsl(IEnumerable<string> args) => OpenSslCli.Run(args);
}
