using System.Diagnostics;
using System.Security.Cryptography;
using Writ.Agent.PeerTracking;
using Writ.Agent.Tests.TestSupport;
using Writ.Agent.WorkloadAttestation;
using Writ.Protocol.Evidence;

namespace Writ.Agent.Tests.WorkloadAttestation;

public sealed class UnixWorkloadAttestorTests
{
    private const int Nobody = 65534;
    private static readonly string Sleep = Child.Resolve("/usr/bin/sleep");
    private static readonly string Tail = Child.Resolve("/usr/bin/tail");

    [Fact]
    public async Task A_child_running_as_nobody_gets_its_ids_names_path_and_the_hash_of_the_running_binary()
    {
        using Child child = StartAsNobody(Sleep, "30");
        var attestor = new UnixWorkloadAttestor(ProcFs.Host);

        AttestorResult result = await AttestAsync(attestor, child.Pid, Nobody, Nobody);

        Assert.Null(result.Error);
        Assert.Equal("unix", result.Attestor);
        string[] s = Strings(result);
        Assert.Contains("unix:uid:65534", s);
        Assert.Contains("unix:gid:65534", s);
        Assert.Contains("unix:user:nobody", s);
        Assert.Contains("unix:group:nogroup", s);
        Assert.Contains($"unix:path:{Sleep}", s);
        Assert.Contains($"unix:sha256:{Sha256Of(Sleep)}", s);
        Assert.DoesNotContain(s, x => x.StartsWith("unix:supplementary", StringComparison.Ordinal));
        Assert.Equal(child.Pid.ToString(System.Globalization.CultureInfo.InvariantCulture), result.Facts["pid"]);
        Assert.Equal(Sleep, result.Facts["exe"]);
        Assert.Equal("65534 65534 65534 65534", result.Facts["uids"]);
        Assert.Equal("sleep", result.Facts["name"]);
    }

    [Fact]
    public async Task Supplementary_groups_and_names_come_from_the_configured_user_and_group_files()
    {
        using var dir = new TempDir();
        string passwd = dir.Combine("passwd");
        string group = dir.Combine("group");
        await File.WriteAllTextAsync(passwd, "# comment\n+nis\nbroken line\nsvc-web:x:65534:65534::/:/usr/sbin/nologin\nshadowed:x:65534:1::/:/bin/false\n", TestContext.Current.CancellationToken);
        await File.WriteAllTextAsync(group, "web:x:65534:\nlogs:x:4:svc-web\nmetrics:x:27:\n", TestContext.Current.CancellationToken);
        using Child child = Child.StartExpecting(Sleep, "/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--groups=27,4,1234", Sleep, "30");
        var attestor = new UnixWorkloadAttestor(ProcFs.Host, new UnixWorkloadAttestorOptions { PasswdPath = passwd, GroupPath = group });

        AttestorResult result = await AttestAsync(attestor, child.Pid, Nobody, Nobody);

        Assert.Null(result.Error);
        string[] s = Strings(result);
        Assert.Contains("unix:user:svc-web", s); // the first entry for a uid wins
        Assert.DoesNotContain("unix:user:shadowed", s);
        Assert.Contains("unix:group:web", s);
        Assert.Contains("unix:supplementary_gid:4", s);
        Assert.Contains("unix:supplementary_gid:27", s);
        Assert.Contains("unix:supplementary_gid:1234", s);
        Assert.Contains("unix:supplementary_group:logs", s);
        Assert.Contains("unix:supplementary_group:metrics", s);
        Assert.Equal(2, s.Count(x => x.StartsWith("unix:supplementary_group:", StringComparison.Ordinal))); // 1234 has no name
        // Every kind the unix attestor emits (all of them appear here) is a type the server accepts in entries.
        Assert.All(result.Selectors, x => Assert.True(SelectorTypes.IsBuiltIn(x.Type, x.Value), $"{x} is not in SelectorTypes.BuiltIn"));
    }

