using System.Diagnostics;
using Writ.Agent.PeerTracking;
using Writ.Agent.Tests.TestSupport;
using Writ.Agent.WorkloadAttestation;
using static Writ.Agent.Tests.WorkloadAttestation.UnixWorkloadAttestorTests;

namespace Writ.Agent.Tests.WorkloadAttestation;

/// <summary>
/// A local attacker against the executable evidence (docs/security.md, "Executable evidence"): poisoning the hash cache
/// with an in-place rewrite its key cannot see, serving a registered path from a private mount namespace, and hiding a
/// FUSE filesystem under an overlay. Everything runs on the real kernel: tmpfs at /dev/shm, a real MAP_SHARED rewrite,
/// <c>unshare -Urm</c> with a bind mount, and bindfs (FUSE) under a real overlay mount.
/// </summary>
public sealed class ExecutableEvidenceAttackTests
{
    private const int Nobody = 65534;
    private const string Python = "/usr/bin/python3";
    private static readonly string Sleep = Child.Resolve("/usr/bin/sleep");

    /// <summary>Flips the last byte of a file through a MAP_SHARED mapping: no write(2), so tmpfs moves no time.</summary>
    private const string MmapRewrite =
        "import mmap,os,sys\nfd=os.open(sys.argv[1],os.O_RDWR)\nm=mmap.mmap(fd,0,mmap.MAP_SHARED,mmap.PROT_READ|mmap.PROT_WRITE)\n" +
        "m[-1]=m[-1]^1\nm.flush()\nm.close()\nos.close(fd)\n";

    [Fact]
    public async Task A_user_rewriting_their_binary_on_tmpfs_through_a_shared_mapping_gets_the_hash_of_the_new_content()
    {
        // The issue's attack: nobody runs their copy of a binary from /dev/shm, lets the agent hash it, rewrites it
        // through mmap (inode, size, mtime and ctime all stay), and runs it again.
        using var dir = new ShmDir();
        string app = dir.Combine("app");
        await WriteExecutableAsync(app, Nobody);

        var attestor = new UnixWorkloadAttestor(ProcFs.Host);
        string before = await HashSelectorOfAsync(attestor, app, asNobody: true);
        Assert.Equal($"unix:sha256:{Sha256Of(app)}", before);

        RewriteUnnoticed(app, asNobody: true);

        string after = await HashSelectorOfAsync(attestor, app, asNobody: true);
        Assert.Equal($"unix:sha256:{Sha256Of(app)}", after);
        Assert.NotEqual(before, after);
        Assert.Equal(2, attestor.Hasher.HashesComputed);
    }

    [Fact]
    public async Task A_root_owned_binary_on_tmpfs_is_never_served_from_the_cache()
    {
        // Only root can write it, but on tmpfs not even root's rewrite through a mapping moves a time: the key
        // cannot tell, so the hash is computed again on every attestation.
        using var dir = new ShmDir();
        string app = dir.Combine("app");
        await WriteExecutableAsync(app, 0);

        var attestor = new UnixWorkloadAttestor(ProcFs.Host);
        string before = await HashSelectorOfAsync(attestor, app, asNobody: false);
        RewriteUnnoticed(app, asNobody: false);
        using Child child = Child.Start(app, "30");
        AttestorResult result = await AttestAsync(attestor, child.Pid, 0, 0);

        Assert.Contains($"unix:sha256:{Sha256Of(app)}", Strings(result));
        Assert.DoesNotContain(before, Strings(result));
        Assert.Contains("tmpfs", result.Facts["sha256_uncached"], StringComparison.Ordinal);
        Assert.Equal(2, attestor.Hasher.HashesComputed);
    }

    [Theory]
    [InlineData(Nobody, 0b111_101_101, false, "owned by uid 65534")]
    [InlineData(0, 0b111_111_101, false, "group- or world-writable (mode 775)")]
    [InlineData(0, 0b111_101_111, false, "group- or world-writable (mode 757)")]
    [InlineData(0, 0b111_101_101, true, "ACL")]
    public async Task A_binary_someone_other_than_root_can_write_is_hashed_on_every_attestation(int owner, int mode, bool acl, string reason)
    {
        // On ext4 a rewrite does move the ctime, but a writer can race it into the timestamp tick of its previous
        // change (or use a filesystem this agent does not know): only a file that root alone can write is cached.
        using var dir = new TempDir();
        string app = dir.Combine("app");
        await WriteExecutableAsync(app, owner, (UnixFileMode)mode);
        if (acl)
        {
            GrantWriteByAcl(app, Nobody);
        }

        using Child child = Child.Start(app, "30");
        var attestor = new UnixWorkloadAttestor(ProcFs.Host);
        AttestorResult first = await AttestAsync(attestor, child.Pid, 0, 0);
        AttestorResult second = await AttestAsync(attestor, child.Pid, 0, 0);

        Assert.Contains($"unix:sha256:{Sha256Of(app)}", Strings(first));
        Assert.Contains($"unix:sha256:{Sha256Of(app)}", Strings(second));
        Assert.Contains(reason, second.Facts["sha256_uncached"], StringComparison.Ordinal);
        Assert.Equal(2, attestor.Hasher.HashesComputed);
    }

