using System.Text.RegularExpressions;
using Writ.IntegrationTests.Harness;

namespace Writ.IntegrationTests;

/// <summary>SVIDs from a real server checked by software nobody here wrote: openssl and npm jose.</summary>
public sealed partial class InteropTests(SharedServer fixture) : IClassFixture<SharedServer>
{
    private ServerProcess Server => fixture.Server;

    [Fact]
    public async Task Minted_x509_svid_passes_openssl_verify_against_the_bundle()
    {
        using var dir = new TempDir();
        var minted = await Server.WritAsync("x509", "mint", "--spiffe-id", "spiffe://example.org/interop", "--ttl", "10m",
            "--dns", "interop.internal", "--write", dir["out"]);
        Assert.True(minted.ExitCode == 0, minted.ToString());
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(dir["out"], "svid.key")));

        var bundle = await Server.WritAsync("bundle", "show", "--format", "pem");
        await File.WriteAllTextAsync(dir["bundle.pem"], bundle.Stdout);
        Assert.Equal(bundle.Stdout, await File.ReadAllTextAsync(Path.Combine(dir["out"], "bundle.pem")));

        var verify = await Proc.RunAsync("openssl", ["verify", "-CAfile", dir["bundle.pem"], Path.Combine(dir["out"], "svid.pem")]);
        Assert.True(verify.ExitCode == 0, verify.ToString());
        Assert.Contains(": OK", verify.Stdout, StringComparison.Ordinal);

        var text = (await Proc.RunAsync("openssl", ["x509", "-noout", "-text", "-in", Path.Combine(dir["out"], "svid.pem")])).Stdout;
        Assert.Single(UriSan().Matches(text));
        Assert.Contains("URI:spiffe://example.org/interop", text, StringComparison.Ordinal);
        Assert.Contains("DNS:interop.internal", text, StringComparison.Ordinal);
        Assert.Matches(@"X509v3 Key Usage: critical\s+Digital Signature\n", text);
        Assert.Contains("CA:FALSE", text, StringComparison.Ordinal);
        Assert.Contains("TLS Web Server Authentication, TLS Web Client Authentication", text, StringComparison.Ordinal);

        // The key belongs to the certificate.
        var certKey = await Proc.RunAsync("openssl", ["x509", "-noout", "-pubkey", "-in", Path.Combine(dir["out"], "svid.pem")]);
        var keyPub = await Proc.RunAsync("openssl", ["pkey", "-pubout", "-in", Path.Combine(dir["out"], "svid.key")]);
        Assert.Equal(certKey.Stdout, keyPub.Stdout);

        // A certificate from another CA does not verify against this bundle (the check can fail).
        using var other = new TempDir();
        var otherServer = await ServerProcess.StartAsync(other["s"]);
        await using var _ = otherServer;
        var foreign = await otherServer.WritAsync("x509", "mint", "--spiffe-id", "spiffe://example.org/interop", "--write", other["out"]);
        Assert.True(foreign.ExitCode == 0, foreign.ToString());
        var refused = await Proc.RunAsync("openssl", ["verify", "-CAfile", dir["bundle.pem"], Path.Combine(other["out"], "svid.pem")]);
        Assert.NotEqual(0, refused.ExitCode);
    }

    [Fact]
    public async Task Minted_jwt_svid_verifies_with_npm_jose_and_fails_when_misused()
    {
        using var dir = new TempDir();
        var bundle = await Server.WritAsync("bundle", "show", "--format", "spiffe");
        await File.WriteAllTextAsync(dir["bundle.json"], bundle.Stdout);
        var minted = await Server.WritAsync("jwt", "mint", "--spiffe-id", "spiffe://example.org/jwt-interop", "--audience", "https://api.example.org", "--ttl", "2m");
        Assert.True(minted.ExitCode == 0, minted.ToString());
        var token = minted.Stdout.Trim();

        var ok = await Jose(dir["bundle.json"], token, "https://api.example.org");
        Assert.True(ok.ExitCode == 0, ok.ToString());
        Assert.Contains("sub=spiffe://example.org/jwt-interop", ok.Stdout, StringComparison.Ordinal);
        Assert.Contains("alg=ES256", ok.Stdout, StringComparison.Ordinal);

        var otherAudience = await Jose(dir["bundle.json"], token, "https://evil.example.org");
        Assert.Equal(1, otherAudience.ExitCode);

        var parts = token.Split('.');
        var payload = System.Text.Encoding.UTF8.GetString(Base64UrlDecode(parts[1]))
            .Replace("jwt-interop", "jwt-admin", StringComparison.Ordinal);
        var altered = $"{parts[0]}.{Base64UrlEncode(System.Text.Encoding.UTF8.GetBytes(payload))}.{parts[2]}";
        var tampered = await Jose(dir["bundle.json"], altered, "https://api.example.org");
        Assert.Equal(1, tampered.ExitCode);
        Assert.Contains("signature", tampered.Stdout, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public async Task Mint_refuses_reserved_and_foreign_identities()
    {
        var agent = await Server.WritAsync("x509", "mint", "--spiffe-id", "spiffe://example.org/writ/agent/join_token/x");
        Expect.OneLineError(agent, "reserved");
        var foreign = await Server.WritAsync("jwt", "mint", "--spiffe-id", "spiffe://evil.org/x", "--audience", "a");
        Expect.OneLineError(foreign, "outside");
        var noAudience = await Server.WritAsync("jwt", "mint", "--spiffe-id", "spiffe://example.org/x", "--audience", "");
        Expect.OneLineError(noAudience, "audience");
        var tooLong = await Server.WritAsync("x509", "mint", "--spiffe-id", "spiffe://example.org/x", "--ttl", "400d");
        Expect.OneLineError(tooLong, "max_ttl");
    }

    private static Task<ProcResult> Jose(string bundleFile, string token, string audience) =>
        Proc.RunAsync("node", [Path.Combine(Repo.Root, "tests", "interop", "jwt-verify.mjs"), bundleFile, token, audience]);

    private static byte[] Base64UrlDecode(string s)
    {
        s = s.Replace('-', '+').Replace('_', '/');
        return Convert.FromBase64String(s.PadRight(s.Length + ((4 - (s.Length % 4)) % 4), '='));
    }

    private static string Base64UrlEncode(byte[] b) => Convert.ToBase64String(b).TrimEnd('=').Replace('+', '-').Replace('/', '_');

    [GeneratedRegex("URI:")]
    private static partial Regex UriSan();
}
