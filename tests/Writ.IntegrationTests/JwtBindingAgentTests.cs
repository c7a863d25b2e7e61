using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using Writ.IntegrationTests.Harness;
using Writ.Spiffe;
using Writ.Spiffe.Bundles;
using Writ.Spiffe.Jwt;

namespace Writ.IntegrationTests;

/// <summary>
/// Replay detection in the agent's ValidateJWTSVID, with real processes: a token validated for one relying party
/// (`writ jwt validate`, i.e. dotnet) and then for another (a Node gRPC client) is refused the second time and reported
/// to the server, which records it.
/// </summary>
public sealed class JwtBindingAgentTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);

    private static async Task<string> RealPathAsync(string command)
    {
        var r = await Proc.RunAsync("sh", ["-c", $"readlink -f \"$(command -v {command})\""]);
        Assert.True(r.ExitCode == 0 && File.Exists(r.Stdout.Trim()), r.ToString());
        return r.Stdout.Trim();
    }

    private static Task<ProcResult> NodeValidateAsync(AgentRig rig, string audience, string token) =>
        Proc.RunAsync("node", [Path.Combine(WorkloadTools.InteropDir, "jwt-binding.mjs"), "validate", rig.Agent.SocketPath, audience, token],
            workingDir: WorkloadTools.InteropDir);

    private static JsonElement Json(ProcResult r)
    {
        using var doc = JsonDocument.Parse(r.Stdout.Trim().Split('\n')[^1]);
        return doc.RootElement.Clone();
    }

    [Fact]
    public async Task A_token_validated_for_a_second_relying_party_is_refused_and_reported_to_the_server()
    {
        await using var rig = await AgentRig.StartAsync();
        // The token holder, and two relying-party services told apart by their executables (as registered), both
        // registered as relying parties of the audience (its host is their DNS name).
        await rig.CreateEntryAsync("spiffe://example.org/client", ["unix:uid:0"]);
        await rig.CreateEntryAsync("spiffe://example.org/rp-dotnet", ["unix:uid:0", "unix:path:" + await RealPathAsync("dotnet")], "--dns", "rp.example.org");
        await rig.CreateEntryAsync("spiffe://example.org/rp-node", ["unix:uid:0", "unix:path:" + await RealPathAsync("node")], "--dns", "rp.example.org");
        await AgentTests.WaitForSvidAsync(rig);
        const string aud = "https://rp.example.org";
        // The holder stays alive while the token is used: its tokens are revoked when it exits (issue #6).
        await using var holder = await HeldWorkload.JwtAsync(rig, "--audience", aud, "--spiffe-id", "spiffe://example.org/client");
        var token = holder.Output;

        // Relying party 1 (dotnet) validates it, twice: a retry by the same relying party is no replay.
        for (var i = 0; i < 2; i++)
        {
            var ok = await rig.WorkloadAsync("jwt", "validate", "--audience", aud, "--token", token);
            Assert.True(ok.ExitCode == 0, ok.ToString());
        }

        // Relying party 2 (node) presents the same token: refused as a replay.
        var replay = await NodeValidateAsync(rig, aud, token);
        Assert.Equal(1, replay.ExitCode);
        var j = Json(replay);
        Assert.Equal("INVALID_ARGUMENT", j.GetProperty("name").GetString());
        Assert.Contains("already validated for another relying party", j.GetProperty("reason").GetString(), StringComparison.Ordinal);

        // ... and the server heard of it (ReportJwtReplay → jwt.replay in the ledger, log event 1800).
        var reported = await WorkloadTools.EventuallyAsync(() =>
        {
            var all = rig.Server.Stdout.Text + rig.Server.Stderr.Text;
            return all.Contains("JWT-SVID replay reported by", StringComparison.Ordinal)
                ? Task.FromResult(all)
                : throw new InvalidOperationException("no replay report in the server log yet");
        }, Deadline, "the server recording the replay");
        Assert.Contains("spiffe:spiffe://example.org/client,spiffe://example.org/rp-dotnet", reported, StringComparison.Ordinal);
        Assert.Contains("spiffe:spiffe://example.org/client,spiffe://example.org/rp-node", reported, StringComparison.Ordinal);

        // The server revokes a replayed token it issued (docs/jwt-binding.md): a copied token is dead everywhere, for the
        // first relying party too, although its holder is still running; the replayer stays refused.
        await HeldWorkload.WaitUntilRevokedAsync(rig, aud, token, Deadline);
        Assert.False(holder.Process.HasExited);
        var list = await rig.Server.WritAsync("revoke", "list", "--output", "json");
        Assert.True(list.ExitCode == 0, list.ToString());
        using (var doc = JsonDocument.Parse(list.Stdout))
        {
            Assert.True(JwtSvidValidator.TryReadUnverified(token, out var svid, out var error), error);
            var revocation = doc.RootElement.GetProperty("revocations").EnumerateArray()
                .Single(x => x.TryGetProperty("jti", out var jti) && jti.GetString() == svid.Jti);
            Assert.StartsWith("replayed", revocation.GetProperty("reason").GetString(), StringComparison.Ordinal);
        }
        Assert.Equal(1, (await NodeValidateAsync(rig, aud, token)).ExitCode);
    }

    [Fact]
    public async Task A_workload_that_is_not_the_audiences_relying_party_cannot_burn_the_token_by_validating_it_first()
    {
        await using var rig = await AgentRig.StartAsync();
        await rig.CreateEntryAsync("spiffe://example.org/client", ["unix:uid:0"]);
        // The real relying party of https://rp.example.org (its DNS name), and another local service with an identity.
        await rig.CreateEntryAsync("spiffe://example.org/rp", ["unix:uid:0", "unix:path:" + await RealPathAsync("dotnet")], "--dns", "rp.example.org");
        await rig.CreateEntryAsync("spiffe://example.org/nosy", ["unix:uid:0", "unix:path:" + await RealPathAsync("node")]);
        await AgentTests.WaitForSvidAsync(rig);
        const string aud = "https://rp.example.org";
        await using var holder = await HeldWorkload.JwtAsync(rig, "--audience", aud, "--spiffe-id", "spiffe://example.org/client");
        var token = holder.Output;

        // The nosy service saw the token and validates it first, twice: it gets a plain answer, and nothing is recorded.
        for (var i = 0; i < 2; i++)
        {
            var nosy = await NodeValidateAsync(rig, aud, token);
            Assert.True(nosy.ExitCode == 0, nosy.ToString());
        }
        // The real relying party then uses the token: accepted, not a replay; and it stays accepted (not revoked).
        for (var i = 0; i < 2; i++)
        {
            var rp = await rig.WorkloadAsync("jwt", "validate", "--audience", aud, "--token", token);
            Assert.True(rp.ExitCode == 0, rp.ToString());
        }
        Assert.DoesNotContain("refused a replay", rig.Agent.Stderr.Text + rig.Agent.Stdout.Text, StringComparison.Ordinal);
        Assert.DoesNotContain("jwt.replay", (await rig.Server.WritAsync("audit", "list", "--kind", "jwt.")).Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_token_for_two_audiences_may_be_validated_once_by_each()
    {
        await using var rig = await AgentRig.StartAsync();
        await rig.CreateEntryAsync("spiffe://example.org/client", ["unix:uid:0"]);
        await rig.CreateEntryAsync("spiffe://example.org/rp-dotnet", ["unix:uid:0", "unix:path:" + await RealPathAsync("dotnet")], "--dns", "a.example.org");
        await rig.CreateEntryAsync("spiffe://example.org/rp-node", ["unix:uid:0", "unix:path:" + await RealPathAsync("node")], "--dns", "a.example.org", "--dns", "b.example.org");
        await AgentTests.WaitForSvidAsync(rig);
        await using var holder = await HeldWorkload.JwtAsync(rig, "--audience", "https://a.example.org", "--audience", "https://b.example.org",
            "--spiffe-id", "spiffe://example.org/client");
        var token = holder.Output;

        var a = await rig.WorkloadAsync("jwt", "validate", "--audience", "https://a.example.org", "--token", token);
        Assert.True(a.ExitCode == 0, a.ToString());
        var b = await NodeValidateAsync(rig, "https://b.example.org", token);
        Assert.True(b.ExitCode == 0, b.ToString());
        // But not audience a by the second service.
        Assert.Equal(1, (await NodeValidateAsync(rig, "https://a.example.org", token)).ExitCode);
    }

    [Fact]
    public async Task End_to_end_a_workload_presents_its_svid_and_its_bound_token_to_an_mtls_relying_party()
    {
        const string aud = "https://api.example.org";
        await using var rig = await AgentRig.StartAsync();
        await rig.CreateEntryAsync("spiffe://example.org/client", ["unix:uid:0"]);
        await AgentTests.WaitForSvidAsync(rig);

        // The relying party: a TLS certificate minted by the server, the trust domain's bundle, Kestrel + JwtSvidVerifier.
        var rpDir = rig["rp"];
        var mint = await rig.Server.WritAsync("x509", "mint", "--spiffe-id", "spiffe://example.org/api", "--dns", "localhost", "--write", rpDir);
        Assert.True(mint.ExitCode == 0, mint.ToString());
        var shown = await rig.Server.WritAsync("bundle", "show", "--format", "spiffe");
        Assert.True(shown.ExitCode == 0, shown.ToString());
        var bundle = TrustBundle.ParseSpiffeJson(TrustDomain.Parse("example.org"), shown.Stdout);
        using var serverCert = X509Certificate2.CreateFromPemFile(Path.Combine(rpDir, "svid.pem"), Path.Combine(rpDir, "svid.key"));
        await using var api = await BoundApi.StartAsync(bundle, [], serverCert, aud);
        var caPem = Path.Combine(rpDir, "bundle.pem");

        // Two instances of the workload, each fetching its X.509-SVID and a JWT-SVID in one process, and running on
        // while they are used (an instance's credentials are revoked when it exits).
        await using var firstInstance = await HeldWorkload.NodeFetchAsync(rig, aud, rig["w1"]);
        await using var secondInstance = await HeldWorkload.NodeFetchAsync(rig, aud, rig["w2"]);
        static (string Token, string Cert, string Key) Credentials(HeldWorkload w, string dir)
        {
            var j = w.Json();
            Assert.True(j.GetProperty("ok").GetBoolean(), w.Output);
            return (j.GetProperty("token").GetString()!, Path.Combine(dir, "svid.pem"), Path.Combine(dir, "svid.key"));
        }
        var first = Credentials(firstInstance, rig["w1"]);
        var second = Credentials(secondInstance, rig["w2"]);
        Assert.True(JwtSvidValidator.TryReadUnverified(first.Token, out var svid, out var error), error);

        // The issuance pipeline binds every JWT-SVID it mints to the caller's X.509-SVID: an unbound (bearer) token here is
        // a binding regression, not a reason to skip (bearer refusal itself is JwtBindingTests').
        Assert.True(svid.IsBound, "the server minted an unbound JWT-SVID (no cnf) for a workload holding an X.509-SVID");
        Assert.NotNull(svid.Jti);

        // The leaf alone (CreateFromPemFile without a key file would look for a key in the certificate file).
        using var firstLeaf = X509Certificate2.CreateFromPem(await File.ReadAllTextAsync(first.Cert, TestContext.Current.CancellationToken));
        Assert.Equal(CertificateBinding.Thumbprint(firstLeaf), svid.CnfX5tS256);
        var ok = await api.CurlAsync("/bound", first.Token, first.Cert, first.Key, caPem);
        Assert.True(ok.Status == 200, ok.Body);
        // The other instance holds a valid SVID of the same identity, but not the one this token is bound to.
        var stolen = await api.CurlAsync("/bound", first.Token, second.Cert, second.Key, caPem);
        Assert.Equal(401, stolen.Status);
        Assert.StartsWith(nameof(JwtSvidVerificationFailure.BindingMismatch) + ":", stolen.Body, StringComparison.Ordinal);
        Assert.Equal(401, (await api.CurlAsync("/bound", first.Token, null, null, caPem)).Status);

        var valid = await rig.WorkloadAsync("jwt", "validate", "--audience", aud, "--token", first.Token, "--bound-cert", first.Cert);
        Assert.True(valid.ExitCode == 0, valid.ToString());
        Assert.Contains("bound to the certificate in", valid.Stdout, StringComparison.Ordinal);
        Expect.OneLineError(await rig.WorkloadAsync("jwt", "validate", "--audience", aud, "--token", first.Token, "--bound-cert", second.Cert), "bound to another certificate");

        // The first instance exits: its token is revoked (the second instance's credentials are not).
        await firstInstance.ReleaseAsync();
        await HeldWorkload.WaitUntilRevokedAsync(rig, aud, first.Token, Deadline);
        var stillValid = await rig.WorkloadAsync("jwt", "validate", "--audience", aud, "--token", second.Token, "--bound-cert", second.Cert);
        Assert.True(stillValid.ExitCode == 0, stillValid.ToString());
    }
}