    [Fact]
    public async Task A_root_owned_read_only_binary_on_ext4_is_still_hashed_once()
    {
        using var dir = new TempDir();
        string app = dir.Combine("app");
        await WriteExecutableAsync(app, 0);
        using Child child = Child.Start(app, "30");
        var attestor = new UnixWorkloadAttestor(ProcFs.Host);

        AttestorResult first = await AttestAsync(attestor, child.Pid, 0, 0);
        AttestorResult second = await AttestAsync(attestor, child.Pid, 0, 0);

        Assert.Contains($"unix:sha256:{Sha256Of(app)}", Strings(second));
        Assert.False(first.Facts.ContainsKey("sha256_uncached"));
        Assert.Equal(1, attestor.Hasher.HashesComputed);
    }

    [Fact]
    public async Task A_cached_hash_is_kept_under_the_mount_the_file_was_reached_through()
    {
        // Not under device and inode alone: once a filesystem is unmounted its device number is handed out again,
        // and a FUSE daemon that gets it can forge inode, size and times. A mount's unique id is never reused.
        using var dir = new TempDir();
        string src = Directory.CreateDirectory(dir.Combine("src")).FullName;
        string bind = Directory.CreateDirectory(dir.Combine("bind")).FullName;
        await WriteExecutableAsync(Path.Combine(src, "app"), 0);
        Run("/usr/bin/mount", "--bind", src, bind);
        try
        {
            var attestor = new UnixWorkloadAttestor(ProcFs.Host);
            foreach (string app in new[] { Path.Combine(src, "app"), Path.Combine(bind, "app"), Path.Combine(src, "app") })
            {
                using Child child = Child.Start(app, "30");
                Assert.Contains($"unix:sha256:{Sha256Of(app)}", Strings(await AttestAsync(attestor, child.Pid, 0, 0)));
            }

            Assert.Equal(2, attestor.Hasher.HashesComputed); // once per mount, the second run through src from the cache
        }
        finally
        {
            Run("/usr/bin/umount", bind);
        }
    }

    [Fact]
    public async Task A_bind_mount_over_a_registered_path_in_a_private_mount_namespace_gets_no_path_selector()
    {
        // `unshare -Urm` + a bind mount of another binary over /usr/bin/sleep: /proc/<pid>/exe reads /usr/bin/sleep.
        Assert.SkipUnless(File.Exists("/usr/bin/unshare"), "needs unshare (util-linux)");
        using var dir = new TempDir();
        string evil = dir.Combine("evil");
        await WriteExecutableAsync(evil, 0);
        using Child child = Child.StartExpecting(Sleep, "/usr/bin/unshare", "-Urm", "/bin/sh", "-c",
            $"mount --bind '{evil}' '{Sleep}' && exec '{Sleep}' 30");
        Assert.Equal(Sleep, Child.ExeOf(child.Pid));

        AttestorResult result = await AttestAsync(new UnixWorkloadAttestor(ProcFs.Host), child.Pid, 0, 0);

        Assert.Null(result.Error);
        string[] s = Strings(result);
        Assert.DoesNotContain(s, x => x.StartsWith("unix:path:", StringComparison.Ordinal));
        Assert.Contains("another mount namespace", result.Facts["path_omitted"], StringComparison.Ordinal);
        Assert.Equal(Sleep, result.Facts["exe"]);
        // The hash is read through /proc/<pid>/exe, the file really running: the evil copy's, not sleep's.
        Assert.Contains($"unix:sha256:{Sha256Of(evil)}", s);
        Assert.DoesNotContain($"unix:sha256:{Sha256Of(Sleep)}", s);
    }

