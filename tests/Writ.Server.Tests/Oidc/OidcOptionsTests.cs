using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json.Nodes;
using Writ.Server.Configuration;
using Writ.Server.Oidc;

namespace Writ.Server.Tests.Oidc;

/// <summary>The <c>oidc_issuers</c> key: what a valid list gives, and the one-line refusal (code, list index, field) for each mistake.</summary>
public sealed class OidcOptionsTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("writ-oidc-options-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static (ServerOptions? Options, IReadOnlyList<string> Errors) Build(string json)
    {
        var c = new ConfigSources(ServerConfigLoader.Keys);
        c.Set("trust_domain", "example.org", "test");
        c.Set("oidc_issuers", json, "flag --oidc-issuers");
        var o = ServerConfigLoader.Build(c, out var errors);
        return (o, errors);
    }

    private static string Refused(string code, JsonNode issuers)
    {
        var (_, errors) = Build(issuers.ToJsonString());
        var error = Assert.Single(errors);
        Assert.StartsWith(code + ": ", error, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', error);
        return error;
    }

    private static JsonObject Github() => new()
    {
        ["issuer"] = "https://token.actions.githubusercontent.com",
        ["audiences"] = new JsonArray("writ"),
        ["claims"] = new JsonArray("repository", "ref"),
    };

    private string CaPem()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var req = new CertificateRequest("CN=Issuer CA", key, HashAlgorithmName.SHA256);
        req.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        using var cert = req.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddYears(1));
        var path = Path.Combine(_dir, "ca.pem");
        File.WriteAllText(path, cert.ExportCertificatePem());
        return path;
    }

    [Fact]
    public void Unset_means_no_issuers()
    {
        var c = new ConfigSources(ServerConfigLoader.Keys);
        c.Set("trust_domain", "example.org", "test");
        var o = ServerConfigLoader.Build(c, out var errors);
        Assert.Empty(errors);
        Assert.Empty(o!.Oidc.Issuers);
    }

    [Fact]
    public void A_full_list_is_parsed_with_defaults_for_the_optional_fields()
    {
        var gitlab = new JsonObject
        {
            ["issuer"] = "https://gitlab.example.com",
            ["audiences"] = new JsonArray("writ", "https://writ.example.com"),
            ["algorithms"] = new JsonArray("RS256"),
            ["jwks_uri"] = "https://gitlab.example.com/oauth/discovery/keys",
            ["ca_file"] = CaPem(),
        };
        var (o, errors) = Build(new JsonArray(Github(), gitlab).ToJsonString());
        Assert.Empty(errors);
        Assert.Equal(2, o!.Oidc.Issuers.Count);

        var gh = o.Oidc.Issuers[0];
        Assert.Equal("https://token.actions.githubusercontent.com", gh.Issuer);
        Assert.Equal(["writ"], gh.Audiences);
        Assert.Equal(["repository", "ref"], gh.Claims);
        Assert.Equal(OidcOptions.SupportedAlgorithms, gh.Algorithms);
        Assert.Null(gh.JwksUri);
        Assert.Null(gh.CaFile);

        var gl = o.Oidc.Find("https://gitlab.example.com")!;
        Assert.Equal(["writ", "https://writ.example.com"], gl.Audiences);
        Assert.Empty(gl.Claims);
        Assert.Equal(["RS256"], gl.Algorithms);
        Assert.Equal(new Uri("https://gitlab.example.com/oauth/discovery/keys"), gl.JwksUri);
        Assert.Equal(Path.Combine(_dir, "ca.pem"), gl.CaFile);
        Assert.Null(o.Oidc.Find("https://gitlab.example.com/"));
    }

    [Fact]
    public void The_list_from_a_config_file_is_the_same()
    {
        var file = Path.Combine(_dir, "server.json");
        File.WriteAllText(file, new JsonObject { ["trust_domain"] = "example.org", ["oidc_issuers"] = new JsonArray(Github()) }.ToJsonString());
        var c = new ConfigSources(ServerConfigLoader.Keys);
        c.AddJsonFile(file);
        var o = ServerConfigLoader.Build(c, out var errors);
        Assert.Empty(errors);
        Assert.Equal("https://token.actions.githubusercontent.com", Assert.Single(o!.Oidc.Issuers).Issuer);
    }

    [Fact]
    public void Not_a_list_or_not_objects_is_refused()
    {
        Assert.Contains("must be a JSON list", Refused(OidcOptions.FieldCode, Github()), StringComparison.Ordinal);
        Assert.Contains("item [1] must be a JSON object", Refused(OidcOptions.FieldCode, new JsonArray(Github(), "https://gitlab.com")), StringComparison.Ordinal);
    }

    [Fact]
    public void An_unknown_field_is_refused_with_its_index_and_name()
    {
        var gh = Github();
        gh["audience"] = "writ";
        var error = Refused(OidcOptions.FieldCode, new JsonArray(gh));
        Assert.Contains("item [0]", error, StringComparison.Ordinal);
        Assert.Contains("'audience'", error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("issuer", null, "has no 'issuer'")]
    [InlineData("issuer", 42, "field 'issuer' must be a string")]
    [InlineData("audiences", null, "has no 'audiences'")]
    [InlineData("audiences", "writ", "field 'audiences' must be a list")]
    [InlineData("audiences", "[]", "field 'audiences' is empty")]
    [InlineData("audiences", "[\"\"]", "field 'audiences' must be a list")]
    [InlineData("claims", "[1]", "field 'claims' must be a list")]
    [InlineData("algorithms", "\"RS256\"", "field 'algorithms' must be a list")]
    [InlineData("ca_file", 7, "field 'ca_file' must be the path")]
    public void A_missing_or_mistyped_field_is_refused(string field, object? value, string expected)
    {
        var gh = Github();
        gh.Remove(field);
        if (value is string s && (s.StartsWith('[') || s.StartsWith('"')))
        {
            gh[field] = JsonNode.Parse(s);
        }
        else if (value is int i)
        {
            gh[field] = i;
        }
        else if (value is string text)
        {
            gh[field] = text;
        }
        var error = Refused(OidcOptions.FieldCode, new JsonArray(Github(), gh));
        Assert.Contains("item [1]", error, StringComparison.Ordinal);
        Assert.Contains(expected, error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("issuer", "http://token.actions.githubusercontent.com")]
    [InlineData("issuer", "token.actions.githubusercontent.com")]
    [InlineData("issuer", "https://issuer.example?tenant=1")]
    [InlineData("issuer", "https://user@issuer.example")]
    [InlineData("jwks_uri", "http://issuer.example/jwks")]
    [InlineData("jwks_uri", "file:///etc/jwks.json")]
    public void A_url_that_is_not_https_is_refused(string field, string url)
    {
        var gh = Github();
        gh[field] = url;
        var error = Refused(OidcOptions.UrlCode, new JsonArray(gh));
        Assert.Contains($"item [0] field '{field}'", error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("none")]
    [InlineData("HS256")]
    [InlineData("hs512")]
    [InlineData("EdDSA")]
    [InlineData("RS257")]
    [InlineData("rs256")]
    public void An_algorithm_outside_the_asymmetric_list_is_refused(string alg)
    {
        var gh = Github();
        gh["algorithms"] = new JsonArray("RS256", alg);
        var error = Refused(OidcOptions.AlgorithmCode, new JsonArray(gh));
        Assert.Contains($"'{alg}'", error, StringComparison.Ordinal);
    }

    [Fact]
    public void A_ca_file_that_is_missing_or_holds_no_certificate_is_refused()
    {
        var gh = Github();
        gh["ca_file"] = Path.Combine(_dir, "missing.pem");
        Assert.Contains("does not exist", Refused(OidcOptions.CaFileCode, new JsonArray(gh)), StringComparison.Ordinal);

        gh = Github();

        var notCert = Path.Combine(_dir, "key.pem");
        using (var key = ECDsa.Create())
        {
            File.WriteAllText(notCert, key.ExportSubjectPublicKeyInfoPem());
        }
        gh["ca_file"] = notCert;
        Assert.Contains("holds no PEM certificate", Refused(OidcOptions.CaFileCode, new JsonArray(gh)), StringComparison.Ordinal);
    }

    [Fact]
    public void The_same_issuer_twice_is_refused()
    {
        var error = Refused(OidcOptions.DuplicateCode, new JsonArray(Github(), Github()));
        Assert.Contains("item [1]", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Every_mistake_is_reported_not_just_the_first()
    {
        var bad = new JsonObject { ["issuer"] = "http://x.example", ["audiences"] = new JsonArray(), ["algorithms"] = new JsonArray("none") };
        var (_, errors) = Build(new JsonArray(bad).ToJsonString());
        Assert.Equal(3, errors.Count);
    }
}
