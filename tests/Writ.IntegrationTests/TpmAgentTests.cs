using System.Text.Json;
using Writ.IntegrationTests.Harness;
using Writ.Tests.Shared;

namespace Writ.IntegrationTests;

/// <summary>
/// TPM node attestation with the real processes and a real software TPM (swtpm, manufactured with EK certificates from a
/// per-test manufacturer CA): `writ server run --tpm-ek-ca-dir` and `writ agent run --node-attestor tpm --tpm tcp://…`.
/// The "done when": the agent attests by TPM, its TLS key is never on disk, `writ agent show` lists its TPM
/// selectors, a workload gets an SVID, extending a PCR makes the node drift and its workloads lose their SVIDs; a TPM of
/// another manufacturer is refused with a clear error and a ledger record; a copied data dir on another TPM is not the node.
/// </summary>
public sealed class TpmAgentTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static async Task<(ServerProcess Server, string Bundle)> StartServerAsync(TempDir dir, SwtpmCa ca, string requoteInterval, params string[] extra)
    {
        var server = await ServerProcess.StartAsync(dir["server"], "example.org",
            ["--tpm-ek-ca-dir", ca.WriteCaDirectory(dir["ek-ca"]), "--tpm-requote-interval", requoteInterval, "--tpm-requote-grace", "3s", .. extra]);
        var bundle = await server.WritAsync("bundle", "show", "--format", "pem");
        Assert.True(bundle.ExitCode == 0, bundle.ToString());
        await File.WriteAllTextAsync(dir["bundle.pem"], bundle.Stdout, Ct);
        return (server, dir["bundle.pem"]);
    }

    private static AgentProcess TpmAgent(ServerProcess server, TempDir dir, string name, string bundle, Swtpm tpm) =>
        new(server.AgentApi, dir[name], dir[name + ".sock"], bundle, null, "--node-attestor", "tpm", "--tpm", tpm.Address);

    private static async Task<JsonElement> AgentShowAsync(ServerProcess server, string id)
    {
        var shown = await server.WritAsync("agent", "show", id, "--output", "json");
        Assert.True(shown.ExitCode == 0, shown.ToString());
        using var doc = JsonDocument.Parse(shown.Stdout);
        return doc.RootElement.Clone();
    }

    private static async Task<string> AuditJsonAsync(ServerProcess server)
    {
        var r = await server.WritAsync("audit", "list", "--output", "json", "--limit", "5000");
        Assert.True(r.ExitCode == 0, r.ToString());
        return r.Stdout;
    }

    [Fact]
    public async Task An_agent_attests_by_TPM_serves_a_workload_and_a_PCR_change_revokes_its_SVIDs()
    {
        Assert.True(Swtpm.Installed, "swtpm, swtpm-tools and tpm2-tools must be installed (.ci/run installs them)");
        using var dir = new TempDir();
        using var ca = SwtpmCa.Create();
        await using var tpm = await Swtpm.StartAsync(ca, Ct);
        var (server, bundle) = await StartServerAsync(dir, ca, "1s", "--tpm-drift-action", "revoke");
        await using var _ = server;
        await using var agent = TpmAgent(server, dir, "agent", bundle, tpm);
        await agent.StartAsync();
        Assert.Matches("^spiffe://example.org/writ/agent/tpm/[0-9a-f]{64}$", agent.AgentId);

        // The TLS key lives only in the agent's memory: nothing in its data dir is a private key.
        foreach (var file in Directory.EnumerateFiles(dir["agent"], "*", SearchOption.AllDirectories).Where(f => Path.GetFileName(f) != "writ.lock" && !f.EndsWith(".sock", StringComparison.Ordinal)))
        {
            string text;
            try
            {
                text = await File.ReadAllTextAsync(file, Ct);
            }
            catch (FileNotFoundException)
            {
                continue;   // a *.tmp the agent renamed into place meanwhile (atomic writes)
            }
            Assert.DoesNotContain("PRIVATE KEY", text, StringComparison.Ordinal);
        }

        var shown = (await AgentShowAsync(server, agent.AgentId)).ToString();
        var ekHash = agent.AgentId[(agent.AgentId.LastIndexOf('/') + 1)..];
        Assert.Contains($"tpm:ek_hash:{ekHash}", shown, StringComparison.Ordinal);
        Assert.Contains("tpm:ek_issuer:", shown, StringComparison.Ordinal);
        Assert.Contains("tpm:pcr:sha256:14:", shown, StringComparison.Ordinal);
        Assert.Contains("tpm:pcr:sha256:7:", shown, StringComparison.Ordinal);

        var entry = await server.WritAsync("entry", "create", "--spiffe-id", "spiffe://example.org/payments/api", "--parent-id", agent.AgentId,
            "--selector", "unix:uid:0", "--output", "json");
        Assert.True(entry.ExitCode == 0, entry.ToString());
        await WorkloadTools.EventuallyAsync(async () =>
        {
            var r = await Proc.WritAsync("svid", "fetch", "--output", "json", "--socket", agent.SocketPath);
            return r.ExitCode == 0 && r.Stdout.Contains("spiffe://example.org/payments/api", StringComparison.Ordinal) ? r : throw new InvalidOperationException(r.ToString());
        }, TimeSpan.FromSeconds(30), "the workload getting its SVID through the TPM agent");

        // A measured component changes while the agent runs: the next re-quote shows PCR 14 outside the node's reference
        // values, the node drifts, and (drift action revoke) the workload's SVID is revoked on its agent.
        await tpm.ExtendPcrAsync(14, "an unexpected kernel module", Ct);
        await WorkloadTools.EventuallyAsync(async () =>
        {
            var node = await AgentShowAsync(server, agent.AgentId);
            return node.GetProperty("status").GetString() == "drifted" ? node : throw new InvalidOperationException(node.ToString());
        }, TimeSpan.FromSeconds(30), "the node to drift after PCR 14 changed");
        await WorkloadTools.EventuallyAsync(async () =>
        {
            var r = await Proc.WritAsync("svid", "fetch", "--output", "json", "--socket", agent.SocketPath);
            return r.ExitCode != 0 || !r.Stdout.Contains("spiffe://example.org/payments/api", StringComparison.Ordinal)
                ? r : throw new InvalidOperationException("the workload still gets its SVID: " + r.Stdout);
        }, TimeSpan.FromSeconds(30), "the workload losing its SVID after the drift");
        var audit = await AuditJsonAsync(server);
        Assert.Contains("node.drifted", audit, StringComparison.Ordinal);
        Assert.Contains("WRIT-TPM-PCR-DRIFT", audit, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_TPM_of_another_manufacturer_is_refused_with_a_clear_error_and_a_ledger_record()
    {
        using var dir = new TempDir();
        using var trusted = SwtpmCa.Create();
        using var other = SwtpmCa.Create();
        await using var trustedTpm = await Swtpm.StartAsync(trusted, Ct);   // makes the trusted CA
        await using var foreign = await Swtpm.StartAsync(other, Ct);
        var (server, bundle) = await StartServerAsync(dir, trusted, "60s");
        await using var _ = server;
        await using var agent = TpmAgent(server, dir, "agent", bundle, foreign);
        agent.Launch();
        var exit = await agent.WaitForExitAsync(TimeSpan.FromSeconds(60));
        Assert.NotEqual(0, exit);
        var error = Assert.Single(agent.Stderr.Text.Split('\n'), l => l.StartsWith("error: ", StringComparison.Ordinal));
        Assert.Contains("WRIT-TPM-EK-UNTRUSTED", error, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", agent.Stderr.Text, StringComparison.Ordinal);
        var agents = await server.WritAsync("agent", "list", "--output", "json");
        Assert.DoesNotContain("/writ/agent/tpm/", agents.Stdout, StringComparison.Ordinal);
        var audit = await AuditJsonAsync(server);
        Assert.Contains("node.attestation_refused", audit, StringComparison.Ordinal);
        Assert.Contains("WRIT-TPM-EK-UNTRUSTED", audit, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_copied_data_dir_on_another_TPM_cannot_act_as_the_node()
    {
        using var dir = new TempDir();
        using var ca = SwtpmCa.Create();
        await using var tpm1 = await Swtpm.StartAsync(ca, Ct);
        await using var tpm2 = await Swtpm.StartAsync(ca, Ct);
        // Re-quotes far apart: while the original agent is down its node must not drift for a missed re-quote (that is
        // another test's subject), so that it can come back under its own ID at the end.
        var (server, bundle) = await StartServerAsync(dir, ca, "1h");
        await using var _ = server;
        await using var original = TpmAgent(server, dir, "agent", bundle, tpm1);
        await original.StartAsync();
        var entry = await server.WritAsync("entry", "create", "--spiffe-id", "spiffe://example.org/only-on-node-1", "--parent-id", original.AgentId,
            "--selector", "unix:uid:0");
        Assert.True(entry.ExitCode == 0, entry.ToString());
        await original.KillAsync();

        // An attacker copies the whole data dir to a machine with another (equally trusted) TPM and starts an agent on it.
        CopyDirectory(dir["agent"], dir["copy"]);
        await using var copy = TpmAgent(server, dir, "copy", bundle, tpm2);
        await copy.StartAsync();
        Assert.NotEqual(original.AgentId, copy.AgentId);   // it attests as the other TPM, never as the first node
        var fetched = await Proc.WritAsync("svid", "fetch", "--output", "json", "--socket", copy.SocketPath);
        Assert.DoesNotContain("only-on-node-1", fetched.Stdout, StringComparison.Ordinal);
        // The original node is still the first TPM's: its agent, restarted there, attests under its own ID again.
        await original.StartAsync();
        Assert.Equal((await AgentShowAsync(server, original.AgentId)).GetProperty("spiffe_id").GetString(), original.AgentId);
    }

    private static void CopyDirectory(string from, string to)
    {
        Directory.CreateDirectory(to);
        File.SetUnixFileMode(to, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        foreach (var f in Directory.EnumerateFiles(from))
        {
            if (Path.GetFileName(f) is "writ.lock" or "workload.sock")
                continue;
            File.Copy(f, Path.Combine(to, Path.GetFileName(f)));
        }
    }
}
