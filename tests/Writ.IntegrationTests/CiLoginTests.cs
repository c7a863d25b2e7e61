using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using System.Text.Json.Nodes;
using Grpc.Core;
using Writ.Agent.Sync;
using Writ.IntegrationTests.Harness;
using Writ.Protocol.Agent;
using Writ.Protocol.Ci;
using Writ.Protocol.Errors;
using Writ.Spiffe;
using Writ.Spiffe.Bundles;
using Writ.Tests.Shared;

namespace Writ.IntegrationTests;

/// <summary>
/// `writ ci login | jwt | logout` end to end (issue #15 item 4): a real server process trusting a real OIDC issuer on
/// loopback HTTPS, GitHub-Actions- and GitLab-shaped job tokens, the SVID checked by openssl, the JWT-SVID by jose, the
/// revocation seen in the CRL and the ledger, and the mTLS attacks refused with a code and a ledger record.
/// </summary>
public sealed class CiLoginTests : IAsyncLifetime
{
    private const string Audience = "https://writ.example.org";
    private const string ServerParent = "spiffe://example.org/writ/server";
    private TempDir _dir = null!;
    private OidcTestIssuer _github = null!;
    private OidcTestIssuer _gitlab = null!;
    private ServerProcess _server = null!;

    public async ValueTask InitializeAsync()
    {
        _dir = new TempDir();
        // Each issuer in its own directory: its test CA files must not overwrite the other's.
        _github = await OidcTestIssuer.StartAsync(Directory.CreateDirectory(_dir["github"]).FullName, "/github");
        _gitlab = await OidcTestIssuer.StartAsync(Directory.CreateDirectory(_dir["gitlab"]).FullName, "/gitlab", "RS256");
        var issuers = new JsonArray(
            new JsonObject { ["issuer"] = _github.Issuer, ["audiences"] = new JsonArray(Audience), ["claims"] = new JsonArray("repository", "ref", "environment"), ["ca_file"] = _github.CaPemPath },
            new JsonObject { ["issuer"] = _gitlab.Issuer, ["audiences"] = new JsonArray(Audience), ["claims"] = new JsonArray("namespace_path", "ref", "pipeline_source"), ["ca_file"] = _gitlab.CaPemPath });
        _server = await ServerProcess.StartAsync(_dir["server"], "example.org", "--oidc-issuers", issuers.ToJsonString());
        var bundle = await _server.WritAsync("bundle", "show", "--format", "pem");
        Assert.True(bundle.ExitCode == 0, bundle.ToString());
        await File.WriteAllTextAsync(_dir["trust.pem"], bundle.Stdout);
        var spiffe = await _server.WritAsync("bundle", "show", "--format", "spiffe");
        await File.WriteAllTextAsync(_dir["bundle.json"], spiffe.Stdout);
        await EntryAsync("spiffe://example.org/ci/deployer", "oidc:iss:" + _github.Issuer, "oidc:claim:repository:org/app", "oidc:claim:ref:refs/heads/main");
        await EntryAsync("spiffe://example.org/ci/gitlab-release", "oidc:iss:" + _gitlab.Issuer, "oidc:claim:namespace_path:group/sub", "oidc:claim:pipeline_source:push");
    }

    public async ValueTask DisposeAsync()
    {
        await _server.DisposeAsync();
        await _github.DisposeAsync();
        await _gitlab.DisposeAsync();
        _dir.Dispose();
    }

    private async Task EntryAsync(string spiffeId, params string[] selectors)
    {
        var r = await _server.WritAsync(["entry", "create", "--spiffe-id", spiffeId, "--parent-id", ServerParent, .. selectors.SelectMany(s => new[] { "--selector", s })]);
        Assert.True(r.ExitCode == 0, r.ToString());
    }

    private string GitHubToken(string @ref = "refs/heads/main") => _github.Mint(_github.Claims($"repo:org/app:ref:{@ref}", Audience, null, new Dictionary<string, object?>
    {
        ["repository"] = "org/app",
        ["ref"] = @ref,
        ["environment"] = "prod",
        ["job_workflow_ref"] = $"org/app/.github/workflows/deploy.yml@{@ref}",
        ["runner_environment"] = "github-hosted",
    }));

