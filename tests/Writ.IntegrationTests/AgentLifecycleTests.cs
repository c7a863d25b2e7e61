using System.Security.Cryptography.X509Certificates;
using Grpc.Core;
using Writ.Cli.Workload;
using Writ.IntegrationTests.Harness;

namespace Writ.IntegrationTests;

/// <summary>An agent across failures: the server dying and returning, the agent restarting, bans and evictions.</summary>
public sealed class AgentLifecycleTests
{
    [Fact]
    public async Task Server_killed_the_agent_serves_cached_svids_until_expiry_and_recovers_when_it_returns()
    {
        await using var rig = await AgentRig.StartAsync();
        await rig.CreateEntryAsync("spiffe://example.org/outage", ["unix:uid:0"], "--x509-ttl", "20s");
        await AgentTests.WaitForSvidAsync(rig);

        await rig.Server.KillAsync();
        // SVIDs are per workload instance (issue #6): a new process, after the server died, has none cached and is
        // told to retry (Unavailable), never that it has no identity; this test host, which got its own before, is
        // served from the cache below.
        var fetched = await rig.WorkloadAsync("svid", "fetch");
        Expect.OneLineError(fetched, "retry");
        Assert.DoesNotContain("no identity", fetched.Stderr, StringComparison.Ordinal);

        // Until its expiry every fetch gets a still-valid SVID; after it, none (an expired SVID is never served).
        using var client = rig.Client();
        var servedUntil = DateTime.MinValue;
        var refusedAt = await WorkloadTools.EventuallyAsync(async () =>
        {
            X509SVIDResponse r;
            try
            {
                r = await FetchAsync(client);
            }
            catch (RpcException e)
            {
                return (DateTime.UtcNow, e);
            }
            var leaf = WorkloadClient.ParseCertificates(r.Svids[0].X509Svid.Span)[0];
            var now = DateTime.UtcNow;
            Assert.True(leaf.NotAfter.ToUniversalTime() > now, $"an expired SVID was served at {now:O}: NotAfter {leaf.NotAfter.ToUniversalTime():O}");
            servedUntil = leaf.NotAfter.ToUniversalTime();
            throw new InvalidOperationException($"still served at {now:O} (expires {servedUntil:O})");
        }, TimeSpan.FromSeconds(45), "the cached SVID expiring");
        Assert.True(servedUntil > DateTime.MinValue, "the cached SVID was never served while the server was down");
        Assert.True(refusedAt.Item1 >= servedUntil.AddSeconds(-1), $"refused at {refusedAt.Item1:O}, before the SVID's expiry {servedUntil:O}");
        Assert.Equal(StatusCode.Unavailable, refusedAt.Item2.StatusCode);
        Assert.False(rig.Agent.HasExited, "a server outage must not stop the agent:\n" + rig.Agent.Stderr.Text);

        // The server returns on the same data dir: the agent reconnects, serves again and receives new entries.
        await rig.RestartServerAsync();
        await rig.CreateEntryAsync("spiffe://example.org/after-outage", ["unix:uid:0"]);
        var recovered = await WorkloadTools.EventuallyAsync(async () =>
        {
            var r = await FetchAsync(client);
            return r.Svids.Count == 2 ? r : throw new InvalidOperationException($"{r.Svids.Count} SVID(s)");
        }, TimeSpan.FromSeconds(60), "the agent recovering after the server's return");
        Assert.Equal(["spiffe://example.org/after-outage", "spiffe://example.org/outage"],
            recovered.Svids.Select(s => s.SpiffeId).Order(StringComparer.Ordinal).ToList());
    }

    [Fact]
    public async Task Agent_restarted_while_the_server_is_down_says_unavailable_not_denied_and_serves_when_it_returns()
    {
        await using var rig = await AgentRig.StartAsync();
        await rig.CreateEntryAsync("spiffe://example.org/cold-start", ["unix:uid:0"]);
        await AgentTests.WaitForSvidAsync(rig);

        await rig.Server.KillAsync();
        await rig.Agent.KillAsync();
        rig.Agent.JoinToken = null;
        await rig.Agent.StartAsync();   // resumes from disk without the server

        // It does not know its entries yet: that is "try again", not "you have no identity".
        var r = await rig.WorkloadAsync("svid", "fetch");
        Expect.OneLineError(r, "not synced");
        Assert.DoesNotContain("no identity", r.Stderr, StringComparison.Ordinal);
        using var client = rig.Client();
        using var call = client.Client.FetchX509SVID(new X509SVIDRequest(), WorkloadClient.Headers);
        var e = await Assert.ThrowsAsync<RpcException>(async () => await call.ResponseStream.MoveNext(CancellationToken.None));
        Assert.Equal(StatusCode.Unavailable, e.StatusCode);

        await rig.RestartServerAsync();
        await WorkloadTools.EventuallyAsync(() => FetchAsync(client), TimeSpan.FromSeconds(60), "the agent serving after the server's return");
    }

