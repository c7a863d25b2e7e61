using Writ.IntegrationTests.Harness;

namespace Writ.IntegrationTests;

/// <summary>The workload-side CLI against a real agent, as an operator and a workload would use it.</summary>
public sealed class WorkloadCliTests
{
    [Fact]
    public async Task Svid_watch_prints_each_update_and_a_one_line_error_when_the_identity_goes()
    {
        await using var rig = await AgentRig.StartAsync();
        var first = await rig.CreateEntryAsync("spiffe://example.org/watched/one", ["unix:uid:0"]);
        await AgentTests.WaitForSvidAsync(rig);

        await using var watch = BackgroundProcess.Writ("svid", "watch", "--socket", rig.Agent.SocketPath);
        var deadline = TimeSpan.FromSeconds(30);
        await watch.Stdout.WaitForAsync(l => l.Contains("1 SVID(s)", StringComparison.Ordinal), deadline, () => watch.HasExited);
        await watch.Stdout.WaitForAsync(l => l.Contains("spiffe://example.org/watched/one", StringComparison.Ordinal), deadline, () => watch.HasExited);

        var second = await rig.CreateEntryAsync("spiffe://example.org/watched/two", ["unix:uid:0"]);
        await watch.Stdout.WaitForAsync(l => l.Contains("2 SVID(s)", StringComparison.Ordinal), deadline, () => watch.HasExited);
        await watch.Stdout.WaitForAsync(l => l.Contains("spiffe://example.org/watched/two", StringComparison.Ordinal), deadline, () => watch.HasExited);

        await rig.DeleteEntryAsync(first);
        await rig.DeleteEntryAsync(second);
        var code = await watch.WaitForExitAsync(deadline);
        Expect.OneLineError(new ProcResult(code, watch.Stdout.Text, watch.Stderr.Text), "no identity");
    }

    [Fact]
    public async Task Jwt_svids_are_cached_per_audience_and_served_from_cache_while_the_server_is_down()
    {
        await using var rig = await AgentRig.StartAsync();
        await rig.CreateEntryAsync("spiffe://example.org/jwt-cache", ["unix:uid:0"]);
        await AgentTests.WaitForSvidAsync(rig);

        var a1 = await Jwt(rig, "--audience", "https://a.example.org");
        var a2 = await Jwt(rig, "--audience", "https://a.example.org");
        Assert.Equal(a1, a2);   // cached until half-life
        var b = await Jwt(rig, "--audience", "https://b.example.org");
        Assert.NotEqual(a1, b);
        var both = await Jwt(rig, "--audience", "https://b.example.org", "--audience", "https://a.example.org");
        Assert.NotEqual(b, both);
        var validBoth = await rig.WorkloadAsync("jwt", "validate", "--audience", "https://a.example.org", "--token", both);
        Assert.True(validBoth.ExitCode == 0, validBoth.ToString());

        await rig.Server.KillAsync();
        Assert.Equal(a1, await Jwt(rig, "--audience", "https://a.example.org"));   // still valid: served from the cache
        var fresh = await rig.WorkloadAsync("jwt", "fetch", "--audience", "https://new.example.org");
        Expect.OneLineError(fresh, "unreachable");
        // Validation needs only the bundle the agent holds.
        var valid = await rig.WorkloadAsync("jwt", "validate", "--audience", "https://a.example.org", "--token", a1);
        Assert.True(valid.ExitCode == 0, valid.ToString());
    }

    private static async Task<string> Jwt(AgentRig rig, params string[] args)
    {
        var r = await rig.WorkloadAsync(["jwt", "fetch", .. args]);
        Assert.True(r.ExitCode == 0, r.ToString());
        return r.Stdout.Trim();
    }
}