    private async Task<string> TokenFileAsync(string token)
    {
        var f = _dir[$"token-{Guid.NewGuid():N}.jwt"];
        await File.WriteAllTextAsync(f, token + "\n");
        return f;
    }

    private async Task<ProcResult> LoginAsync(string tokenFile, string dir, params string[] extra) =>
        await Proc.WritAsync(["ci", "login", "--token-file", tokenFile, "--server", _server.AgentApi, "--trust-bundle", _dir["trust.pem"], "--write", dir, .. extra]);

    private async Task<JsonElement> LedgerAsync(string kind)
    {
        var r = await _server.WritAsync("audit", "list", "--output", "json", "--kind", kind);
        Assert.True(r.ExitCode == 0, r.ToString());
        using var doc = JsonDocument.Parse(r.Stdout);
        return doc.RootElement.Clone();
    }

    private static IEnumerable<JsonElement> Records(JsonElement list) =>
        list.GetProperty("events").EnumerateArray();

    private async Task<HashSet<string>> CrlSerialsAsync()
    {
        var r = await _server.WritAsync("bundle", "show", "--format", "crl");
        Assert.True(r.ExitCode == 0, r.ToString());
        var pem = PemEncoding.Find(r.Stdout);
        return RevocationAgentTests.ReadSerials(Convert.FromBase64String(r.Stdout[pem.Base64Data]));
    }

