using System.Text.Json;
using Writ.IntegrationTests.Harness;
using Writ.Spiffe.Jwt;

namespace Writ.IntegrationTests;

/// <summary>
/// Certificate-bound JWT-SVIDs at a real mTLS relying party (Kestrel + <see cref="JwtSvidVerifier"/>), presented by curl
/// processes: the legitimate client with the SVID its token is bound to, and attackers who stole the token.
/// </summary>
public sealed class JwtBindingMtlsTests
{
    private const string Audience = "https://api.example.org";

    [Fact]
    public async Task A_bound_token_replayed_with_another_client_certificate_is_refused()
    {
        await using var ca = await BindingCa.StartAsync();
        var serverSvid = ca.Issue("server", "spiffe://example.org/api", "localhost");
        var legit = ca.Issue("legit", "spiffe://example.org/client");
        // The attacker holds another valid SVID of the same trust domain — even for the same SPIFFE ID.
        var attacker = ca.Issue("attacker", "spiffe://example.org/client");
        var (token, jti) = ca.Jwt("spiffe://example.org/client", Audience, legit);
        await using var api = await BoundApi.StartAsync(ca, serverSvid, Audience);

        var ok = await api.CurlAsync("/bound", token, legit, ca.CaPemFile);
        Assert.True(ok.Status == 200, ok.Body);
        Assert.Equal($"ok spiffe://example.org/client jti {jti}", ok.Body);

        var stolen = await api.CurlAsync("/bound", token, attacker, ca.CaPemFile);
        Assert.Equal(401, stolen.Status);
        Assert.StartsWith(nameof(JwtSvidVerificationFailure.BindingMismatch) + ":", stolen.Body, StringComparison.Ordinal);
        Assert.Contains("bound to another certificate", stolen.Body, StringComparison.Ordinal);

        var noCert = await api.CurlAsync("/bound", token, null, ca.CaPemFile);
        Assert.Equal(401, noCert.Status);
        Assert.StartsWith(nameof(JwtSvidVerificationFailure.NoPeerCertificate) + ":", noCert.Body, StringComparison.Ordinal);

        // Where bearer tokens are allowed a bound token is still bound.
        Assert.Equal(401, (await api.CurlAsync("/bearer", token, attacker, ca.CaPemFile)).Status);
        Assert.Equal(401, (await api.CurlAsync("/bearer", token, null, ca.CaPemFile)).Status);

        // The legitimate client still gets in afterwards (the attempts did not burn its token).
        Assert.Equal(200, (await api.CurlAsync("/bound", token, legit, ca.CaPemFile)).Status);
        Assert.Empty(api.Replays);
    }

    [Fact]
    public async Task A_bearer_token_is_refused_where_only_bound_tokens_are_accepted()
    {
        await using var ca = await BindingCa.StartAsync();
        var serverSvid = ca.Issue("server", "spiffe://example.org/api", "localhost");
        var client = ca.Issue("client", "spiffe://example.org/client");
        var (bearer, _) = ca.Jwt("spiffe://example.org/client", Audience, boundTo: null);
        await using var api = await BoundApi.StartAsync(ca, serverSvid, Audience);

        var r = await api.CurlAsync("/bound", bearer, client, ca.CaPemFile);
        Assert.Equal(401, r.Status);
        Assert.StartsWith(nameof(JwtSvidVerificationFailure.BearerNotAllowed) + ":", r.Body, StringComparison.Ordinal);
        Assert.Equal(200, (await api.CurlAsync("/bearer", bearer, client, ca.CaPemFile)).Status);
    }

