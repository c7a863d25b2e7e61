using System.Security.Cryptography;
using System.Text.Json;
using Google.Protobuf;
using Grpc.Core;
using Writ.IntegrationTests.Harness;
using Writ.Protocol.Agent;
using Writ.Spiffe.X509;

namespace Writ.IntegrationTests;

/// <summary>
/// A data dir copied to a second machine makes two live servers with one server id and one CA key (issue #16). Each
/// process writes a boot nonce at start and checks it with every heartbeat: both copies stop issuing and report not
/// ready, loudly, while a restart after kill -9 (the chaos test's every 10 s) goes on as before.
/// </summary>
public sealed class DuplicateServerIdTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(60);
    private const string Code = "WRIT-CA-DUPLICATE-SERVER-ID";

    private static ServerProcess NewServer(string dataDir, PgDatabase db) =>
        new(dataDir, "example.org", "--store-kind", "postgres", "--store-connection", db.ConnectionString, "--rotation-interval", "200ms");

    private static async Task<DateTimeOffset> LastSeenAsync(ServerProcess s)
    {
        var r = await s.WritAsync("server", "list", "--output", "json");
        Assert.True(r.ExitCode == 0, r.ToString());
        using var doc = JsonDocument.Parse(r.Stdout);
        return DateTimeOffset.Parse(doc.RootElement.GetProperty("servers")[0].GetProperty("last_seen").GetString()!, System.Globalization.CultureInfo.InvariantCulture);
    }

    [Fact]
    public async Task Two_live_processes_on_copies_of_one_data_dir_both_stop_issuing_and_a_restart_after_kill_9_does_not()
    {
        await using var db = await PgDatabase.CreateAsync();
        using var dir = new TempDir();
        await using var a = NewServer(dir["a"], db);
        await a.StartAsync();

        // Control: kill -9 and restart at once. The heartbeats go on (several seconds of them), the server stays ready and issues.
        await a.KillAsync();
        var restarted = DateTimeOffset.UtcNow;
        await a.StartAsync();
        await WorkloadTools.EventuallyAsync(async () =>
            await LastSeenAsync(a) >= restarted.AddSeconds(3) ? true : throw new InvalidOperationException("no heartbeat 3 s after the restart yet"),
            Deadline, "heartbeats after the restart");
        Assert.Equal(0, (await a.WritAsync("healthcheck")).ExitCode);
        using var agent = await TestAgent.ConnectAsync(a);
        await agent.AttestAsync(await TestAgent.NewJoinTokenAsync(a));
        Assert.DoesNotContain(Code, a.Stderr.Text + a.Stdout.Text, StringComparison.Ordinal);

        // Attack: the data dir copied (server id, keys and all; not the held lock or the socket) and started beside the live one.
        var copy = dir["a-copy"];
        foreach (var f in Directory.EnumerateFiles(a.DataDir, "*", SearchOption.AllDirectories).Where(f => !f.EndsWith(".sock", StringComparison.Ordinal) && Path.GetFileName(f) != "writ.lock"))
        {
            var to = Path.Combine(copy, Path.GetRelativePath(a.DataDir, f));
            Directory.CreateDirectory(Path.GetDirectoryName(to)!);
            File.Copy(f, to);
        }
        await using var twin = NewServer(copy, db);
        await twin.StartAsync();

        // Both say so loudly (a critical log line with the code) and report not ready.
        foreach (var s in new[] { a, twin })
        {
            await s.Stderr.WaitForAsync(l => l.Contains(Code, StringComparison.Ordinal), Deadline, () => s.HasExited);
            var health = await s.WritAsync("healthcheck");
            Assert.True(health.ExitCode == 1, health.ToString());
        }
        // Neither issues: an agent SVID (attestation) nor a workload X.509-SVID through an agent attested before.
        using (var late = await TestAgent.ConnectAsync(twin))
        {
            var refused = await Assert.ThrowsAsync<RpcException>(async () => await late.AttestAsync(await TestAgent.NewJoinTokenAsync(twin)));
            Assert.Equal(StatusCode.Unavailable, refused.StatusCode);
        }
        var create = await a.WritAsync("entry", "create", "--spiffe-id", "spiffe://example.org/dup", "--parent-id", agent.AgentId, "--selector", "unix:uid:1000", "--output", "json");
        Assert.True(create.ExitCode == 0, create.ToString());
        using var doc = JsonDocument.Parse(create.Stdout);
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var sign = await Assert.ThrowsAsync<RpcException>(async () => await agent.Client.SignX509SvidsAsync(new SignX509SvidsRequest
        {
            Csrs = { new SvidCsr { EntryId = doc.RootElement.GetProperty("id").GetString()!, Csr = ByteString.CopyFrom(Csr.Create(key)), Evidence = TestEvidence.Of() } },
        }));
        Assert.Equal(StatusCode.Unavailable, sign.StatusCode);
        Assert.Contains(Code, sign.Status.Detail, StringComparison.Ordinal);
    }
}