    [Fact]
    public async Task A_path_with_a_space_is_left_out_and_the_rest_of_the_evidence_still_reaches_the_server()
    {
        // "unix:path:/opt/my app/sleep" breaks the one selector rule: the server refused the whole evidence for it, so a
        // workload installed under a directory with a space got no identity at all, however its entries were written.
        using var dir = new TempDir();
        Directory.CreateDirectory(dir.Combine("my app"));
        string exe = dir.Combine("my app", "sleep");
        File.Copy(Sleep, exe);
        File.SetUnixFileMode(exe, UnixFileMode.UserRead | UnixFileMode.UserExecute);
        using Child child = Child.Start(exe, "30");
        var runner = new WorkloadAttestationRunner([new UnixWorkloadAttestor(ProcFs.Host)], ProcFs.Host, TimeSpan.FromSeconds(30), Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance);

        WorkloadAttestationResult result = await runner.AttestAsync(new PeerCredentials(child.Pid, 0, 0), TestContext.Current.CancellationToken);

        Assert.Null(result.Error);
        Assert.Empty(result.Evidence!.AttestorErrors);
        Assert.Contains("unix:uid:0", result.Evidence.Selectors.Select(s => s.ToString()));
        Assert.Contains("unix:sha256:" + Sha256Of(Sleep), result.Evidence.Selectors.Select(s => s.ToString()));
        Assert.DoesNotContain(result.Evidence.Selectors, s => s.Value.StartsWith("path:", StringComparison.Ordinal));
        Assert.True(result.Evidence.Facts.ContainsKey("unix.path_omitted"));
        Assert.True(EvidenceProto.TryFromProto(result.Evidence.ToProto(), out _, out string? error), error);
    }

    [Fact]
    public async Task A_copy_of_a_binary_has_the_same_hash_but_another_path_and_another_binary_another_hash()
    {
        using var dir = new TempDir();
        string copy = dir.Combine("renamed-sleep");
        File.Copy(Sleep, copy);
        File.SetUnixFileMode(copy, (UnixFileMode)0b111_101_101);
        using Child original = Child.Start(Sleep, "30");
        using Child copied = Child.Start(copy, "30");
        using Child other = Child.Start(Tail, "-f", "/dev/null");
        var attestor = new UnixWorkloadAttestor(ProcFs.Host);

        string[] a = Strings(await AttestAsync(attestor, original.Pid, 0, 0));
        string[] b = Strings(await AttestAsync(attestor, copied.Pid, 0, 0));
        string[] c = Strings(await AttestAsync(attestor, other.Pid, 0, 0));

        string hash = $"unix:sha256:{Sha256Of(Sleep)}";
        Assert.Contains(hash, a);
        Assert.Contains(hash, b);
        Assert.Contains($"unix:path:{Sleep}", a);
        Assert.Contains($"unix:path:{copy}", b);
        Assert.DoesNotContain($"unix:path:{Sleep}", b);
        Assert.DoesNotContain(hash, c);
        Assert.Contains($"unix:sha256:{Sha256Of(Tail)}", c);
        Assert.Equal(3, attestor.Hasher.HashesComputed); // two inodes of sleep, one of tail
    }

    [Fact]
    public async Task The_same_running_binary_is_hashed_once()
    {
        using Child one = Child.Start(Sleep, "30");
        using Child two = Child.Start(Sleep, "31");
        var attestor = new UnixWorkloadAttestor(ProcFs.Host);
        string[] a = Strings(await AttestAsync(attestor, one.Pid, 0, 0));
        string[] b = Strings(await AttestAsync(attestor, two.Pid, 0, 0));
        Assert.Equal(a.Single(x => x.StartsWith("unix:sha256:", StringComparison.Ordinal)), b.Single(x => x.StartsWith("unix:sha256:", StringComparison.Ordinal)));
        Assert.Equal(1, attestor.Hasher.HashesComputed);
    }