    [Fact]
    public async Task A_binary_executed_through_another_namespaces_bind_mount_from_the_agents_namespace_gets_no_path_selector()
    {
        // The process stays in the agent's mount namespace but execs /proc/<pid>/root/usr/bin/sleep of a process whose
        // namespace has its own file bind-mounted there: its exe link reads /usr/bin/sleep all the same.
        Assert.SkipUnless(File.Exists("/usr/bin/unshare"), "needs unshare (util-linux)");
        using var dir = new TempDir();
        string evil = dir.Combine("evil");
        await WriteExecutableAsync(evil, 0);
        using Child holder = Child.StartExpecting(Sleep, "/usr/bin/unshare", "-Urm", "/bin/sh", "-c",
            $"mount --bind '{evil}' '{Sleep}' && exec '{Sleep}' 30");
        using Child child = Child.StartExpecting(Sleep, $"/proc/{holder.Pid}/root{Sleep}", "30");

        AttestorResult result = await AttestAsync(new UnixWorkloadAttestor(ProcFs.Host), child.Pid, 0, 0);

        Assert.Null(result.Error);
        string[] s = Strings(result);
        Assert.DoesNotContain(s, x => x.StartsWith("unix:path:", StringComparison.Ordinal));
        Assert.Contains("does not name the running executable", result.Facts["path_omitted"], StringComparison.Ordinal);
        Assert.Contains($"unix:sha256:{Sha256Of(evil)}", s);
    }

    [Fact]
    public async Task A_binary_on_an_overlay_over_fuse_is_not_hashed_unless_allowed_and_then_never_cached()
    {
        // The overlay's own fstatfs says "overlay"; the bytes still come from the FUSE daemon below it.
        Assert.SkipUnless(File.Exists("/usr/bin/bindfs") && File.Exists("/dev/fuse"), "needs bindfs and /dev/fuse (apt-get install bindfs)");
        using var dir = new TempDir();
        string src = Directory.CreateDirectory(dir.Combine("src")).FullName;
        string fuse = Directory.CreateDirectory(dir.Combine("fuse")).FullName;
        await WriteExecutableAsync(Path.Combine(src, "app"), 0);
        Run("/usr/bin/bindfs", src, fuse);
        try
        {
            using Overlay overlay = Overlay.Mount(dir, fuse);
            using Child child = Child.Start(overlay.Combine("app"), "30");

            AttestorResult refused = await AttestAsync(new UnixWorkloadAttestor(ProcFs.Host), child.Pid, 0, 0);
            Assert.Null(refused.Error);
            Assert.DoesNotContain(Strings(refused), x => x.StartsWith("unix:sha256:", StringComparison.Ordinal));
            Assert.Contains($"overlay layer {fuse} on FUSE", refused.Facts["sha256_error"], StringComparison.Ordinal);

            var allowing = new UnixWorkloadAttestor(ProcFs.Host, new UnixWorkloadAttestorOptions { HashOnFuse = true });
            Assert.Contains($"unix:sha256:{Sha256Of(Path.Combine(src, "app"))}", Strings(await AttestAsync(allowing, child.Pid, 0, 0)));
            Assert.Contains($"unix:sha256:{Sha256Of(Path.Combine(src, "app"))}", Strings(await AttestAsync(allowing, child.Pid, 0, 0)));
            Assert.Equal(2, allowing.Hasher.HashesComputed);
        }
        finally
        {
            Run("/usr/bin/fusermount", "-u", fuse);
        }
    }

    [Fact]
    public async Task A_binary_on_an_overlay_over_ext4_is_hashed_and_cached()
    {
        // The usual container root filesystem: the look-through must not cost containers their hash or its cache.
        using var dir = new TempDir();
        string lower = Directory.CreateDirectory(dir.Combine("lower")).FullName;
        await WriteExecutableAsync(Path.Combine(lower, "app"), 0);
        using Overlay overlay = Overlay.Mount(dir, lower);
        using Child child = Child.Start(overlay.Combine("app"), "30");
        var attestor = new UnixWorkloadAttestor(ProcFs.Host);

        AttestorResult first = await AttestAsync(attestor, child.Pid, 0, 0);
        AttestorResult second = await AttestAsync(attestor, child.Pid, 0, 0);

        Assert.Contains($"unix:sha256:{Sha256Of(Path.Combine(lower, "app"))}", Strings(first));
        Assert.Contains($"unix:sha256:{Sha256Of(Path.Combine(lower, "app"))}", Strings(second));
        Assert.Equal(1, attestor.Hasher.HashesComputed);
    }

