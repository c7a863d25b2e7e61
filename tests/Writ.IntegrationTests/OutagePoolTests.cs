using System.Text.Json;
using System.Text.RegularExpressions;
using Writ.Cli.Workload;
using Writ.IntegrationTests.Harness;
using Writ.Server.Policy;

namespace Writ.IntegrationTests;

/// <summary>
/// New workloads during an outage (issue #16 item 5; docs/high-availability.md): a real server and agent, real Unix
/// sockets, real workload processes (`writ svid watch`). With an entry opted in (--outage-pool 2) and a permit for
/// IssuePooledX509Svid, the agent fills its pool; with the server down, two new workloads get the two pooled SVIDs, a
/// third gets Unavailable; with the server back, both handouts are in the ledger and the workloads' open streams move
/// to SVIDs of their own.
/// </summary>
public sealed class OutagePoolTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(90);
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task With_the_server_down_two_new_workloads_get_the_two_pooled_svids_a_third_gets_unavailable_and_all_is_reported_later()
    {
        using var dir = new TempDir();
        await using var server = await ServerProcess.StartAsync(dir["server"]);
        await using var relay = new TcpRelay(server.AgentApi);
        await PushPermitAsync(server, dir);
        await using var agent = await StartAgentAsync(dir, server, relay.Address);
        var create = await server.WritAsync("entry", "create", "--spiffe-id", "spiffe://example.org/pooled/web", "--parent-id", agent.AgentId,
            "--selector", "unix:uid:0", "--outage-pool", "2", "--output", "json");
        Assert.True(create.ExitCode == 0, create.ToString());
        var entryId = JsonDocument.Parse(create.Stdout).RootElement.GetProperty("id").GetString()!;
        var show = await server.WritAsync("entry", "show", entryId);
        Assert.Contains("Outage pool: 2", show.Stdout, StringComparison.Ordinal);

        // The pool fills: two pooled issuances recorded by the server.
        var pooled = await WorkloadTools.EventuallyAsync(async () =>
        {
            var serials = await PooledIssuedSerialsAsync(server);
            return serials.Count == 2 ? serials : throw new InvalidOperationException($"{serials.Count} pooled SVIDs issued");
        }, Deadline, "the outage pool filled");

        // The server goes away (kill -9, its address dead).
        await server.KillAsync();
        relay.Retarget(null);

        await using var first = BackgroundProcess.Writ("svid", "watch", "--output", "json", "--socket", agent.SocketPath);
        await using var second = BackgroundProcess.Writ("svid", "watch", "--output", "json", "--socket", agent.SocketPath);
        var a = await FirstSerialAsync(first);
        var b = await FirstSerialAsync(second);
        Assert.NotEqual(a, b);
        Assert.Contains(a, pooled, StringComparer.OrdinalIgnoreCase);
        Assert.Contains(b, pooled, StringComparer.OrdinalIgnoreCase);

        // The pool is empty: a third new workload gets Unavailable, as without a pool.
        var third = await Proc.WritAsync("svid", "fetch", "--socket", agent.SocketPath);
        Assert.NotEqual(0, third.ExitCode);
        Assert.Contains("unavailable", third.Stderr + third.Stdout, StringComparison.OrdinalIgnoreCase);

        // The server is back: both handouts are reported and recorded, and both open streams get SVIDs of their own.
        await server.StartAsync();
        relay.Retarget(server.AgentApi);
        await WorkloadTools.EventuallyAsync(async () =>
        {
            var used = await LedgerAsync(server, "svid.pooled_used");
            var serials = used.Select(r => r.GetProperty("data").GetProperty("serial").GetString()!).ToList();
            return serials.Count == 2 && serials.Contains(a, StringComparer.OrdinalIgnoreCase) && serials.Contains(b, StringComparer.OrdinalIgnoreCase)
                ? true : throw new InvalidOperationException($"{serials.Count} pooled_used records");
        }, Deadline, "both handouts recorded");
        var a2 = await NextOtherSerialAsync(first, a);
        var b2 = await NextOtherSerialAsync(second, b);
        Assert.DoesNotContain(a2, pooled, StringComparer.OrdinalIgnoreCase);
        Assert.DoesNotContain(b2, pooled, StringComparer.OrdinalIgnoreCase);
        Assert.False(first.HasExited, first.Stderr.Text);
        Assert.False(second.HasExited, second.Stderr.Text);
        var verify = await server.WritAsync("audit", "verify");
        Assert.True(verify.ExitCode == 0, verify.ToString());

        // The pool refills with the server back; set to 0, the agent drops it.
        await agent.Stderr.WaitForAsync(l => l.Contains("refilled with 2 pooled", StringComparison.Ordinal)
            && agent.Stderr.Text.Split('\n').Count(x => x.Contains("refilled with", StringComparison.Ordinal)) >= 2, Deadline, () => agent.HasExited);
        var off = await server.WritAsync("entry", "update", "--id", entryId, "--outage-pool", "0");
        Assert.True(off.ExitCode == 0, off.ToString());
        await agent.Stderr.WaitForAsync(l => l.Contains($"Outage pool of entry {entryId} dropped (outage pool set to 0)", StringComparison.Ordinal), Deadline, () => agent.HasExited);
    }

    [Fact]
    public async Task Without_a_permit_the_pool_stays_empty_and_a_new_workload_in_an_outage_gets_unavailable()
    {
        using var dir = new TempDir();
        await using var server = await ServerProcess.StartAsync(dir["server"]);
        await using var relay = new TcpRelay(server.AgentApi);
        await using var agent = await StartAgentAsync(dir, server, relay.Address);
        var create = await server.WritAsync("entry", "create", "--spiffe-id", "spiffe://example.org/pooled/web", "--parent-id", agent.AgentId,
            "--selector", "unix:uid:0", "--outage-pool", "2");
        Assert.True(create.ExitCode == 0, create.ToString());
        // The agent asked and was refused by the default policy (a recorded denial), so its pool is empty.
        await agent.Stderr.WaitForAsync(l => l.Contains("not refilled: WRIT-ISSUE-DENIED", StringComparison.Ordinal), Deadline);
        Assert.Empty(await PooledIssuedSerialsAsync(server));

        await server.KillAsync();
        relay.Retarget(null);
        var fetch = await Proc.WritAsync("svid", "fetch", "--socket", agent.SocketPath);
        Assert.NotEqual(0, fetch.ExitCode);
        Assert.Contains("unavailable", fetch.Stderr + fetch.Stdout, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("handed to instance", agent.Stderr.Text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_revoked_pooled_serial_is_dropped_by_the_agent_and_never_handed_out()
    {
        using var dir = new TempDir();
        await using var server = await ServerProcess.StartAsync(dir["server"]);
        await using var relay = new TcpRelay(server.AgentApi);
        await PushPermitAsync(server, dir);
        await using var agent = await StartAgentAsync(dir, server, relay.Address);
        var create = await server.WritAsync("entry", "create", "--spiffe-id", "spiffe://example.org/pooled/web", "--parent-id", agent.AgentId,
            "--selector", "unix:uid:0", "--outage-pool", "1");
        Assert.True(create.ExitCode == 0, create.ToString());
        var revoked = (await WorkloadTools.EventuallyAsync(async () =>
        {
            var serials = await PooledIssuedSerialsAsync(server);
            return serials.Count == 1 ? serials : throw new InvalidOperationException($"{serials.Count} pooled SVIDs issued");
        }, Deadline, "the outage pool filled"))[0];

        var revoke = await server.WritAsync("revoke", "--serial", revoked, "--reason", "pooled key suspected");
        Assert.True(revoke.ExitCode == 0, revoke.ToString());
        // The agent drops it and, the revoked one no longer counting, gets a replacement.
        var replacement = (await WorkloadTools.EventuallyAsync(async () =>
        {
            var serials = await PooledIssuedSerialsAsync(server);
            return serials.Count == 2 ? serials : throw new InvalidOperationException($"{serials.Count} pooled SVIDs issued");
        }, Deadline, "the pool refilled after the revocation")).Single(s => s != revoked);

        await server.KillAsync();
        relay.Retarget(null);
        await using var workload = BackgroundProcess.Writ("svid", "watch", "--output", "json", "--socket", agent.SocketPath);
        Assert.Equal(replacement, await FirstSerialAsync(workload), StringComparer.OrdinalIgnoreCase);
        // And with the pool empty, the next new workload is refused rather than given the revoked one.
        var next = await Proc.WritAsync("svid", "fetch", "--socket", agent.SocketPath);
        Assert.NotEqual(0, next.ExitCode);
        Assert.DoesNotContain(agent.Stderr.Text.Split('\n'), l => l.Contains("handed to instance", StringComparison.Ordinal)
            && l.Contains(revoked, StringComparison.OrdinalIgnoreCase));
    }

    [Theory]
    [InlineData("17")]
    [InlineData("-1")]
    public async Task An_outage_pool_out_of_range_is_refused_with_its_code_and_nothing_is_written(string size)
    {
        using var dir = new TempDir();
        await using var server = await ServerProcess.StartAsync(dir["server"]);
        var r = await server.WritAsync("entry", "create", "--spiffe-id", "spiffe://example.org/pooled/web", "--parent-id",
            "spiffe://example.org/writ/agent/join_token/x", "--selector", "unix:uid:0", "--outage-pool", size);
        Expect.OneLineError(r, "WRIT-ENTRY-OUTAGE-POOL");
        var list = await server.WritAsync("entry", "list", "--output", "json");
        Assert.Equal(0, JsonDocument.Parse(list.Stdout).RootElement.GetProperty("entries").GetArrayLength());
    }

    private static async Task PushPermitAsync(ServerProcess server, TempDir dir)
    {
        var policy = dir["policy"];
        Directory.CreateDirectory(policy);
        await File.WriteAllTextAsync(Path.Combine(policy, "default.cedar"), WritPolicyCompiler.DefaultFiles[0].Text, Ct);
        File.Copy(Path.Combine(Repo.Root, "docs", "examples", "policy", "writ", "outage-pool.cedar"), Path.Combine(policy, "outage-pool.cedar"));
        var push = await server.WritAsync("policy", "push", "--file", policy);
        Assert.True(push.ExitCode == 0, push.ToString());
        var version = Regex.Match(push.Stdout, @"pushed policy version (\d+)").Groups[1].Value;
        await server.Stderr.WaitForAsync(l => l.Contains($"Issuance policy version {version} active", StringComparison.Ordinal), TimeSpan.FromSeconds(20), () => server.HasExited);
    }

    private static async Task<AgentProcess> StartAgentAsync(TempDir dir, ServerProcess server, string servers)
    {
        var bundle = await server.WritAsync("bundle", "show", "--format", "pem");
        Assert.True(bundle.ExitCode == 0, bundle.ToString());
        await File.WriteAllTextAsync(dir["bundle.pem"], bundle.Stdout, Ct);
        var token = await TestAgent.NewJoinTokenAsync(server);
        var agent = new AgentProcess(servers, dir["agent"], null, dir["bundle.pem"], token);
        await agent.StartAsync();
        return agent;
    }

    private static async Task<List<JsonElement>> LedgerAsync(ServerProcess server, string kind)
    {
        var r = await server.WritAsync("audit", "list", "--output", "json", "--kind", kind, "--limit", "1000");
        Assert.True(r.ExitCode == 0, r.ToString());
        using var doc = JsonDocument.Parse(r.Stdout);
        return [.. doc.RootElement.GetProperty("events").EnumerateArray().Select(e => e.Clone())];
    }

    private static async Task<List<string>> PooledIssuedSerialsAsync(ServerProcess server) =>
        [.. (await LedgerAsync(server, "x509.issued"))
            .Select(r => r.GetProperty("data"))
            .Where(d => d.TryGetProperty("pooled", out var p) && p.ValueKind == JsonValueKind.True)
            .Select(d => d.GetProperty("serial").GetString()!)];

    private static readonly Regex SerialLine = new("\"serial_number\"\\s*:\\s*\"([0-9A-Fa-f]+)\"");

    private static async Task<string> FirstSerialAsync(BackgroundProcess p)
    {
        var line = await p.Stdout.WaitForAsync(l => SerialLine.IsMatch(l), Deadline, () => p.HasExited);
        return SerialLine.Match(line).Groups[1].Value;
    }

    private static async Task<string> NextOtherSerialAsync(BackgroundProcess p, string old)
    {
        var line = await p.Stdout.WaitForAsync(l => SerialLine.Match(l) is { Success: true } m && !string.Equals(m.Groups[1].Value, old, StringComparison.OrdinalIgnoreCase),
            Deadline, () => p.HasExited);
        return SerialLine.Match(line).Groups[1].Value;
    }
}

/// <summary>
/// An agent (its real SVID, over mTLS) calling the pool RPCs directly, as a compromised agent would: not opted in, more
/// than N, a report of a serial that is not one of its pooled SVIDs — each refused with its code, nothing recorded.
/// </summary>
public sealed class OutagePoolAgentApiTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(60);

    private static Writ.Protocol.Agent.SignPooledX509SvidsRequest Request(string entryId, int n)
    {
        var r = new Writ.Protocol.Agent.SignPooledX509SvidsRequest { EntryId = entryId };
        for (var i = 0; i < n; i++)
        {
            using var key = System.Security.Cryptography.ECDsa.Create(System.Security.Cryptography.ECCurve.NamedCurves.nistP256);
            r.Csrs.Add(Google.Protobuf.ByteString.CopyFrom(Writ.Spiffe.X509.Csr.Create(key)));
        }
        return r;
    }

    private static async Task<string> CodeOfAsync(Func<Task> call)
    {
        var e = await Assert.ThrowsAsync<Grpc.Core.RpcException>(call);
        return e.Status.Detail.Split(':')[0];
    }

    [Fact]
    public async Task An_agent_calling_the_pool_rpcs_directly_cannot_get_past_opt_in_the_bound_or_the_report_check()
    {
        using var dir = new TempDir();
        await using var server = await ServerProcess.StartAsync(dir["server"]);
        using var agent = await TestAgent.ConnectAsync(server);
        await agent.AttestAsync(await TestAgent.NewJoinTokenAsync(server));
        var policy = dir["policy"];
        Directory.CreateDirectory(policy);
        await File.WriteAllTextAsync(Path.Combine(policy, "default.cedar"), Writ.Server.Policy.WritPolicyCompiler.DefaultFiles[0].Text, TestContext.Current.CancellationToken);
        File.Copy(Path.Combine(Repo.Root, "docs", "examples", "policy", "writ", "outage-pool.cedar"), Path.Combine(policy, "outage-pool.cedar"));
        var push = await server.WritAsync("policy", "push", "--file", policy);
        Assert.True(push.ExitCode == 0, push.ToString());
        var version = Regex.Match(push.Stdout, @"pushed policy version (\d+)").Groups[1].Value;
        await server.Stderr.WaitForAsync(l => l.Contains($"Issuance policy version {version} active", StringComparison.Ordinal), Deadline, () => server.HasExited);
        var create = await server.WritAsync("entry", "create", "--spiffe-id", "spiffe://example.org/pooled/web", "--parent-id", agent.AgentId,
            "--selector", "unix:uid:0", "--output", "json");
        Assert.True(create.ExitCode == 0, create.ToString());
        var id = JsonDocument.Parse(create.Stdout).RootElement.GetProperty("id").GetString()!;

        // Not opted in: refused although a policy permits pooling for the path.
        Assert.Equal("WRIT-ISSUE-POOL-NOT-ENABLED", await CodeOfAsync(() => agent.Client.SignPooledX509SvidsAsync(Request(id, 1)).ResponseAsync));

        var update = await server.WritAsync("entry", "update", "--id", id, "--outage-pool", "1");
        Assert.True(update.ExitCode == 0, update.ToString());
        // More than N in one call, then one more after the pool is full.
        Assert.Equal("WRIT-ISSUE-POOL-FULL", await CodeOfAsync(() => agent.Client.SignPooledX509SvidsAsync(Request(id, 2)).ResponseAsync));
        var got = await agent.Client.SignPooledX509SvidsAsync(Request(id, 1));
        var serial = WorkloadClient.ParseCertificates(got.Svids[0].CertChain[0].Span)[0].SerialNumber;
        Assert.Equal("WRIT-ISSUE-POOL-FULL", await CodeOfAsync(() => agent.Client.SignPooledX509SvidsAsync(Request(id, 1)).ResponseAsync));

        // A report naming a serial that is not one of its pooled SVIDs (here together with a real one) writes nothing.
        var report = new Writ.Protocol.Agent.ReportPooledSvidUsedRequest();
        report.Uses.Add(new Writ.Protocol.Agent.PooledSvidUse { SerialHex = serial, EntryId = id, InstanceId = "1:1" });
        report.Uses.Add(new Writ.Protocol.Agent.PooledSvidUse { SerialHex = "0DEADBEEF0", EntryId = id, InstanceId = "2:2" });
        Assert.Equal("WRIT-ISSUE-POOL-UNKNOWN-SERIAL", await CodeOfAsync(() => agent.Client.ReportPooledSvidUsedAsync(report).ResponseAsync));
        var used = await server.WritAsync("audit", "list", "--output", "json", "--kind", "svid.pooled_used");
        Assert.Equal(0, JsonDocument.Parse(used.Stdout).RootElement.GetProperty("events").GetArrayLength());

        // Revoked, the pooled SVID no longer holds a slot: the agent may ask for a replacement.
        var revoke = await server.WritAsync("revoke", "--serial", serial, "--reason", "test");
        Assert.True(revoke.ExitCode == 0, revoke.ToString());
        Assert.Single((await agent.Client.SignPooledX509SvidsAsync(Request(id, 1))).Svids);
    }
}