    [Fact]
    public async Task The_same_jti_from_a_second_client_is_refused_and_reported_the_same_client_twice_is_allowed()
    {
        await using var ca = await BindingCa.StartAsync();
        var serverSvid = ca.Issue("server", "spiffe://example.org/api", "localhost");
        var first = ca.Issue("first", "spiffe://example.org/client");
        var second = ca.Issue("second", "spiffe://example.org/other");
        var (bearer, jti) = ca.Jwt("spiffe://example.org/client", Audience, boundTo: null);
        await using var api = await BoundApi.StartAsync(ca, serverSvid, Audience);

        Assert.Equal(200, (await api.CurlAsync("/bearer", bearer, first, ca.CaPemFile)).Status);
        Assert.Equal(200, (await api.CurlAsync("/bearer", bearer, first, ca.CaPemFile)).Status);   // same client, new connection
        Assert.Empty(api.Replays);

        var replayed = await api.CurlAsync("/bearer", bearer, second, ca.CaPemFile);
        Assert.Equal(401, replayed.Status);
        Assert.StartsWith(nameof(JwtSvidVerificationFailure.Replayed) + ":", replayed.Body, StringComparison.Ordinal);
        var noCert = await api.CurlAsync("/bearer", bearer, null, ca.CaPemFile);
        Assert.Equal(401, noCert.Status);

        Assert.Equal(2, api.Replays.Count);
        var report = api.Replays[0];
        Assert.Equal(jti, report.Jti);
        Assert.Equal("x5t#S256:" + CertificateBinding.Thumbprint(first.Certificate), report.FirstPeer);
        Assert.Equal("x5t#S256:" + CertificateBinding.Thumbprint(second.Certificate), report.SecondPeer);
        Assert.Equal("anonymous", api.Replays[1].SecondPeer);
        Assert.Equal(200, (await api.CurlAsync("/bearer", bearer, first, ca.CaPemFile)).Status);
    }
}

/// <summary>A token minted by the server's CA, checked by a relying party built from npm `jose` and Node's crypto.</summary>
public sealed class JwtBindingInteropTests
{
    private const string Audience = "https://api.example.org";

    private static Task<ProcResult> Node(params string[] args) =>
        Proc.RunAsync("node", [Path.Combine(WorkloadTools.InteropDir, "jwt-binding.mjs"), .. args], workingDir: WorkloadTools.InteropDir);

    private static JsonElement Json(ProcResult r)
    {
        using var doc = JsonDocument.Parse(r.Stdout.Trim().Split('\n')[^1]);
        return doc.RootElement.Clone();
    }

    [Fact]
    public async Task Jose_verifies_the_token_and_node_crypto_checks_cnf_against_the_certificate()
    {
        await using var ca = await BindingCa.StartAsync();
        var legit = ca.Issue("legit", "spiffe://example.org/client");
        var other = ca.Issue("other", "spiffe://example.org/client");
        var (token, jti) = ca.Jwt("spiffe://example.org/client", Audience, legit);

        var ok = await Node("verify", ca.BundleJsonFile, token, Audience, legit.CertFile);
        Assert.True(ok.ExitCode == 0, ok.ToString());
        var j = Json(ok);
        Assert.Equal("spiffe://example.org/client", j.GetProperty("sub").GetString());
        Assert.Equal(jti, j.GetProperty("jti").GetString());
        Assert.True(j.GetProperty("iat").GetInt64() > 0);
        // Node's fingerprint256 and our thumbprint agree, and the token carries it.
        Assert.Equal(CertificateBinding.Thumbprint(legit.Certificate), j.GetProperty("bound").GetString());
        Assert.Equal(CertificateBinding.Thumbprint(legit.Certificate), j.GetProperty("certificate_x5t_s256").GetString());

        // The plain JWK Set (what `writ bundle fetch --format jwks` serves) works the same.
        var jwks = ca.Dir["jwks.json"];
        await File.WriteAllTextAsync(jwks, ca.Bundle.JwksJson());
        var viaJwks = await Node("verify", jwks, token, Audience, legit.CertFile);
        Assert.True(viaJwks.ExitCode == 0, viaJwks.ToString());

        // Controls: the same check refuses another certificate, another audience and a tampered token.
        var wrongCert = await Node("verify", ca.BundleJsonFile, token, Audience, other.CertFile);
        Assert.Equal(1, wrongCert.ExitCode);
        Assert.Contains("bound to another certificate", Json(wrongCert).GetProperty("reason").GetString(), StringComparison.Ordinal);
        Assert.Equal(1, (await Node("verify", ca.BundleJsonFile, token, "https://other.example.org", legit.CertFile)).ExitCode);
        var parts = token.Split('.');
        var payload = JsonDocument.Parse(Convert.FromBase64String(Pad(parts[1]))).RootElement.GetRawText()
            .Replace(CertificateBinding.Thumbprint(legit.Certificate), CertificateBinding.Thumbprint(other.Certificate), StringComparison.Ordinal);
        var rebound = $"{parts[0]}.{Convert.ToBase64String(System.Text.Encoding.UTF8.GetBytes(payload)).TrimEnd('=').Replace('+', '-').Replace('/', '_')}.{parts[2]}";
        Assert.Equal(1, (await Node("verify", ca.BundleJsonFile, rebound, Audience, other.CertFile)).ExitCode);

        // A bearer token has nothing to check against a certificate.
        var (bearer, _) = ca.Jwt("spiffe://example.org/client", Audience, boundTo: null);
        Assert.Equal(0, (await Node("verify", ca.BundleJsonFile, bearer, Audience)).ExitCode);
        var bearerBound = await Node("verify", ca.BundleJsonFile, bearer, Audience, legit.CertFile);
        Assert.Equal(1, bearerBound.ExitCode);
        Assert.Contains("bearer token", Json(bearerBound).GetProperty("reason").GetString(), StringComparison.Ordinal);
    }

