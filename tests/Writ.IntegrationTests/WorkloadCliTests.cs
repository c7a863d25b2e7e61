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

        // A sticky world-writable directory (like /tmp) is refused as well: others could plant files there.
        var shared = rig["shared"];
        Directory.CreateDirectory(shared);
        File.SetUnixFileMode(shared, (UnixFileMode)0b111_111_111 | UnixFileMode.StickyBit);
        Expect.OneLineError(await rig.WorkloadAsync("svid", "fetch", "--write", shared), shared);
        Assert.Empty(Directory.EnumerateFileSystemEntries(shared));
    }

    [Fact]
    public async Task The_file_writer_never_writes_through_files_planted_under_its_temporary_names()
    {
        // Below the directory checks, the writer itself: the temp names used to be predictable (.svid.key.<pid>.tmp)
        // and opened without O_EXCL, so a file planted by another user (nobody) received the private key. Planted here
        // under this process's pid, in a sticky world-writable directory only the writer (not the CLI) would accept.
        using var dir = new TempDir();
        File.SetUnixFileMode(dir.Path, (UnixFileMode)0b111_101_101);   // nobody must reach the shared directory
        var shared = dir["shared"];
        Directory.CreateDirectory(shared);
        File.SetUnixFileMode(shared, (UnixFileMode)0b111_111_111 | UnixFileMode.StickyBit);
        var pid = Environment.ProcessId;
        var plant = await Proc.RunAsync("runuser", ["-u", "nobody", "--", "sh", "-c",
            $"umask 000; cd '{shared}' && for n in svid.key svid.pem bundle.pem; do : > .$n.{pid}.tmp; ln -s /tmp/stolen-$n .$n.tmp; done"], workingDir: "/");
        Assert.True(plant.ExitCode == 0, plant.ToString());
        Writ.Cli.CommandLine.Output.WriteFilesAtomically(shared, [("svid.key", "-----BEGIN PRIVATE KEY-----\nAAAA\n", Writ.Cli.CommandLine.Output.SecretFile)]);
        var owner = await Proc.RunAsync("stat", ["-c", "%u %a", Path.Combine(shared, "svid.key")]);
        Assert.Equal("0 600", owner.Stdout.Trim());
        foreach (var f in Directory.EnumerateFiles(shared, ".*.tmp").Where(f => new FileInfo(f).LinkTarget is null))
        {
            Assert.DoesNotContain("PRIVATE KEY", await File.ReadAllTextAsync(f), StringComparison.Ordinal);
        }
        Assert.False(File.Exists("/tmp/stolen-svid.key"));   // nothing written through the planted symlinks
    }

    [Fact]
    public async Task Write_into_a_place_that_cannot_be_written_is_one_line_and_exit_1_not_an_abort()
    {
        await using var rig = await AgentRig.StartAsync();
        await rig.CreateEntryAsync("spiffe://example.org/unwritable", ["unix:uid:0"]);
        await rig.CreateEntryAsync("spiffe://example.org/unwritable/nobody", ["unix:uid:65534"]);
        await AgentTests.WaitForSvidAsync(rig);
        var file = rig["a-file"];
        await File.WriteAllTextAsync(file, "x");

        // A path through a regular file, a place the kernel refuses to create anything in: exit 1, one line (they
        // were unhandled exceptions: a stack trace and SIGABRT, exit 134).
        foreach (var bad in new[] { Path.Combine(file, "sub"), "/proc/writ-cannot-be-here" })
        {
            var fetched = await rig.WorkloadAsync("svid", "fetch", "--write", bad);
            Assert.Equal(1, fetched.ExitCode);
            Expect.OneLineError(fetched, bad);
            var watched = await rig.WorkloadAsync("svid", "watch", "--write", bad);
            Assert.Equal(1, watched.ExitCode);
            Expect.OneLineError(watched, bad);
            var minted = await rig.Server.WritAsync("x509", "mint", "--spiffe-id", "spiffe://example.org/minted", "--write", bad);
            Assert.Equal(1, minted.ExitCode);
            Expect.OneLineError(minted, bad);
        }

        // A directory root owns and nobody may not write to (0755), fetched into as nobody: permission denied, one line.
        var rootOwned = rig["root-owned"];
        Directory.CreateDirectory(rootOwned);
        File.SetUnixFileMode(rootOwned, (UnixFileMode)0b111_101_101);
        var asNobody = await Proc.RunAsync("runuser", ["-u", "nobody", "--", "dotnet", Repo.WritDll, "svid", "fetch", "--write", rootOwned, "--socket", rig.Agent.SocketPath], workingDir: "/");
        Assert.Equal(1, asNobody.ExitCode);
        Expect.OneLineError(asNobody, "permission denied");
        Assert.Empty(Directory.EnumerateFileSystemEntries(rootOwned));
    }

    [Fact]
    public async Task A_policy_denial_names_the_decision_not_the_registration_entries()
    {
        await using var rig = await AgentRig.StartAsync();
        await rig.CreateEntryAsync("spiffe://example.org/frozen/worker", ["unix:uid:0"]);
        await AgentTests.WaitForSvidAsync(rig);
        await PipelineAgentTests.PushForbidAsync(rig, "freeze", "/frozen/*");

        var denied = await rig.WorkloadAsync("svid", "fetch");
        Expect.OneLineError(denied, "denied by policy 'freeze'");
        Assert.DoesNotContain("registration entry", denied.Stderr, StringComparison.Ordinal);
        Assert.Matches(@"see 'writ explain d-[0-9a-f]{20}'\)\s*$", denied.Stderr);

        // With no matching entry at all, the hint about entries is the right one.
        var nobody = await Proc.RunAsync("runuser", ["-u", "nobody", "--", "dotnet", Repo.WritDll, "svid", "fetch", "--socket", rig.Agent.SocketPath], workingDir: "/");
        Expect.OneLineError(nobody, "check that a registration entry matches its selectors");
    }

    [Fact]
    public async Task Admin_commands_pointed_at_the_workload_api_socket_say_so_and_agent_list_shows_the_serial()
    {
        await using var rig = await AgentRig.StartAsync();
        var wrong = await Proc.WritAsync("entry", "list", "--admin-socket", rig.Agent.SocketPath);
        Expect.OneLineError(wrong, "does not serve the Writ admin API");
        Assert.DoesNotContain("unimplemented", wrong.Stderr, StringComparison.OrdinalIgnoreCase);

        var shown = await rig.Server.WritAsync("agent", "show", rig.Agent.AgentId, "--output", "json");
        Assert.True(shown.ExitCode == 0, shown.ToString());
        using var doc = WorkloadTools.Json(shown);
        var serial = doc.RootElement.GetProperty("serial_number").GetString();
        Assert.False(string.IsNullOrEmpty(serial));
        var listed = await rig.Server.WritAsync("agent", "list");
        Assert.True(listed.ExitCode == 0, listed.ToString());
        var lines = listed.Stdout.Split('\n');
        Assert.Contains("SVID SERIAL", lines[0], StringComparison.Ordinal);
        Assert.Contains(lines, l => l.Contains(rig.Agent.AgentId, StringComparison.Ordinal) && l.Contains(serial!, StringComparison.Ordinal));
    }

    [Fact]
    public async Task Jwt_validate_refuses_forged_tampered_and_foreign_tokens()
    {
        await using var rig = await AgentRig.StartAsync();
        await rig.CreateEntryAsync("spiffe://example.org/validator", ["unix:uid:0"]);
        await AgentTests.WaitForSvidAsync(rig);
        const string aud = "https://api.example.org";
        // The genuine token's holder runs until the end of the test (its tokens are revoked when it exits).
        await using var holder = await HeldWorkload.JwtAsync(rig, "--audience", aud);
        var token = holder.Output;
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

    [Fact]
    public async Task Svid_watch_write_keeps_the_files_current_while_it_runs_and_they_are_revoked_when_it_is_killed()
    {
        await using var rig = await AgentRig.StartAsync();
        await rig.CreateEntryAsync("spiffe://example.org/watch-write", ["unix:uid:0"]);
        await AgentTests.WaitForSvidAsync(rig);
        var dir = rig["files"];
        var cert = Path.Combine(dir, "svid.pem");
        var key = Path.Combine(dir, "svid.key");
        var deadline = TimeSpan.FromSeconds(30);

        // The watcher is the workload instance: it writes the files and keeps them valid while it runs.
        await using var watch = BackgroundProcess.Writ("svid", "watch", "--write", dir, "--socket", rig.Agent.SocketPath);
        await watch.Stdout.WaitForAsync(l => l.Contains("1 SVID(s), written to", StringComparison.Ordinal), deadline, () => watch.HasExited);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(key));
        Assert.DoesNotContain(Directory.GetFiles(dir), f => f.EndsWith(".tmp", StringComparison.Ordinal));
        await AgentTests.AssertOpensslVerifiesAsync(Path.Combine(dir, "bundle.pem"), cert);
        await AgentTests.AssertKeyMatchesAsync(cert, key);
        var firstSerial = LeafSerial(cert);
        Assert.Contains(firstSerial, watch.Stdout.Text, StringComparison.Ordinal);

        // An update on the stream is written at once: here the operator revokes the current SVID, and the agent signs a
        // fresh one for the still-entitled instance (the same path a rotation takes).
        var revoked = await rig.Server.WritAsync("revoke", "--serial", firstSerial);
        Assert.True(revoked.ExitCode == 0, revoked.ToString());
        var secondSerial = await WorkloadTools.EventuallyAsync(() => LeafSerial(cert) is var s && s != firstSerial
            ? Task.FromResult(s) : throw new InvalidOperationException("svid.pem still holds the revoked SVID"), deadline, "the watcher rewriting svid.pem");
        await watch.Stdout.WaitForAsync(l => l.Contains(secondSerial, StringComparison.Ordinal), deadline, () => watch.HasExited);
        await AgentTests.AssertKeyMatchesAsync(cert, key);
        Assert.DoesNotContain(secondSerial, await CrlSerialsAsync(rig));

        // A second identity gets svid.1.*; when it goes (entry deleted), its files go too and no stale key is left.
        var extra = await rig.CreateEntryAsync("spiffe://example.org/watch-write/extra", ["unix:uid:0"]);
        var extraCert = Path.Combine(dir, "svid.1.pem");
        await watch.Stdout.WaitForAsync(l => l.Contains("2 SVID(s), written to", StringComparison.Ordinal), deadline, () => watch.HasExited);
        Assert.True(File.Exists(extraCert) && File.Exists(Path.Combine(dir, "bundle.1.pem")), string.Join(", ", Directory.GetFiles(dir)));
        await AgentTests.AssertKeyMatchesAsync(extraCert, Path.Combine(dir, "svid.1.key"));
        await rig.DeleteEntryAsync(extra);
        await WorkloadTools.EventuallyAsync(() => File.Exists(extraCert) || File.Exists(Path.Combine(dir, "svid.1.key"))
            ? throw new InvalidOperationException("svid.1.* still there") : Task.FromResult(true), deadline, "the watcher removing the deleted identity's files");
        Assert.DoesNotContain(Directory.GetFiles(dir), f => f.Contains(".1.", StringComparison.Ordinal));
        Assert.Contains("URI:spiffe://example.org/watch-write\n", (await Proc.RunAsync("openssl", ["x509", "-noout", "-ext", "subjectAltName", "-in", cert])).Stdout.Replace("\r", "", StringComparison.Ordinal) + "\n", StringComparison.Ordinal);
        await AgentTests.AssertKeyMatchesAsync(cert, key);
        var lastSerial = LeafSerial(cert);
        Assert.False(watch.HasExited);

        // The watcher is killed: the instance is gone, so the SVID in the files is revoked and listed in the CRL.
        watch.Kill();
        await WorkloadTools.EventuallyAsync(async () => (await CrlSerialsAsync(rig)).Contains(lastSerial)
            ? true : throw new InvalidOperationException($"serial {lastSerial} is not in the CRL yet"), TimeSpan.FromSeconds(15), "the killed watcher's serial reaching the CRL");
    }

    [Fact]
    public async Task Jwt_fetch_hold_keeps_the_token_valid_until_stdin_closes_or_sigterm_and_without_it_the_token_dies_with_the_command()
    {
        await using var rig = await AgentRig.StartAsync();
        await rig.CreateEntryAsync("spiffe://example.org/held", ["unix:uid:0"]);
        await AgentTests.WaitForSvidAsync(rig);
        const string aud = "https://held.example.org";
        var revokedWithin = TimeSpan.FromSeconds(15);

        await using (var held = await HeldWorkload.JwtAsync(rig, "--audience", aud))
        {
            var valid = await rig.WorkloadAsync("jwt", "validate", "--audience", aud, "--token", held.Output);
            Assert.True(valid.ExitCode == 0, valid.ToString());
            Assert.Contains("spiffe://example.org/held", valid.Stdout, StringComparison.Ordinal);
            Assert.False(held.Process.HasExited);
            await held.ReleaseAsync();   // stdin closed: exits 0
            await HeldWorkload.WaitUntilRevokedAsync(rig, aud, held.Output, revokedWithin);
        }

        // SIGTERM ends a hold as well (exit 0), and that instance's token is revoked too.
        await using (var held = await HeldWorkload.JwtAsync(rig, "--audience", aud))
        {
            var valid = await rig.WorkloadAsync("jwt", "validate", "--audience", aud, "--token", held.Output);
            Assert.True(valid.ExitCode == 0, valid.ToString());
            var term = await Proc.RunAsync("kill", ["-TERM", held.Process.Pid.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
            Assert.True(term.ExitCode == 0, term.ToString());
            Assert.Equal(0, await held.Process.WaitForExitAsync(TimeSpan.FromSeconds(30)));
            await HeldWorkload.WaitUntilRevokedAsync(rig, aud, held.Output, revokedWithin);
        }

        // Without --hold the command is a short-lived instance of its own: its token is revoked once it has exited.
        var once = await Jwt(rig, "--audience", aud);
        await HeldWorkload.WaitUntilRevokedAsync(rig, aud, once, revokedWithin);
    }

    private static string LeafSerial(string pemFile)
    {
        using var leaf = System.Security.Cryptography.X509Certificates.X509Certificate2.CreateFromPem(File.ReadAllText(pemFile));
        return leaf.SerialNumber;
    }

    /// <summary>The serials in `writ bundle show --format crl`, as a relying party would fetch it.</summary>
    private static async Task<HashSet<string>> CrlSerialsAsync(AgentRig rig)
    {
        var r = await rig.Server.WritAsync("bundle", "show", "--format", "crl");
        Assert.True(r.ExitCode == 0, r.ToString());
        var pem = System.Security.Cryptography.PemEncoding.Find(r.Stdout);
        Assert.Equal("X509 CRL", r.Stdout[pem.Label]);
        return RevocationAgentTests.ReadSerials(Convert.FromBase64String(r.Stdout[pem.Base64Data]));
    }

    private static async Task<string> Jwt(AgentRig rig, params string[] args)
    {
        var r = await rig.WorkloadAsync(["jwt", "fetch", .. args]);
        Assert.True(r.ExitCode == 0, r.ToString());
        return r.Stdout.Trim();
    }
}