    [Fact]
    public async Task A_binary_rewritten_in_place_with_its_mtime_reset_is_hashed_again()
    {
        // The attacker keeps path, inode, size and even mtime: only the content (and the ctime,
        // which no user can set) changes. A cache keyed on (dev, ino, size, mtime) alone would
        // keep vouching for the old content.
        using var dir = new TempDir();
        string path = dir.Combine("app");
        string stamp = dir.Combine("stamp");
        byte[] sleep = await File.ReadAllBytesAsync(Sleep, TestContext.Current.CancellationToken);
        await File.WriteAllBytesAsync(path, [.. sleep, (byte)'A'], TestContext.Current.CancellationToken);
        File.SetUnixFileMode(path, (UnixFileMode)0b111_101_101);
        Assert.True(FileIdentity.TryGet(path, out FileIdentity before, out _));
        var attestor = new UnixWorkloadAttestor(ProcFs.Host);

        string firstHash;
        using (Child first = Child.Start(path, "30"))
        {
            string[] s = Strings(await AttestAsync(attestor, first.Pid, 0, 0));
            firstHash = s.Single(x => x.StartsWith("unix:sha256:", StringComparison.Ordinal));
            Assert.Equal($"unix:sha256:{Sha256Of(path)}", firstHash);
        }

        Run("/usr/bin/touch", "-r", path, stamp);
        await using (var f = new FileStream(path, FileMode.Open, FileAccess.Write))
        {
            f.Seek(-1, SeekOrigin.End);
            f.WriteByte((byte)'B');
        }

        Run("/usr/bin/touch", "-m", "-r", stamp, path);
        Assert.True(FileIdentity.TryGet(path, out FileIdentity after, out _));
        Assert.Equal((before.Device, before.Inode, before.Size, before.MTimeNs), (after.Device, after.Inode, after.Size, after.MTimeNs));
        Assert.NotEqual(before.CTimeNs, after.CTimeNs);

        using Child second = Child.Start(path, "30");
        string[] again = Strings(await AttestAsync(attestor, second.Pid, 0, 0));
        string secondHash = again.Single(x => x.StartsWith("unix:sha256:", StringComparison.Ordinal));
        Assert.Equal($"unix:sha256:{Sha256Of(path)}", secondHash);
        Assert.NotEqual(firstHash, secondHash);
        Assert.Equal(2, attestor.Hasher.HashesComputed);
    }

    [Fact]
    public async Task A_binary_over_the_size_limit_gets_no_hash_selector_but_an_error_fact()
    {
        using Child child = Child.Start(Sleep, "30");
        var attestor = new UnixWorkloadAttestor(ProcFs.Host, new UnixWorkloadAttestorOptions { MaxHashBytes = 1000 });

        AttestorResult result = await AttestAsync(attestor, child.Pid, 0, 0);

        Assert.Null(result.Error);
        string[] s = Strings(result);
        Assert.DoesNotContain(s, x => x.StartsWith("unix:sha256:", StringComparison.Ordinal));
        Assert.Contains($"unix:path:{Sleep}", s);
        Assert.Contains("1000-byte hashing limit", result.Facts["sha256_error"], StringComparison.Ordinal);
        Assert.Equal(0, attestor.Hasher.HashesComputed);
    }

    [Fact]
    public async Task A_deleted_binary_gives_no_path_selector_but_is_still_hashed_through_proc()
    {
        using var dir = new TempDir();
        string path = dir.Combine("gone");
        File.Copy(Sleep, path);
        File.SetUnixFileMode(path, (UnixFileMode)0b111_101_101);
        using Child child = Child.Start(path, "30");
        File.Delete(path);
        var attestor = new UnixWorkloadAttestor(ProcFs.Host);

        AttestorResult result = await AttestAsync(attestor, child.Pid, 0, 0);

        Assert.Null(result.Error);
        string[] s = Strings(result);
        Assert.DoesNotContain(s, x => x.StartsWith("unix:path:", StringComparison.Ordinal));
        Assert.Equal("true", result.Facts["exe_deleted"]);
        Assert.Equal($"{path} (deleted)", result.Facts["exe"]);
        Assert.Contains($"unix:sha256:{Sha256Of(Sleep)}", s);
    }