    private static string Pad(string b64url)
    {
        var s = b64url.Replace('-', '+').Replace('_', '/');
        return s.PadRight(s.Length + ((4 - (s.Length % 4)) % 4), '=');
    }
}

/// <summary>`writ jwt validate --bound-cert` offline against a bundle file: the CLI face of the same check.</summary>
public sealed class JwtBindingCliTests
{
    private const string Audience = "https://api.example.org";

    [Fact]
    public async Task Offline_validation_checks_the_binding_against_the_certificate_file()
    {
        await using var ca = await BindingCa.StartAsync();
        var legit = ca.Issue("legit", "spiffe://example.org/client");
        var other = ca.Issue("other", "spiffe://example.org/client");
        var (token, jti) = ca.Jwt("spiffe://example.org/client", Audience, legit);
        string[] offline = ["jwt", "validate", "--audience", Audience, "--bundle", ca.BundleJsonFile, "--trust-domain", "example.org"];

        var ok = await Proc.WritAsync([.. offline, "--token", token, "--bound-cert", legit.CertFile, "--output", "json"]);
        Assert.True(ok.ExitCode == 0, ok.ToString());
        using (var doc = JsonDocument.Parse(ok.Stdout))
        {
            Assert.Equal("spiffe://example.org/client", doc.RootElement.GetProperty("spiffe_id").GetString());
            Assert.Equal(jti, doc.RootElement.GetProperty("jti").GetString());
            Assert.Equal(CertificateBinding.Thumbprint(legit.Certificate), doc.RootElement.GetProperty("cnf_x5t_s256").GetString());
        }
        Expect.OneLineError(await Proc.WritAsync([.. offline, "--token", token, "--bound-cert", other.CertFile]), "bound to another certificate");

        var (bearer, _) = ca.Jwt("spiffe://example.org/client", Audience, boundTo: null);
        Expect.OneLineError(await Proc.WritAsync([.. offline, "--token", bearer, "--bound-cert", legit.CertFile]), "bearer token");
        var allowed = await Proc.WritAsync([.. offline, "--token", bearer, "--bound-cert", legit.CertFile, "--allow-bearer"]);
        Assert.True(allowed.ExitCode == 0, allowed.ToString());
        Assert.Contains("accepted by --allow-bearer", allowed.Stdout, StringComparison.Ordinal);

        // Without --bound-cert the token is validated and its binding shown, not checked.
        var shown = await Proc.WritAsync([.. offline, "--token", token]);
        Assert.True(shown.ExitCode == 0, shown.ToString());
        Assert.Contains("not checked", shown.Stdout, StringComparison.Ordinal);

        // A JWK Set works as the bundle too; the wrong audience and bad inputs get one-line errors.
        var jwks = ca.Dir["jwks.json"];
        await File.WriteAllTextAsync(jwks, ca.Bundle.JwksJson());
        var viaJwks = await Proc.WritAsync("jwt", "validate", "--audience", Audience, "--bundle", jwks, "--trust-domain", "example.org", "--token", token, "--bound-cert", legit.CertFile);
        Assert.True(viaJwks.ExitCode == 0, viaJwks.ToString());
        Expect.OneLineError(await Proc.WritAsync([.. offline[..2], "--audience", "https://other.example.org", .. offline[4..], "--token", token]), "aud");
        Expect.OneLineError(await Proc.WritAsync("jwt", "validate", "--audience", Audience, "--bundle", ca.BundleJsonFile, "--token", token), "--trust-domain");
        Expect.OneLineError(await Proc.WritAsync([.. offline, "--token", token, "--bound-cert", ca.BundleJsonFile]), "holds no PEM certificate");
        Expect.OneLineError(await Proc.WritAsync([.. offline, "--token", token, "--bound-cert", ca.Dir["missing.pem"]]), "cannot read --bound-cert");
        Expect.OneLineError(await Proc.WritAsync("jwt", "validate", "--audience", Audience, "--bundle", legit.CertFile, "--trust-domain", "example.org", "--token", token), "holds no JWT authority");
    }
}
