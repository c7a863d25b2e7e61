using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using Writ.IntegrationTests.Harness;
using Writ.Tests.Shared;

namespace Writ.IntegrationTests;

/// <summary>
/// x509pop with the real processes: a `writ server run --x509pop-ca-bundle` and a `writ agent run --node-attestor
/// x509pop` holding a certificate of a machine PKI made by openssl; and the one-line refusals of unusable files.
/// </summary>
public sealed class X509PopAgentTests
{
    private static Task<OpensslPki> PkiAsync(TempDir dir) =>
        OpensslPki.CreateAsync(dir["pki"], DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30));

    [Fact]
    public async Task An_agent_attests_with_its_machine_certificate_and_a_workload_gets_an_SVID()
    {
        using var dir = new TempDir();
        var pki = await PkiAsync(dir);
        var (cert, key) = await pki.NodeAsync("node-1.fleet.example", rsa: false, issuer: await pki.IntermediateAsync("issuing"));
        await using var server = await ServerProcess.StartAsync(dir["server"], "example.org", "--x509pop-ca-bundle", pki.RootPem);
        var bundle = await server.WritAsync("bundle", "show", "--format", "pem");
        Assert.True(bundle.ExitCode == 0, bundle.ToString());
        await File.WriteAllTextAsync(dir["bundle.pem"], bundle.Stdout);

        // No join token: the certificate and its key are the node's evidence.
        await using var agent = new AgentProcess(server.AgentApi, dir["agent"], dir["w.sock"], dir["bundle.pem"], null,
            "--node-attestor", "x509pop", "--x509pop-cert", cert, "--x509pop-key", key);
        await agent.StartAsync();
        using var leaf = X509CertificateLoader.LoadCertificateFromFile(cert);
        using var root = X509CertificateLoader.LoadCertificateFromFile(pki.RootPem);
        Assert.Equal($"spiffe://example.org/writ/agent/x509pop/{Convert.ToHexStringLower(SHA1.HashData(leaf.RawData))}", agent.AgentId);

        var shown = await server.WritAsync("agent", "show", agent.AgentId, "--output", "json");
        Assert.True(shown.ExitCode == 0, shown.ToString());
        Assert.Contains("x509pop:subject:cn:node-1.fleet.example", shown.Stdout, StringComparison.Ordinal);
        Assert.Contains($"x509pop:ca:{Convert.ToHexStringLower(SHA1.HashData(root.RawData))}", shown.Stdout, StringComparison.Ordinal);

        // A workload on the node gets its identity through the x509pop agent, matched by a node selector too.
        var entry = await server.WritAsync("entry", "create", "--spiffe-id", "spiffe://example.org/fleet/web", "--parent-id", agent.AgentId,
            "--selector", "unix:uid:0", "--output", "json");
        Assert.True(entry.ExitCode == 0, entry.ToString());
        var fetched = await WorkloadTools.EventuallyAsync(async () =>
        {
            var r = await Proc.WritAsync("svid", "fetch", "--output", "json", "--socket", agent.SocketPath);
            return r.ExitCode == 0 ? r : throw new InvalidOperationException(r.ToString());
        }, TimeSpan.FromSeconds(30), "the workload getting its SVID through the x509pop agent");
        using var doc = JsonDocument.Parse(fetched.Stdout);
        Assert.Equal(["spiffe://example.org/fleet/web"], doc.RootElement.GetProperty("svids").EnumerateArray().Select(s => s.GetProperty("spiffe_id").GetString()).ToList());
    }

    [Fact]
    public async Task An_agent_without_a_usable_SVID_attests_again_with_its_certificate_and_keeps_its_ID()
    {
        using var dir = new TempDir();
        var pki = await PkiAsync(dir);
        var (cert, key) = await pki.NodeAsync("node-2.fleet.example", rsa: true);
        await using var server = await ServerProcess.StartAsync(dir["server"], "example.org", "--x509pop-ca-bundle", pki.RootPem);
        var bundle = await server.WritAsync("bundle", "show", "--format", "pem");
        await File.WriteAllTextAsync(dir["bundle.pem"], bundle.Stdout);
        await using var agent = new AgentProcess(server.AgentApi, dir["agent"], dir["w.sock"], dir["bundle.pem"], null,
            "--node-attestor", "x509pop", "--x509pop-cert", cert, "--x509pop-key", key);
        await agent.StartAsync();
        var first = agent.AgentId;

        // The node is evicted and its SVID lost (or expired while the agent was down): unlike a used join token, the
        // certificate attests the node again, under the same ID.
        await agent.KillAsync();
        var evict = await server.WritAsync("agent", "evict", first);
        Assert.True(evict.ExitCode == 0, evict.ToString());
        File.Delete(Path.Combine(dir["agent"], "agent-svid.pem"));
        File.Delete(Path.Combine(dir["agent"], "agent-svid.key"));
        await agent.StartAsync();
        Assert.Equal(first, agent.AgentId);
        var listed = await server.WritAsync("agent", "show", first, "--output", "json");
        Assert.True(listed.ExitCode == 0, listed.ToString());
    }

    [Fact]
    public async Task A_server_refuses_to_start_with_an_unusable_ca_bundle_or_template_in_one_line_before_making_keys()
    {
        using var dir = new TempDir();
        await File.WriteAllTextAsync(dir["empty.pem"], "");
        var pki = await PkiAsync(dir);
        var (nodeCert, _) = await pki.NodeAsync("not-a-ca", rsa: false);
        foreach (var (bundle, why) in new[] { (dir["empty.pem"], "holds no PEM CERTIFICATE"), (dir["missing.pem"], "cannot be read"), (nodeCert, "is not a CA certificate") })
        {
            var r = await Proc.WritAsync("server", "run", "--trust-domain", "example.org", "--data-dir", dir["server"], "--bind", "127.0.0.1:0",
                "--admin-socket", dir["admin.sock"], "--x509pop-ca-bundle", bundle);
            Expect.OneLineError(r, "WRIT-X509POP-CA-BUNDLE");
            Assert.Contains(why, r.Stderr, StringComparison.Ordinal);
            Assert.False(File.Exists(Path.Combine(dir["server"], "keys.json")), "keys were made before the bundle was checked");
            Assert.False(File.Exists(Path.Combine(dir["server"], "writ.db")), "a database was made before the bundle was checked");
        }
        var template = await Proc.WritAsync("server", "run", "--trust-domain", "example.org", "--data-dir", dir["server"], "--bind", "127.0.0.1:0",
            "--admin-socket", dir["admin.sock"], "--x509pop-ca-bundle", pki.RootPem, "--x509pop-agent-path-template", "all-nodes");
        Expect.OneLineError(template, "WRIT-CLI-CONFIG");
        Assert.Contains("no placeholder", template.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_agent_refuses_missing_or_mismatched_x509pop_files_in_one_line()
    {
        using var dir = new TempDir();
        var pki = await PkiAsync(dir);
        var (certA, _) = await pki.NodeAsync("node-a", rsa: false);
        var (_, keyB) = await pki.NodeAsync("node-b", rsa: false);
        string[] common = ["agent", "run", "--server", "127.0.0.1:1", "--trust-domain", "example.org", "--data-dir", dir["agent"], "--node-attestor", "x509pop"];

        var noFiles = await Proc.WritAsync(common);
        Expect.OneLineError(noFiles, "WRIT-CLI-CONFIG");
        Assert.Contains("--x509pop-cert", noFiles.Stderr, StringComparison.Ordinal);

        var mismatched = await Proc.WritAsync([.. common, "--x509pop-cert", certA, "--x509pop-key", keyB]);
        Expect.OneLineError(mismatched, "WRIT-CLI-CONFIG");
        Assert.Contains("is not the key of the first certificate", mismatched.Stderr, StringComparison.Ordinal);

        var unknown = await Proc.WritAsync([.. common[..^1], "tpm2"]);
        Expect.OneLineError(unknown, "WRIT-CLI-CONFIG");
    }
}
