using System.Globalization;
using Writ.IntegrationTests.Harness;

namespace Writ.IntegrationTests.RelyingParties;

/// <summary>
/// `writ svid watch --write DIR --crl --on-change CMD` against a real agent: crl.pem beside the SVID (what `openssl
/// verify -crl_check` needs), the command run once per update after every file of it is in place and never twice at once,
/// a CRL-only change (someone else revoked) being an update, and failures of the command or the directory.
/// </summary>
public sealed class SvidWatchTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task Crl_pem_is_kept_beside_the_svid_and_the_command_runs_once_per_update_after_its_files_never_concurrently()
    {
        await using var rig = await AgentRig.StartAsync();
        await rig.CreateEntryAsync("spiffe://example.org/watched-crl", ["unix:uid:0"]);
        await AgentTests.WaitForSvidAsync(rig);
        var dir = rig["files"];
        var runs = rig["runs.log"];
        // The command checks what it is given, as a reload would use it: the files of one update agree (the key is the
        // certificate's, the chain verifies against the bundle with the CRL), and no other run is going on.
        var script = rig["on-change.sh"];
        await File.WriteAllTextAsync(script, $$"""
            set -u
            lock='{{rig["lock"]}}'
            mkdir "$lock" 2>/dev/null || echo CONCURRENT >> '{{runs}}'
            cd "$WRIT_WATCH_DIR"
            serial=$(openssl x509 -noout -serial -in svid.pem | cut -d= -f2)
            crl=$(openssl crl -noout -crlnumber -in crl.pem | cut -d= -f2)
            keyok=$( [ "$(openssl x509 -noout -pubkey -in svid.pem)" = "$(openssl pkey -pubout -in svid.key)" ] && echo key-ok || echo key-MISMATCH)
            verify=$(openssl verify -crl_check -CAfile bundle.pem -CRLfile crl.pem svid.pem 2>&1 | tail -1)
            echo "run serial=$serial crl=$crl $keyok verify=[$verify]" >> '{{runs}}'
            echo "reloaded $serial"
            sleep 0.2
            rmdir "$lock"
            """);
        await using var watch = BackgroundProcess.Writ("svid", "watch", "--write", dir, "--crl", "--on-change", $"sh '{script}'", "--socket", rig.Agent.SocketPath);
        var first = await WaitForRunAsync(runs, 1, watch);
        Assert.Matches("^run serial=[0-9A-F]+ crl=0x[0-9A-F]+ key-ok verify=\\[svid.pem: OK\\]$", first[0]);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(dir, "svid.key")));
        var crlPem = await File.ReadAllTextAsync(Path.Combine(dir, "crl.pem"));
        Assert.StartsWith("-----BEGIN X509 CRL-----", crlPem, StringComparison.Ordinal);
        // The CRL is the one the server publishes (same number), and it is signed by the CA in bundle.pem.
        var published = await rig.Server.WritAsync("bundle", "show", "--format", "crl");
        Assert.Equal(Number(published.Stdout), Number(crlPem));
        var signed = await Proc.RunAsync("openssl", ["crl", "-noout", "-CAfile", Path.Combine(dir, "bundle.pem"), "-in", Path.Combine(dir, "crl.pem")]);
        Assert.True(signed.ExitCode == 0 && signed.Stderr.Contains("verify OK", StringComparison.Ordinal), signed.ToString());
        await watch.Stderr.WaitForAsync(l => l.StartsWith("reloaded ", StringComparison.Ordinal), Deadline, () => watch.HasExited);   // output forwarded to stderr
        Assert.DoesNotContain("reloaded", watch.Stdout.Text, StringComparison.Ordinal);
        var ownSerial = first[0].Split(' ')[1]["serial=".Length..];

        // Another process's SVID is revoked (a one-shot fetch: its instance ends with it): only the CRL changes, and
        // that is an update: crl.pem rewritten with the serial in it, the command run again, this SVID kept.
        var fetched = await rig.WorkloadAsync("svid", "fetch", "--output", "json");
        Assert.True(fetched.ExitCode == 0, fetched.ToString());
        var otherSerial = WorkloadTools.Json(fetched).RootElement.GetProperty("svids")[0].GetProperty("serial_number").GetString()!;
        var second = await WorkloadTools.EventuallyAsync(async () =>
        {
            var lines = await WaitForRunAsync(runs, 2, watch);
            return (await CrlTextAsync(Path.Combine(dir, "crl.pem"))).Contains(otherSerial.TrimStart('0'), StringComparison.OrdinalIgnoreCase)
                ? lines : throw new InvalidOperationException("crl.pem does not list the fetched SVID yet");
        }, Deadline, "the CRL-only update");
        Assert.Contains($"serial={ownSerial} ", second[^1], StringComparison.Ordinal);
        Assert.NotEqual(first[0].Split(' ')[2], second[^1].Split(' ')[2]);   // a newer CRL number

        // This SVID revoked: a new SVID and a new CRL in one update; the old certificate fails against the new CRL.
        var old = rig["old-svid.pem"];
        File.Copy(Path.Combine(dir, "svid.pem"), old);
        var revoke = await rig.Server.WritAsync("revoke", "--serial", ownSerial);
        Assert.True(revoke.ExitCode == 0, revoke.ToString());
        var third = await WorkloadTools.EventuallyAsync(async () =>
        {
            var lines = await File.ReadAllLinesAsync(runs);
            return lines[^1].Contains($"serial={ownSerial} ", StringComparison.Ordinal)
                ? throw new InvalidOperationException("no run with a fresh SVID yet") : lines;
        }, Deadline, "the update after this SVID's revocation");
        Assert.Matches("key-ok verify=\\[svid.pem: OK\\]$", third[^1]);
        var oldVerify = await Proc.RunAsync("openssl", ["verify", "-crl_check", "-CAfile", Path.Combine(dir, "bundle.pem"), "-CRLfile", Path.Combine(dir, "crl.pem"), old]);
        Assert.Contains("certificate revoked", oldVerify.Stdout + oldVerify.Stderr, StringComparison.Ordinal);

        // Once per update, never concurrently, every run saw a consistent set of files.
        var all = await File.ReadAllLinesAsync(runs);
        Assert.DoesNotContain("CONCURRENT", all);
        Assert.All(all, l => Assert.Contains("key-ok verify=[svid.pem: OK]", l, StringComparison.Ordinal));
        var updates = watch.Stdout.Text.Split('\n').Count(l => l.StartsWith("--- update at ", StringComparison.Ordinal));
        Assert.Equal(updates, all.Length);
        Assert.Contains(watch.Stdout.Text.Split('\n'), l => l.StartsWith("--- update at ", StringComparison.Ordinal) && l.EndsWith("with 1 CRL(s)", StringComparison.Ordinal));
        Assert.DoesNotContain("warning:", watch.Stderr.Text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_failing_or_hanging_command_is_one_warning_line_and_the_watch_goes_on()
    {
        await using var rig = await AgentRig.StartAsync();
        await rig.CreateEntryAsync("spiffe://example.org/watched-failing", ["unix:uid:0"]);
        await AgentTests.WaitForSvidAsync(rig);

        // Fails: the status in one warning line under a stable code; the files are written all the same.
        var dir = rig["failing"];
        await using (var failing = BackgroundProcess.Writ("svid", "watch", "--write", dir, "--crl", "--on-change", "echo about to fail >&2; exit 3", "--socket", rig.Agent.SocketPath))
        {
            var warning = await failing.Stderr.WaitForAsync(l => l.StartsWith("warning: ", StringComparison.Ordinal), Deadline, () => failing.HasExited);
            Assert.Matches("^warning: WRIT-WATCH-COMMAND-FAILED: the --on-change command exited with status 3 for update 1; ", warning);
            Assert.Contains("about to fail", failing.Stderr.Text, StringComparison.Ordinal);
            Assert.True(File.Exists(Path.Combine(dir, "crl.pem")) && File.Exists(Path.Combine(dir, "svid.pem")));
            // The watch goes on: the next update (another process's SVID revoked: a new CRL) runs it again.
            Assert.True((await rig.WorkloadAsync("svid", "fetch")).ExitCode == 0);
            await failing.Stderr.WaitForAsync(l => l.Contains("status 3 for update 2;", StringComparison.Ordinal), Deadline, () => failing.HasExited);
            Assert.False(failing.HasExited);
            Assert.DoesNotContain("Exception", failing.Stderr.Text, StringComparison.Ordinal);
        }

        // Hangs: killed with its children after --on-change-timeout.
        var pidFile = rig["hung.pid"];
        await using var hanging = BackgroundProcess.Writ("svid", "watch", "--write", rig["hanging"], "--on-change", $"sleep 300 & echo $! > '{pidFile}'; wait",
            "--on-change-timeout", "1s", "--socket", rig.Agent.SocketPath);
        var timeout = await hanging.Stderr.WaitForAsync(l => l.StartsWith("warning: ", StringComparison.Ordinal), Deadline, () => hanging.HasExited);
        Assert.StartsWith("warning: WRIT-WATCH-COMMAND-TIMEOUT: the --on-change command ran longer than 1s for update 1 and was killed", timeout, StringComparison.Ordinal);
        var child = int.Parse((await File.ReadAllTextAsync(pidFile)).Trim(), CultureInfo.InvariantCulture);
        await WorkloadTools.EventuallyAsync(() => Directory.Exists($"/proc/{child}") && !File.ReadAllText($"/proc/{child}/stat").Contains(") Z ", StringComparison.Ordinal)
            ? throw new InvalidOperationException($"the command's child {child} still runs") : Task.FromResult(true), Deadline, "the hung command's child being killed");
        Assert.False(hanging.HasExited);
    }

    [Fact]
    public async Task Bad_directories_and_options_are_one_line_errors_and_nothing_runs()
    {
        await using var rig = await AgentRig.StartAsync();
        await rig.CreateEntryAsync("spiffe://example.org/watched-bad", ["unix:uid:0"]);
        await AgentTests.WaitForSvidAsync(rig);
        var marker = rig["ran"];
        var cmd = $"touch '{marker}'";

        // A directory other users could write to (they could swap crl.pem for an empty CRL, or the key): refused before
        // anything is fetched, and the command never runs.
        var open = rig["open"];
        Directory.CreateDirectory(open);
        File.SetUnixFileMode(open, (UnixFileMode)0b111_111_111);
        var r = await rig.WorkloadAsync("svid", "watch", "--write", open, "--crl", "--on-change", cmd);
        Expect.OneLineError(r, "WRIT-WATCH-DIR: refusing to write to");
        Assert.Equal(1, r.ExitCode);
        Assert.Empty(Directory.EnumerateFileSystemEntries(open));
        // A path through a regular file.
        var file = rig["a-file"];
        await File.WriteAllTextAsync(file, "x");
        Expect.OneLineError(await rig.WorkloadAsync("svid", "watch", "--write", Path.Combine(file, "sub"), "--on-change", cmd), "WRIT-WATCH-DIR: ");
        // Options that need --write, an empty command, a bad timeout: usage errors (exit 2).
        foreach (var args in new[]
        {
            new[] { "--crl" },
            ["--on-change", cmd],
            ["--write", rig["ok"], "--on-change", " "],
            ["--write", rig["ok"], "--on-change", cmd, "--on-change-timeout", "0s"],
            ["--write", rig["ok"], "--on-change", cmd, "--on-change-timeout", "soon"],
            ["--write", rig["ok"], "--on-change-timeout", "5s"],
        })
        {
            var u = await rig.WorkloadAsync(["svid", "watch", .. args]);
            Assert.True(u.ExitCode == 2, string.Join(' ', args) + "\n" + u);
            Expect.OneLineError(u, "WRIT-CLI-USAGE: ");
        }
        Assert.False(File.Exists(marker));
        Assert.False(Directory.Exists(rig["ok"]));
    }

    private static async Task<string[]> WaitForRunAsync(string runs, int count, BackgroundProcess watch) =>
        await WorkloadTools.EventuallyAsync(async () =>
        {
            Assert.False(watch.HasExited, "the watch exited:\n" + watch.Stderr.Text);
            var lines = File.Exists(runs) ? await File.ReadAllLinesAsync(runs) : [];
            return lines.Length >= count ? lines : throw new InvalidOperationException($"{lines.Length} run(s) so far\n{watch.Stderr.Text}");
        }, Deadline, $"run {count} of the --on-change command");

    private static async Task<string> CrlTextAsync(string crlPem)
    {
        var r = await Proc.RunAsync("openssl", ["crl", "-noout", "-text", "-in", crlPem]);
        Assert.True(r.ExitCode == 0, r.ToString());
        return r.Stdout.Replace(":", "", StringComparison.Ordinal);
    }

    private static string Number(string pem)
    {
        var at = System.Security.Cryptography.PemEncoding.Find(pem);
        System.Security.Cryptography.X509Certificates.CertificateRevocationListBuilder.Load(Convert.FromBase64String(pem[at.Base64Data]), out var number);
        return number.ToString(CultureInfo.InvariantCulture);
    }
}