    [Fact]
    public async Task Agent_restart_needs_no_new_token_and_the_used_token_is_worthless()
    {
        await using var rig = await AgentRig.StartAsync();
        await rig.CreateEntryAsync("spiffe://example.org/restart", ["unix:uid:0"]);
        await AgentTests.WaitForSvidAsync(rig);
        var agentId = rig.Agent.AgentId;
        var token = rig.Agent.JoinToken!;
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(rig.Agent.DataDir, "agent-svid.key")));

        await rig.Agent.KillAsync();   // a crash: the socket file is left behind
        Assert.True(File.Exists(rig.Agent.SocketPath));
        rig.Agent.JoinToken = null;
        await rig.Agent.StartAsync();
        Assert.Equal(agentId, rig.Agent.AgentId);
        Assert.Contains("resumed", rig.Agent.Stderr.Text, StringComparison.Ordinal);
        var r = await rig.WorkloadAsync("svid", "fetch");
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Contains("spiffe://example.org/restart", r.Stdout, StringComparison.Ordinal);

        // An attacker who finds the used token in a script cannot start an agent of their own with it.
        await using var thief = new AgentProcess(rig.Relay.Address, rig["thief"], rig["pub/thief.sock"], rig.BundlePem, token);
        thief.Launch();
        Assert.NotEqual(0, await thief.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        AssertFatalLine(thief, "join token");
        Assert.DoesNotContain("ready", thief.Stdout.Text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Agent_svid_is_renewed_before_half_life_and_survives_restarts_at_the_shortest_ttl()
    {
        await using var rig = await AgentRig.StartAsync(serverArgs: ["--agent-ttl", "30s"]);
        var svidFile = Path.Combine(rig.Agent.DataDir, "agent-svid.pem");
        var first = X509CertificateLoader.LoadCertificateFromFile(svidFile);
        var halfLife = first.NotBefore.ToUniversalTime() + ((first.NotAfter - first.NotBefore) / 2);

        // Renewed on disk before the half-life of the first SVID.
        var renewed = await WorkloadTools.EventuallyAsync(() =>
        {
            var now = DateTime.UtcNow;
            var c = X509CertificateLoader.LoadCertificateFromFile(svidFile);
            return Task.FromResult(c.SerialNumber != first.SerialNumber ? (c, now) : throw new InvalidOperationException("not renewed yet"));
        }, TimeSpan.FromSeconds(40), "the agent SVID being renewed");
        TestContext.Current.SendDiagnosticMessage($"agent SVID (30 s TTL) renewed {(halfLife - renewed.now).TotalMilliseconds:F0} ms before half-life");
        Assert.True(renewed.now < halfLife, $"renewed at {renewed.now:O}, after half-life {halfLife:O}");
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(rig.Agent.DataDir, "agent-svid.key")));

        // Sync and signing keep working over the renewed identity's new connection.
        await rig.CreateEntryAsync("spiffe://example.org/after-renewal", ["unix:uid:0"]);
        await AgentTests.WaitForSvidAsync(rig);

        // A restart with the stored (short-lived) SVID needs no token, whatever is left of its 30 s.
        var agentId = rig.Agent.AgentId;
        await rig.Agent.KillAsync();
        rig.Agent.JoinToken = null;
        await rig.Agent.StartAsync();
        Assert.Equal(agentId, rig.Agent.AgentId);
        var r = await rig.WorkloadAsync("svid", "fetch");
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.False(rig.Agent.HasExited);
    }

    [Fact]
    public async Task Banned_agent_exits_naming_the_ban_and_cannot_come_back()
    {
        await using var rig = await AgentRig.StartAsync();
        await rig.CreateEntryAsync("spiffe://example.org/ban", ["unix:uid:0"]);
        await AgentTests.WaitForSvidAsync(rig);

        var ban = await rig.Server.WritAsync("agent", "ban", rig.Agent.AgentId);
        Assert.True(ban.ExitCode == 0, ban.ToString());
        var code = await rig.Agent.WaitForExitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(3, code);   // docs/cli.md: exit code 3 when the server bans or evicts the agent
        AssertFatalLine(rig.Agent, "banned");
        // It no longer serves: nothing listens on the socket.
        Expect.OneLineError(await rig.WorkloadAsync("svid", "fetch"), rig.Agent.SocketPath);

        // Restarted with its stored SVID, it is refused again at once.
        rig.Agent.JoinToken = null;
        rig.Agent.Launch();
        Assert.Equal(3, await rig.Agent.WaitForExitAsync(TimeSpan.FromSeconds(30)));   // the same exit as while running (was 1)
        AssertFatalLine(rig.Agent, "banned");
        Assert.DoesNotContain("ready", rig.Agent.Stdout.Text, StringComparison.Ordinal);   // never claimed to serve
    }

    [Fact]
    public async Task Evicted_agent_exits_saying_to_attest_again()
    {
        await using var rig = await AgentRig.StartAsync();
        await rig.CreateEntryAsync("spiffe://example.org/evict", ["unix:uid:0"]);
        await AgentTests.WaitForSvidAsync(rig);

        var evict = await rig.Server.WritAsync("agent", "evict", rig.Agent.AgentId);
        Assert.True(evict.ExitCode == 0, evict.ToString());
        var code = await rig.Agent.WaitForExitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(3, code);
        AssertFatalLine(rig.Agent, "attest again");

        // With a new join token it attests again, as a new agent.
        var oldId = rig.Agent.AgentId;
        rig.Agent.JoinToken = await TestAgent.NewJoinTokenAsync(rig.Server);
        await rig.Agent.StartAsync();
        Assert.NotEqual(oldId, rig.Agent.AgentId);
    }

    [Fact]
    public async Task An_agent_evicted_while_it_was_stopped_exits_3_when_started_again()
    {
        await using var rig = await AgentRig.StartAsync();
        await rig.Agent.KillAsync();   // down: it never hears of the eviction and keeps its SVID on disk
        var evict = await rig.Server.WritAsync("agent", "evict", rig.Agent.AgentId);
        Assert.True(evict.ExitCode == 0, evict.ToString());

        rig.Agent.JoinToken = null;
        rig.Agent.Launch();
        Assert.Equal(3, await rig.Agent.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        AssertFatalLine(rig.Agent, "attest again");
        Assert.DoesNotContain("ready", rig.Agent.Stdout.Text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Sigterm_stops_the_agent_which_ends_its_open_streams_itself()
    {
        await using var rig = await AgentRig.StartAsync();
        await rig.CreateEntryAsync("spiffe://example.org/sigterm", ["unix:uid:0"]);
        await AgentTests.WaitForSvidAsync(rig);
        using var client = rig.Client();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        using var call = client.Client.FetchX509SVID(new X509SVIDRequest(), WorkloadClient.Headers, cancellationToken: cts.Token);
        Assert.True(await call.ResponseStream.MoveNext(cts.Token));

        var term = await Proc.RunAsync("kill", ["-TERM", rig.Agent.Pid.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
        Assert.Equal(0, term.ExitCode);
        var code = await rig.Agent.WaitForExitAsync(TimeSpan.FromSeconds(60));
        Assert.Equal(0, code);
        // The open stream was ended by the stopping agent itself (not cut when the host's 30 s shutdown timeout ran out,
        // and not left hanging on a dead agent): its status says so.
        var ended = await Assert.ThrowsAsync<RpcException>(async () => await call.ResponseStream.MoveNext(cts.Token));
        Assert.Equal(StatusCode.Unavailable, ended.StatusCode);
        Assert.Contains("the agent is shutting down", ended.Status.Detail, StringComparison.Ordinal);
    }

    private static async Task<X509SVIDResponse> FetchAsync(WorkloadClient client)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        using var call = client.Client.FetchX509SVID(new X509SVIDRequest(), WorkloadClient.Headers, cancellationToken: cts.Token);
        Assert.True(await call.ResponseStream.MoveNext(cts.Token));
        return call.ResponseStream.Current;
    }

    /// <summary>The agent's last words: one `error:` line naming the reason, no stack trace.</summary>
    private static void AssertFatalLine(AgentProcess agent, string expected)
    {
        var lines = agent.Stderr.Text.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length > 0, "the agent said nothing");
        Assert.StartsWith("error: ", lines[^1], StringComparison.Ordinal);
        Assert.Contains(expected, lines[^1], StringComparison.Ordinal);
        Assert.Single(lines, l => l.StartsWith("error: ", StringComparison.Ordinal));
        Assert.DoesNotContain("   at ", agent.Stderr.Text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_second_agent_on_the_same_data_dir_is_refused_in_one_line_and_the_first_keeps_serving()
    {
        await using var rig = await AgentRig.StartAsync();
        await rig.CreateEntryAsync("spiffe://example.org/first-agent", ["unix:uid:0"]);
        await AgentTests.WaitForSvidAsync(rig);

        // Another socket, so only the data dir (its SVID, key and state) is shared.
        var second = await Proc.WritAsync("agent", "run", "--server", rig.Relay.Address, "--data-dir", rig.Agent.DataDir,
            "--socket", rig["second.sock"]);
        Expect.OneLineError(second, "WRIT-AGENT-DATA-DIR-IN-USE");
        Assert.Equal(1, second.ExitCode);
        Assert.False(File.Exists(rig["second.sock"]));

        Assert.False(rig.Agent.HasExited, rig.Agent.Stderr.Text);
        using var client = rig.Client();
        Assert.NotEmpty((await client.FetchX509Async(CancellationToken.None)).Svids);
    }

    [Fact]
    public async Task An_old_agent_exiting_leaves_a_newer_workload_socket_in_place()
    {
        await using var rig = await AgentRig.StartAsync();
        File.Delete(rig.Agent.SocketPath);
        using var newer = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified);
        newer.Bind(new System.Net.Sockets.UnixDomainSocketEndPoint(rig.Agent.SocketPath));
        newer.Listen();

        rig.Agent.Terminate();
        Assert.Equal(0, await rig.Agent.WaitForExitAsync(TimeSpan.FromSeconds(15)));
        Assert.True(File.Exists(rig.Agent.SocketPath), "the old agent deleted the newer agent's Workload API socket");
    }
}
