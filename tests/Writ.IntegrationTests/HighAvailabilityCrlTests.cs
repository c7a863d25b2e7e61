using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using Google.Protobuf;
using Writ.IntegrationTests.Harness;
using Writ.Protocol.Agent;
using Writ.Spiffe.X509;

namespace Writ.IntegrationTests;

/// <summary>
/// Several servers on one PostgreSQL each sign CRLs with their own authorities only (issue #16). An X.509-SVID server B
/// issued and an operator revoked through server A must reach a relying party in a CRL signed by B's authority — the only
/// CRL `openssl verify -crl_check` accepts for it — also when that relying party's agent syncs with A.
/// </summary>
public sealed class HighAvailabilityCrlTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task An_svid_of_server_b_revoked_through_server_a_fails_crl_checked_verification_with_the_files_an_agent_on_a_writes()
    {
        await using var db = await PgDatabase.CreateAsync();
        using var dir = new TempDir();
        File.SetUnixFileMode(dir.Path, (UnixFileMode)0b111_101_101);
        await using var a = new ServerProcess(dir["a"], "example.org", "--store-kind", "postgres", "--store-connection", db.ConnectionString);
        await using var b = new ServerProcess(dir["b"], "example.org", "--store-kind", "postgres", "--store-connection", db.ConnectionString);
        await Task.WhenAll(a.StartAsync(), b.StartAsync());

        // Two X.509-SVIDs issued by B's authority (through an agent attested on B): one to revoke, one control.
        using var onB = await TestAgent.ConnectAsync(b);
        await onB.AttestAsync(await TestAgent.NewJoinTokenAsync(b));
        var entry = await CreateEntryAsync(b, "spiffe://example.org/issued-by-b", onB.AgentId, "unix:uid:1000");
        var revoked = dir["revoked.pem"];
        var control = dir["control.pem"];
        var serial = await SignThroughAsync(onB, entry, revoked);
        await SignThroughAsync(onB, entry, control);

        // A real agent syncing with A only, and `writ svid watch --write DIR --crl` on its Workload API.
        var bundle = await a.WritAsync("bundle", "show", "--format", "pem");
        Assert.True(bundle.ExitCode == 0, bundle.ToString());
        await File.WriteAllTextAsync(dir["bundle.pem"], bundle.Stdout);
        await using var agent = new AgentProcess(a.AgentApi, dir["agent"], dir["pub/w.sock"], dir["bundle.pem"], await TestAgent.NewJoinTokenAsync(a));
        await agent.StartAsync();
        await CreateEntryAsync(a, "spiffe://example.org/watcher", agent.AgentId, "unix:uid:0");
        var files = dir["files"];
        await using var watch = BackgroundProcess.Writ("svid", "watch", "--write", files, "--crl", "--socket", agent.SocketPath);

        // Revoked through A's admin socket.
        var revoke = await a.WritAsync("revoke", "--serial", serial);
        Assert.True(revoke.ExitCode == 0, revoke.ToString());

        // The files the agent on A hands out: B's CRL listing the serial arrives (B signs it, publishes it in the store, A
        // pushes it), so openssl refuses the revoked SVID ...
        var verdict = await WorkloadTools.EventuallyAsync(async () =>
        {
            var v = await VerifyAsync(files, revoked);
            return v.Contains("certificate revoked", StringComparison.Ordinal) ? v
                : throw new InvalidOperationException($"not refused yet: {v}; {watch.Stdout.Text.Split('\n').LastOrDefault(l => l.Length > 0)}; A: {string.Join(" / ", a.Stdout.Text.Split('\n').Where(l => l.Contains("CRL", StringComparison.Ordinal)).TakeLast(3))}");
        }, Deadline, "the revoked SVID refused by openssl verify -crl_check with the agent's files");
        Assert.Contains("certificate revoked", verdict, StringComparison.Ordinal);
        // ... and accepts the unrevoked one from the same issuer: B's CRL is there, and the refusal above is its doing.
        Assert.Equal($"{control}: OK", await VerifyAsync(files, control));
        Assert.False(watch.HasExited, watch.Stderr.Text);
    }

    /// <summary>The last line of `openssl verify -crl_check` of a certificate against the files svid watch wrote.</summary>
    private static async Task<string> VerifyAsync(string files, string cert)
    {
        if (!File.Exists(Path.Combine(files, "crl.pem")) || !File.Exists(Path.Combine(files, "bundle.pem")))
        {
            return "no files yet";
        }
        var r = await Proc.RunAsync("openssl", ["verify", "-crl_check", "-CAfile", Path.Combine(files, "bundle.pem"), "-CRLfile", Path.Combine(files, "crl.pem"), cert]);
        return string.Join(" | ", (r.Stdout + r.Stderr).Trim().Split('\n').Select(l => l.Trim()));
    }

    private static async Task<string> CreateEntryAsync(ServerProcess s, string spiffeId, string parent, string selector)
    {
        var create = await s.WritAsync("entry", "create", "--spiffe-id", spiffeId, "--parent-id", parent, "--selector", selector, "--output", "json");
        Assert.True(create.ExitCode == 0, create.ToString());
        using var doc = JsonDocument.Parse(create.Stdout);
        return doc.RootElement.GetProperty("id").GetString()!;
    }

    /// <summary>Signs an X.509-SVID through the test agent, writes its leaf (PEM) and returns its serial (hex).</summary>
    private static async Task<string> SignThroughAsync(TestAgent agent, string entry, string pemPath)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var signed = await agent.Client.SignX509SvidsAsync(new SignX509SvidsRequest
        {
            Csrs = { new SvidCsr { EntryId = entry, Csr = ByteString.CopyFrom(Csr.Create(key)), Evidence = TestEvidence.Of() } },
        });
        using var leaf = X509CertificateLoader.LoadCertificate(signed.Svids[0].CertChain[0].ToByteArray());
        await File.WriteAllTextAsync(pemPath, leaf.ExportCertificatePem() + "\n");
        return leaf.SerialNumber;
    }
}