    [Fact]
    public async Task A_binary_whose_name_ends_in_deleted_gets_no_path_selector()
    {
        using var dir = new TempDir();
        string path = dir.Combine("trusted (deleted)");
        File.Copy(Sleep, path);
        File.SetUnixFileMode(path, (UnixFileMode)0b111_101_101);
        using Child child = Child.Start(path, "30");

        AttestorResult result = await AttestAsync(new UnixWorkloadAttestor(ProcFs.Host), child.Pid, 0, 0);

        Assert.DoesNotContain(Strings(result), x => x.StartsWith("unix:path:", StringComparison.Ordinal));
        Assert.Equal("true", result.Facts["exe_deleted"]);
    }

    [Fact]
    public async Task A_binary_whose_path_has_control_characters_gets_no_path_selector_and_an_escaped_fact()
    {
        using var dir = new TempDir();
        string path = dir.Combine("app\nforged line");
        File.Copy(Sleep, path);
        File.SetUnixFileMode(path, (UnixFileMode)0b111_101_101);
        using Child child = Child.Start(path, "30");

        AttestorResult result = await AttestAsync(new UnixWorkloadAttestor(ProcFs.Host), child.Pid, 0, 0);

        Assert.Null(result.Error);
        Assert.DoesNotContain(Strings(result), x => x.StartsWith("unix:path:", StringComparison.Ordinal));
        Assert.Equal("true", result.Facts["exe_unprintable"]);
        Assert.Equal(dir.Combine("app\\x0aforged line"), result.Facts["exe"]);
        Assert.Contains($"unix:sha256:{Sha256Of(Sleep)}", Strings(result));
    }