    [Fact]
    public async Task A_binary_on_an_overlay_mounted_only_in_a_private_mount_namespace_is_not_hashed()
    {
        // The agent cannot see such an overlay's mount, so it cannot check its layers (a user namespace can stack
        // an overlay on its own FUSE mount): no hash, rather than one the mounter may have chosen.
        Assert.SkipUnless(File.Exists("/usr/bin/unshare"), "needs unshare (util-linux)");
        using var dir = new TempDir();
        string lower = Directory.CreateDirectory(dir.Combine("lower")).FullName;
        foreach (string d in new[] { "upper", "work", "merged" })
        {
            Directory.CreateDirectory(dir.Combine(d));
        }

        await WriteExecutableAsync(Path.Combine(lower, "app"), 0);
        string merged = dir.Combine("merged");
        using Child child = Child.StartExpecting(Path.Combine(merged, "app"), "/usr/bin/unshare", "-m", "/bin/sh", "-c",
            $"mount -t overlay overlay -o 'lowerdir={lower},upperdir={dir.Combine("upper")},workdir={dir.Combine("work")}' '{merged}' && exec '{merged}/app' 30");

        AttestorResult result = await AttestAsync(new UnixWorkloadAttestor(ProcFs.Host), child.Pid, 0, 0);

        Assert.Null(result.Error);
        Assert.DoesNotContain(Strings(result), x => x.StartsWith("unix:sha256:", StringComparison.Ordinal));
        Assert.Contains("not mounted in the agent's mount namespace", result.Facts["sha256_error"], StringComparison.Ordinal);
    }

    [Fact]
    public void Overlay_layers_are_read_from_captured_mountinfo_lines_in_every_option_form()
    {
        // Lines as the kernel writes them: the classic colon list with data-only layers after "::", the per-layer
        // lowerdir+/datadir+ form, and escapes (\072 is a ':' inside a path, \040 a space, \054 a ',').
        const string text =
            "47 26 0:40 / /tmp/ovtest.w2zf/merged rw,relatime - overlay overlay rw,lowerdir=/tmp/ovtest.w2zf/fuse,upperdir=/tmp/ovtest.w2zf/upper,workdir=/tmp/ovtest.w2zf/work,uuid=on\n" +
            "812 30 0:91 / /var/lib/docker/overlay2/abc/merged rw,relatime master:1 - overlay overlay rw,lowerdir=/l/A:/l/B::/data/C,upperdir=/u,workdir=/w\n" +
            "813 30 0:92 / /run/my\\040root rw - overlay none rw,lowerdir+=/a\\072b,lowerdir+=/c\\054d,datadir+=/e\\040f,upperdir=/g,workdir=/h\n" +
            "26 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard\n" +
            "garbage line\n";

        IReadOnlyList<MountInfoLine> lines = MountInfoLine.Parse(text);

        Assert.Equal(4, lines.Count);
        Assert.Equal(["/tmp/ovtest.w2zf/fuse", "/tmp/ovtest.w2zf/upper"], lines[0].OverlayLayers());
        Assert.Equal(["/l/A", "/l/B", "/data/C", "/u"], lines[1].OverlayLayers());
        Assert.Equal("/run/my root", lines[2].MountPoint);
        Assert.Equal(["/a:b", "/c,d", "/e f", "/g"], lines[2].OverlayLayers());
        Assert.Equal((812UL, "0:91", "overlay"), (lines[1].MountId, lines[1].Device, lines[1].FsType));
        Assert.Empty(lines[3].OverlayLayers());
        Assert.True(lines[1].SameSuperblock(lines[1] with { MountId = 999, MountPoint = "/elsewhere" }));
        Assert.False(lines[1].SameSuperblock(lines[1] with { Device = "0:93" }));
    }

    [Fact]
    public void The_worst_layer_decides()
    {
        var move = new ExecutableStorage(StorageKind.TimesMove, "ext4");
        var still = new ExecutableStorage(StorageKind.TimesStill, "tmpfs");
        var fuse = new ExecutableStorage(StorageKind.Fuse, "fuse");
        var unverified = new ExecutableStorage(StorageKind.Unverified, "?");
        Assert.Equal(still, ExecutableStorage.Worst(move, still));
        Assert.Equal(still, ExecutableStorage.Worst(still, move));
        Assert.Equal(unverified, ExecutableStorage.Worst(still, unverified));
        Assert.Equal(fuse, ExecutableStorage.Worst(fuse, unverified));
    }