    [Fact]
    public async Task A_github_job_logs_in_with_one_command_uses_its_svid_and_jwts_and_loses_them_at_logout()
    {
        var token = GitHubToken();
        var tokenFile = await TokenFileAsync(token);
        var creds = _dir["job"];

        var login = await LoginAsync(tokenFile, creds, "--audience", "https://deploy.example.org");

        Assert.True(login.ExitCode == 0, login.ToString());
        var line = Assert.Single(login.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains("spiffe://example.org/ci/deployer", line, StringComparison.Ordinal);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(creds));
        foreach (var f in new[] { "svid.pem", "svid.key", "bundle.pem", "jwt-1.token", "session.json" })
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(creds, f)));

        // openssl: the SVID chains to the bundle and names the entry's ID.
        var verify = await Proc.RunAsync("openssl", ["verify", "-CAfile", Path.Combine(creds, "bundle.pem"), Path.Combine(creds, "svid.pem")]);
        Assert.True(verify.ExitCode == 0 && verify.Stdout.Contains("OK", StringComparison.Ordinal), verify.ToString());
        var san = await Proc.RunAsync("openssl", ["x509", "-noout", "-ext", "subjectAltName", "-in", Path.Combine(creds, "svid.pem")]);
        Assert.Contains("URI:spiffe://example.org/ci/deployer", san.Stdout, StringComparison.Ordinal);

        // jose: the JWT-SVID verifies against the bundle's jwt-svid keys for its audience.
        var jwt = (await File.ReadAllTextAsync(Path.Combine(creds, "jwt-1.token"))).Trim();
        var jose = await Proc.RunAsync("node", [Path.Combine(Repo.Root, "tests", "interop", "jwt-verify.mjs"), _dir["bundle.json"], jwt, "https://deploy.example.org"]);
        Assert.True(jose.ExitCode == 0, jose.ToString());
        Assert.Contains("sub=spiffe://example.org/ci/deployer", jose.Stdout, StringComparison.Ordinal);

        var more = await Proc.WritAsync("ci", "jwt", "--dir", creds, "--audience", "https://registry.example.org");
        Assert.True(more.ExitCode == 0, more.ToString());
        var joseMore = await Proc.RunAsync("node", [Path.Combine(Repo.Root, "tests", "interop", "jwt-verify.mjs"), _dir["bundle.json"], more.Stdout.Trim(), "https://registry.example.org"]);
        Assert.True(joseMore.ExitCode == 0, joseMore.ToString());

        using var leaf = X509Certificate2.CreateFromPem(await File.ReadAllTextAsync(Path.Combine(creds, "svid.pem")));
        var session = JsonNode.Parse(await File.ReadAllTextAsync(Path.Combine(creds, "session.json")))!;
        Assert.Equal(leaf.SerialNumber, session["serial_number"]!.GetValue<string>());

        var logout = await Proc.WritAsync("ci", "logout", "--dir", creds);
        Assert.True(logout.ExitCode == 0, logout.ToString());
        Assert.Contains("3 credential(s) revoked", logout.Stdout, StringComparison.Ordinal);
        Assert.False(File.Exists(Path.Combine(creds, "svid.key")));
        Assert.False(File.Exists(Path.Combine(creds, "jwt-1.token")));
        Assert.Contains(leaf.SerialNumber, await CrlSerialsAsync());
        Assert.Single(Records(await LedgerAsync("ci.logout")));
        Assert.Contains(Records(await LedgerAsync("svid.revoked")), r => r.GetRawText().Contains(leaf.SerialNumber, StringComparison.Ordinal));

        // The same token again: refused as replayed after logout, with a ledger record.
        var again = await LoginAsync(tokenFile, _dir["job-again"]);
        Expect.OneLineError(again, "WRIT-CI-SESSION-ENDED");
        Assert.False(Directory.Exists(_dir["job-again"]) && Directory.EnumerateFiles(_dir["job-again"]).Any());
        Assert.Contains(Records(await LedgerAsync("ci.login_refused")), r => r.GetRawText().Contains("WRIT-CI-SESSION-ENDED", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_gitlab_job_token_from_an_env_variable_gets_its_own_identity_and_a_second_use_is_refused()
    {
        var token = _gitlab.Mint(_gitlab.Claims("project_path:group/sub/app:ref_type:branch:ref:main", Audience, null, new Dictionary<string, object?>
        {
            ["namespace_path"] = "group/sub",
            ["project_path"] = "group/sub/app",
            ["ref"] = "main",
            ["ref_type"] = "branch",
            ["pipeline_source"] = "push",
        }));
        var env = new Dictionary<string, string?> { ["WRIT_ID_TOKEN"] = token };
        string[] args = ["ci", "login", "--token-env", "WRIT_ID_TOKEN", "--server", _server.AgentApi, "--trust-bundle", _dir["trust.pem"]];

        var r = await Proc.WritAsync(env, [.. args, "--write", _dir["gl"]]);
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Contains("spiffe://example.org/ci/gitlab-release", r.Stdout, StringComparison.Ordinal);

        var replay = await Proc.WritAsync(env, [.. args, "--write", _dir["gl2"]]);
        Expect.OneLineError(replay, "WRIT-CI-REPLAYED");
        Assert.False(File.Exists(Path.Combine(_dir["gl2"], "svid.key")));
    }

    [Fact]
    public async Task A_branch_other_than_main_and_attack_tokens_are_refused_with_a_code_a_record_and_nothing_written()
    {
        var feature = await LoginAsync(await TokenFileAsync(GitHubToken("refs/heads/feature")), _dir["feature"]);
        Expect.OneLineError(feature, "WRIT-CI-NO-ENTRY");
        Assert.False(File.Exists(Path.Combine(_dir["feature"], "svid.key")));

        var claims = _github.Claims("repo:org/app:ref:refs/heads/main", "https://another.example.org", null, new Dictionary<string, object?> { ["repository"] = "org/app", ["ref"] = "refs/heads/main" });
        var otherAudience = await LoginAsync(await TokenFileAsync(_github.Mint(claims)), _dir["aud"]);
        Expect.OneLineError(otherAudience, "WRIT-OIDC-");

        var none = await LoginAsync(await TokenFileAsync(OidcTestIssuer.MintUnsigned(_github.Claims("x", Audience))), _dir["none"]);
        Expect.OneLineError(none, "WRIT-OIDC-");

        var refused = Records(await LedgerAsync("ci.login_refused")).Select(r => r.GetRawText()).ToList();
        Assert.Equal(3, refused.Count);
        Assert.Contains(refused, r => r.Contains("WRIT-CI-NO-ENTRY", StringComparison.Ordinal));
        Assert.Empty(Records(await LedgerAsync("x509.issued")));
    }

    [Fact]
    public async Task Svids_are_used_only_where_they_belong_and_each_misuse_is_refused_with_a_code_and_a_record()
    {
        // Two jobs logged in.
        Assert.Equal(0, (await LoginAsync(await TokenFileAsync(GitHubToken()), _dir["a"])).ExitCode);
        Assert.Equal(0, (await LoginAsync(await TokenFileAsync(GitHubToken()), _dir["b"])).ExitCode);
        var sessionB = JsonNode.Parse(await File.ReadAllTextAsync(_dir["b/session.json"]))!["session_id"]!.GetValue<string>();

        // Job A's SVID asks to end job B's session.
        var sessionA = JsonNode.Parse(await File.ReadAllTextAsync(_dir["a/session.json"]))!;
        sessionA["session_id"] = sessionB;
        await File.WriteAllTextAsync(_dir["a/session.json"], sessionA.ToJsonString());
        Expect.OneLineError(await Proc.WritAsync("ci", "logout", "--dir", _dir["a"]), "WRIT-CI-NOT-YOUR-SESSION");
        Assert.True(File.Exists(_dir["a/svid.key"]));
        var stillB = await Proc.WritAsync("ci", "jwt", "--dir", _dir["b"], "--audience", "https://deploy.example.org");
        Assert.True(stillB.ExitCode == 0, stillB.ToString());

        // An agent's SVID calling the CI API.
        var td = TrustDomain.Parse("example.org");
        using var agent = await TestAgent.ConnectAsync(_server);
        await agent.AttestAsync(await TestAgent.NewJoinTokenAsync(_server));
        using (var channel = ServerChannel.Create(_server.AgentApi, td, () => agent.Bundle, () => agent.Svid))
        {
            var e = await Assert.ThrowsAsync<RpcException>(() => new CiService.CiServiceClient(channel).LogoutAsync(new LogoutRequest(), cancellationToken: TestContext.Current.CancellationToken).ResponseAsync);
            Assert.Equal("WRIT-CI-NOT-A-CI-SVID", WritStatus.Read(e).Code);
        }

        // No client certificate at all.
        using (var anonymous = ServerChannel.Create(_server.AgentApi, td, () => agent.Bundle, () => null))
        {
            var e = await Assert.ThrowsAsync<RpcException>(() => new CiService.CiServiceClient(anonymous).MintJwtSvidAsync(new CiMintJwtSvidRequest { Audiences = { "x" } },
                cancellationToken: TestContext.Current.CancellationToken).ResponseAsync);
            Assert.Equal("WRIT-CI-NO-CERT", WritStatus.Read(e).Code);
        }

        // A CI session's SVID calling the agent API.
        using var ciCert = X509Certificate2.CreateFromPemFile(_dir["b/svid.pem"], _dir["b/svid.key"]);
        agent.UseCertificate(ciCert);
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var denied = await Assert.ThrowsAsync<RpcException>(() => agent.Client.RenewAgentAsync(
            new RenewAgentRequest { Csr = Google.Protobuf.ByteString.CopyFrom(Writ.Spiffe.X509.Csr.Create(key)) }, cancellationToken: TestContext.Current.CancellationToken).ResponseAsync);
        Assert.Equal("WRIT-AGENT-NOT-AN-AGENT", WritStatus.Read(denied).Code);

        var calls = Records(await LedgerAsync("ci.call_refused")).Select(r => r.GetRawText()).ToList();
        Assert.Contains(calls, r => r.Contains("WRIT-CI-NOT-YOUR-SESSION", StringComparison.Ordinal));
        Assert.Contains(calls, r => r.Contains("WRIT-CI-NO-CERT", StringComparison.Ordinal));
        Assert.Contains(calls, r => r.Contains("WRIT-CI-NOT-A-CI-SVID", StringComparison.Ordinal) && r.Contains(agent.AgentId, StringComparison.Ordinal));
        Assert.Contains(calls, r => r.Contains("WRIT-AGENT-NOT-AN-AGENT", StringComparison.Ordinal) && r.Contains("spiffe://example.org/ci/deployer", StringComparison.Ordinal));

        // After B logs out, its SVID is refused by the CI API too.
        var copy = _dir["b-copy"];
        Directory.CreateDirectory(copy);
        foreach (var f in new[] { "svid.pem", "svid.key", "bundle.pem", "session.json" })
            File.Copy(_dir[$"b/{f}"], Path.Combine(copy, f));
        Assert.Equal(0, (await Proc.WritAsync("ci", "logout", "--dir", _dir["b"])).ExitCode);
        Expect.OneLineError(await Proc.WritAsync("ci", "jwt", "--dir", copy, "--audience", "x"), "WRIT-CI-REVOKED");
    }
}