    [Fact]
    public async Task A_hash_of_another_program_than_the_pinned_one_is_refused()
    {
        // As if the process exec'd between pinning and hashing: the pin names another file.
        using Child child = Child.Start(Sleep, "30");
        Assert.True(ProcessPin.TryCreate(ProcFs.Host, child.Pid, out ProcessPin? pin, out _));
        foreach (ProcessPin stale in new[] { pin! with { Executable = "0:1" }, pin! with { Executable = null } })
        {
            AttestorResult result = await new UnixWorkloadAttestor(ProcFs.Host).AttestAsync(
                new WorkloadProcess(new PeerCredentials(child.Pid, 0, 0), stale), TestContext.Current.CancellationToken);
            Assert.Empty(result.Selectors);
            Assert.Contains("executed another program during attestation", result.Error, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task A_binary_on_a_fuse_filesystem_is_not_hashed_unless_allowed_and_then_never_cached()
    {
        // Whoever mounts a FUSE filesystem serves its bytes: a cache key from its metadata proves
        // nothing, and a read can be made to block. bindfs (Debian package) is a real FUSE mount.
        Assert.SkipUnless(File.Exists("/usr/bin/bindfs") && File.Exists("/dev/fuse"), "needs bindfs and /dev/fuse (apt-get install bindfs)");
        using var dir = new TempDir();
        string src = dir.Combine("src");
        string mnt = dir.Combine("mnt");
        Directory.CreateDirectory(src);
        Directory.CreateDirectory(mnt);
        File.Copy(Sleep, Path.Combine(src, "app"));
        File.SetUnixFileMode(Path.Combine(src, "app"), (UnixFileMode)0b111_101_101);
        Run("/usr/bin/bindfs", src, mnt);
        try
        {
            string app = Path.Combine(mnt, "app");
            using Child child = Child.Start(app, "30");

            AttestorResult refused = await AttestAsync(new UnixWorkloadAttestor(ProcFs.Host), child.Pid, 0, 0);
            Assert.Null(refused.Error);
            Assert.DoesNotContain(Strings(refused), x => x.StartsWith("unix:sha256:", StringComparison.Ordinal));
            Assert.Contains("FUSE", refused.Facts["sha256_error"], StringComparison.Ordinal);
            Assert.Contains($"unix:path:{app}", Strings(refused));

            var allowing = new UnixWorkloadAttestor(ProcFs.Host, new UnixWorkloadAttestorOptions { HashOnFuse = true });
            Assert.Contains($"unix:sha256:{Sha256Of(Sleep)}", Strings(await AttestAsync(allowing, child.Pid, 0, 0)));
            Assert.Contains($"unix:sha256:{Sha256Of(Sleep)}", Strings(await AttestAsync(allowing, child.Pid, 0, 0)));
            Assert.Equal(2, allowing.Hasher.HashesComputed);
        }
        finally
        {
            Run("/usr/bin/fusermount", "-u", mnt);
        }
    }

    [Fact]
    public async Task A_process_whose_credentials_differ_from_what_it_connected_with_is_refused()
    {
        // SO_PEERCRED said root (e.g. it connected, then exec'd a setuid binary or changed ids the
        // other way); /proc now says nobody. Neither identity can be vouched for.
        using Child child = StartAsNobody(Sleep, "30");
        var attestor = new UnixWorkloadAttestor(ProcFs.Host);

        AttestorResult asRoot = await AttestAsync(attestor, child.Pid, 0, 0);
        AttestorResult otherGid = await AttestAsync(attestor, child.Pid, Nobody, 0);

        Assert.Empty(asRoot.Selectors);
        Assert.Contains("connected as uid 0 gid 0 but now runs as uid 65534 gid 65534", asRoot.Error, StringComparison.Ordinal);
        Assert.Empty(otherGid.Selectors);
        Assert.NotNull(otherGid.Error);
    }

    [Fact]
    public async Task A_process_that_is_gone_is_an_error()
    {
        using Child child = Child.Start(Sleep, "30");
        Assert.True(ProcessPin.TryCreate(ProcFs.Host, child.Pid, out ProcessPin? pin, out _));
        child.KillAndWait();

        AttestorResult result = await new UnixWorkloadAttestor(ProcFs.Host).AttestAsync(
            new WorkloadProcess(new PeerCredentials(child.Pid, 0, 0), pin!), TestContext.Current.CancellationToken);

        Assert.Empty(result.Selectors);
        Assert.Contains("does not exist", result.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void Status_parsing_reads_real_and_effective_ids_and_ignores_a_forged_second_uid_line()
    {
        const string status = "Name:\tevil\\nUid:\t0\t0\t0\t0\nUmask:\t0022\nState:\tS (sleeping)\nPPid:\t17\n" +
            "Uid:\t1000\t1001\t1002\t1003\nGid:\t2000\t2001\t2002\t2003\nGroups:\t4 27 \nUid:\t0\t0\t0\t0\n";
        Assert.True(ProcStatus.TryParse(status, out ProcStatus? s, out string? error), error);
        Assert.Equal("evil\\nUid:\t0\t0\t0\t0", s!.Name);
        Assert.Equal(1000, s.RealUid);
        Assert.Equal(1001, s.EffectiveUid);
        Assert.Equal(2000, s.RealGid);
        Assert.Equal(2001, s.EffectiveGid);
        Assert.Equal([4, 27], s.SupplementaryGids);
        Assert.Equal(17, s.ParentPid);
    }

    [Theory]
    [InlineData("Name:\tx\n")]
    [InlineData("Uid:\t1\t1\t1\nGid:\t1\t1\t1\t1\n")]
    [InlineData("Uid:\t1\t1\t1\t1\nGid:\tx\t1\t1\t1\n")]
    [InlineData("")]
    public void Status_without_complete_uid_and_gid_lines_is_an_error(string text)
    {
        Assert.False(ProcStatus.TryParse(text, out ProcStatus? s, out string? error));
        Assert.Null(s);
        Assert.NotNull(error);
    }

    internal static Child StartAsNobody(string exe, params string[] args) =>
        Child.StartExpecting(exe, "/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", exe, .. args]);

    internal static async Task<AttestorResult> AttestAsync(IWorkloadAttestor attestor, int pid, int uid, int gid)
    {
        Assert.True(ProcessPin.TryCreate(ProcFs.Host, pid, out ProcessPin? pin, out string? error), error);
        return await attestor.AttestAsync(new WorkloadProcess(new PeerCredentials(pid, uid, gid), pin!), TestContext.Current.CancellationToken);
    }

    internal static string[] Strings(AttestorResult result) => [.. result.Selectors.Select(s => s.ToString())];

    internal static string Sha256Of(string path) => Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(path)));

    private static void Run(string exe, params string[] args)
    {
        using var p = Process.Start(exe, args);
        p.WaitForExit();
        Assert.Equal(0, p.ExitCode);
    }
}