    /// <summary>Runs <paramref name="app"/>, attests it, stops it (a running binary cannot be opened for writing) and returns its sha256 selector.</summary>
    private static async Task<string> HashSelectorOfAsync(UnixWorkloadAttestor attestor, string app, bool asNobody)
    {
        using Child child = asNobody ? StartAsNobody(app, "30") : Child.Start(app, "30");
        int id = asNobody ? Nobody : 0;
        AttestorResult result = await AttestAsync(attestor, child.Pid, id, id);
        Assert.Null(result.Error);
        child.KillAndWait();
        return Strings(result).Single(x => x.StartsWith("unix:sha256:", StringComparison.Ordinal));
    }

    /// <summary>Rewrites the file's last byte through a shared mapping and checks that its statx identity did not move.</summary>
    private static void RewriteUnnoticed(string path, bool asNobody)
    {
        Assert.True(FileIdentity.TryGet(path, out FileIdentity before, out string? error), error);
        if (asNobody)
        {
            Run("/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", Python, "-c", MmapRewrite, path);
        }
        else
        {
            Run(Python, "-c", MmapRewrite, path);
        }

        Assert.True(FileIdentity.TryGet(path, out FileIdentity after, out error), error);
        Assert.Equal(before, after); // the kernel's own behaviour on tmpfs: nothing a cache key could see
    }

    /// <summary>A copy of sleep with one extra byte (so its hash is its own), owned by <paramref name="owner"/>.</summary>
    private static async Task WriteExecutableAsync(string path, int owner, UnixFileMode mode = (UnixFileMode)0b111_101_101)
    {
        byte[] sleep = await File.ReadAllBytesAsync(Sleep, TestContext.Current.CancellationToken);
        await File.WriteAllBytesAsync(path, [.. sleep, (byte)'A'], TestContext.Current.CancellationToken);
        Run("/usr/bin/chown", owner.ToString(System.Globalization.CultureInfo.InvariantCulture), path);
        File.SetUnixFileMode(path, mode);
    }

    /// <summary>
    /// Gives <paramref name="uid"/> an entry in a POSIX access ACL (the kernel's xattr format; no setfacl needed). Its mask
    /// is r-x: a mask with w would show as the group write bit, which is refused on its own; any extended ACL is refused.
    /// </summary>
    private static void GrantWriteByAcl(string path, int uid) =>
        Run(Python, "-c",
            "import os,struct,sys\n" +
            "e=lambda t,p,i=0xffffffff: struct.pack('<HHI',t,p,i)\n" +
            "acl=struct.pack('<I',2)+e(1,7)+e(2,6,int(sys.argv[2]))+e(4,5)+e(0x10,5)+e(0x20,5)\n" +
            "os.setxattr(sys.argv[1],'system.posix_acl_access',acl)\n",
            path, uid.ToString(System.Globalization.CultureInfo.InvariantCulture));

    private static void Run(string exe, params string[] args)
    {
        var psi = new ProcessStartInfo(exe) { RedirectStandardError = true, UseShellExecute = false };
        foreach (string a in args)
        {
            psi.ArgumentList.Add(a);
        }

        using Process p = Process.Start(psi)!;
        string stderr = p.StandardError.ReadToEnd();
        p.WaitForExit();
        Assert.True(p.ExitCode == 0, $"{exe} {string.Join(' ', args)} exited {p.ExitCode}: {stderr}");
    }

    /// <summary>A directory on tmpfs (/dev/shm) that nobody can enter, removed at dispose.</summary>
    private sealed class ShmDir : IDisposable
    {
        private readonly string _path = Directory.CreateDirectory(Path.Combine("/dev/shm", $"writ-attest-{Guid.NewGuid():N}"),
            (UnixFileMode)0b111_101_101).FullName;

        public string Combine(string name) => Path.Combine(_path, name);

        public void Dispose() => Directory.Delete(_path, recursive: true);
    }

    /// <summary>An overlay mounted in the agent's (this test's) mount namespace over one lower directory; unmounted on dispose.</summary>
    private sealed class Overlay : IDisposable
    {
        private readonly string _merged;

        private Overlay(string merged) => _merged = merged;

        public static Overlay Mount(TempDir dir, string lower)
        {
            string upper = Directory.CreateDirectory(dir.Combine("upper")).FullName;
            string work = Directory.CreateDirectory(dir.Combine("work")).FullName;
            string merged = Directory.CreateDirectory(dir.Combine("merged")).FullName;
            Run("/usr/bin/mount", "-t", "overlay", "overlay", "-o", $"lowerdir={lower},upperdir={upper},workdir={work}", merged);
            return new Overlay(merged);
        }

        public string Combine(string name) => Path.Combine(_merged, name);

        public void Dispose() => Run("/usr/bin/umount", _merged);
    }
}
