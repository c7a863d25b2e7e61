using Writ.Cli.Workload;
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

        // JWT-SVIDs are per workload instance (issue #6): the cache is seen from one process, this test host.
        using var client = rig.Client();
        async Task<string> InProcess(params string[] audience)
        {
            var r = await client.Client.FetchJWTSVIDAsync(new JWTSVIDRequest { Audience = { audience } }, WorkloadClient.Headers);
            return Assert.Single(r.Svids).Svid;
        }
        var a1 = await InProcess("https://a.example.org");
        var a2 = await InProcess("https://a.example.org");
        Assert.Equal(a1, a2);   // cached until half-life
        var b = await InProcess("https://b.example.org");
        Assert.NotEqual(a1, b);
        var both = await InProcess("https://b.example.org", "https://a.example.org");
        Assert.NotEqual(b, both);
        var validBoth = await rig.WorkloadAsync("jwt", "validate", "--audience", "https://a.example.org", "--token", both);
        Assert.True(validBoth.ExitCode == 0, validBoth.ToString());
        // Another process (another instance) gets its own token, never this one's.
        Assert.NotEqual(a1, await Jwt(rig, "--audience", "https://a.example.org"));

        await rig.Server.KillAsync();
        Assert.Equal(a1, await InProcess("https://a.example.org"));   // still valid: served from the cache
        var fresh = await rig.WorkloadAsync("jwt", "fetch", "--audience", "https://new.example.org");
        Expect.OneLineError(fresh, "unreachable");
        // Validation needs only the bundle the agent holds.
        var valid = await rig.WorkloadAsync("jwt", "validate", "--audience", "https://a.example.org", "--token", a1);
        Assert.True(valid.ExitCode == 0, valid.ToString());
    }

    [Fact]
    public async Task Svid_fetch_write_into_a_shared_directory_never_hands_the_key_to_another_user()
    {
        // The attacker (nobody) may write to the output directory and plants files where writ's temporary files will
        // be: the temp names used to be predictable (.svid.key.<pid>.tmp) and opened without O_EXCL, so writ wrote
        // the private key into the attacker's own file and renamed it to svid.key.
        await using var rig = await AgentRig.StartAsync();
        await rig.CreateEntryAsync("spiffe://example.org/shared-dir", ["unix:uid:0"]);
        await AgentTests.WaitForSvidAsync(rig);
        // A directory anyone may write to without the sticky bit is refused outright (files there can be swapped).
        var open = rig["open"];
        Directory.CreateDirectory(open);
        File.SetUnixFileMode(open, (UnixFileMode)0b111_111_111);
        var refused = await rig.WorkloadAsync("svid", "fetch", "--write", open);
        Expect.OneLineError(refused, open);
        Assert.Empty(Directory.EnumerateFileSystemEntries(open));

        // In a sticky world-writable directory (like /tmp) others cannot swap files, but they can plant them.
        var shared = rig["shared"];
        Directory.CreateDirectory(shared);
        File.SetUnixFileMode(shared, (UnixFileMode)0b111_111_111 | UnixFileMode.StickyBit);

        const int range = 5000;   // shell built-ins only: planting forks nothing
        var start = int.Parse((await File.ReadAllTextAsync("/proc/sys/kernel/ns_last_pid")).Trim(), System.Globalization.CultureInfo.InvariantCulture);
        var plant = await Proc.RunAsync("runuser", ["-u", "nobody", "--", "sh", "-c",
            $"umask 000; cd '{shared}' && i={start}; while [ $i -lt {start + range} ]; do for n in svid.key svid.pem bundle.pem; do : > .$n.$i.tmp; done; i=$((i+1)); done"],
            workingDir: "/", timeout: TimeSpan.FromSeconds(120));
        Assert.True(plant.ExitCode == 0, plant.ToString());
        var r = await rig.WorkloadAsync("svid", "fetch", "--write", shared);
        var end = int.Parse((await File.ReadAllTextAsync("/proc/sys/kernel/ns_last_pid")).Trim(), System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(end < start + range, $"the pids moved past the planted range ({start}..{start + range}, now {end}): the attack was not tried");

        Assert.True(r.ExitCode == 0, r.ToString());
        var key = Path.Combine(shared, "svid.key");
        var owner = await Proc.RunAsync("stat", ["-c", "%u %a", key]);
        Assert.Equal("0 600", owner.Stdout.Trim());
        // No planted file received key material.
        foreach (var f in Directory.EnumerateFiles(shared, ".*.tmp"))
        {
            Assert.DoesNotContain("PRIVATE KEY", await File.ReadAllTextAsync(f), StringComparison.Ordinal);
        }
        var steal = await Proc.RunAsync("runuser", ["-u", "nobody", "--", "sh", "-c", $"chmod 644 '{key}'; cat '{key}'"], workingDir: "/");
        Assert.DoesNotContain("PRIVATE KEY", steal.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Jwt_validate_refuses_forged_tampered_and_foreign_tokens()
    {
        await using var rig = await AgentRig.StartAsync();
        await rig.CreateEntryAsync("spiffe://example.org/validator", ["unix:uid:0"]);
        await AgentTests.WaitForSvidAsync(rig);
        const string aud = "https://api.example.org";
        var token = await Jwt(rig, "--audience", aud);
        var parts = token.Split('.');

        static string B64(string json) => Convert.ToBase64String(System.Text.Encoding.UTF8.GetBytes(json)).TrimEnd('=').Replace('+', '-').Replace('/', '_');
        static string Json(string b64)
        {
            var s = b64.Replace('-', '+').Replace('_', '/');
            return System.Text.Encoding.UTF8.GetString(Convert.FromBase64String(s.PadRight(s.Length + ((4 - (s.Length % 4)) % 4), '=')));
        }
        var payload = Json(parts[1]);
        var forgedNone = $"{B64("{\"alg\":\"none\",\"typ\":\"JWT\"}")}.{parts[1]}.";
        var tampered = $"{parts[0]}.{B64(payload.Replace("validator", "admin", StringComparison.Ordinal))}.{parts[2]}";
        var hs256 = $"{B64("{\"alg\":\"HS256\",\"typ\":\"JWT\"}")}.{parts[1]}.{parts[2]}";
        foreach (var bad in new[] { forgedNone, tampered, hs256, "not-a-jwt" })
        {
            var r = await rig.WorkloadAsync("jwt", "validate", "--audience", aud, "--token", bad);
            Expect.OneLineError(r, "not valid");
        }
        // A token signed by another Writ server (same trust domain name, different keys) is foreign.
        using var other = new TempDir();
        await using var otherServer = await ServerProcess.StartAsync(other["s"]);
        var foreign = await otherServer.WritAsync("jwt", "mint", "--spiffe-id", "spiffe://example.org/validator", "--audience", aud);
        Assert.True(foreign.ExitCode == 0, foreign.ToString());
        Expect.OneLineError(await rig.WorkloadAsync("jwt", "validate", "--audience", aud, "--token", foreign.Stdout.Trim()), "not valid");
        // The genuine one still validates (the check can pass).
        var ok = await rig.WorkloadAsync("jwt", "validate", "--audience", aud, "--token", token);
        Assert.True(ok.ExitCode == 0, ok.ToString());
    }

    private static async Task<string> Jwt(AgentRig rig, params string[] args)
    {
        var r = await rig.WorkloadAsync(["jwt", "fetch", .. args]);
        Assert.True(r.ExitCode == 0, r.ToString());
        return r.Stdout.Trim();
    }
}
