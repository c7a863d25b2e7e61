using Writ.IntegrationTests.Harness;

namespace Writ.IntegrationTests;

/// <summary>
/// Issue #12.5: another local user (nobody) prepares the directory a `--write` goes to — a sticky 1777 directory of
/// their own in the shared temporary directory, a directory they own, a parent they own, a symlink into one — hoping
/// to replace bundle.pem with their CA or read or delete svid.key later. Every writer refuses, in one line, and writes
/// nothing. (The tests run as root: root writing into another user's directory is refused too.)
/// </summary>
public sealed class OutputDirectoryAttackTests(SharedServer fixture) : IClassFixture<SharedServer>
{
    private ServerProcess Server => fixture.Server;

    private static async Task AsNobodyAsync(string command)
    {
        var r = await Proc.RunAsync("runuser", ["-u", "nobody", "--", "sh", "-c", command], workingDir: "/");
        Assert.True(r.ExitCode == 0, r.ToString());
    }

    /// <summary>A directory in the shared temporary directory as another user would make it, removed afterwards.</summary>
    private sealed class ForeignDir(string path) : IDisposable
    {
        public string Path { get; } = path;

        public static async Task<ForeignDir> CreateAsync(string mode)
        {
            var path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "writ-foreign-" + Guid.NewGuid().ToString("N")[..12]);
            await AsNobodyAsync($"mkdir '{path}' && chmod {mode} '{path}'");
            return new ForeignDir(path);
        }

        public void Dispose() => Directory.Delete(Path, recursive: true);
    }

    private Task<ProcResult> MintAsync(string dir) =>
        Server.WritAsync("x509", "mint", "--spiffe-id", "spiffe://example.org/out-dir", "--write", dir);

    [Fact]
    public async Task Svid_watch_refuses_a_sticky_world_writable_directory_another_user_created_in_tmp()
    {
        await using var rig = await AgentRig.StartAsync();
        await rig.CreateEntryAsync("spiffe://example.org/watched-out", ["unix:uid:0"]);
        await AgentTests.WaitForSvidAsync(rig);
        using var foreign = await ForeignDir.CreateAsync("1777");

        var r = await rig.WorkloadAsync("svid", "watch", "--write", foreign.Path);
        Expect.OneLineError(r, "owned by uid 65534");
        Assert.Empty(Directory.EnumerateFileSystemEntries(foreign.Path));
        Assert.Equal(1, (await rig.WorkloadAsync("svid", "fetch", "--write", foreign.Path)).ExitCode);
        Assert.Empty(Directory.EnumerateFileSystemEntries(foreign.Path));

        // The same watcher writes to a directory of its own below /tmp (sticky, root's): the rule can be met.
        using var own = new TempDir();
        await using var watch = BackgroundProcess.Writ("svid", "watch", "--write", own["svid"], "--socket", rig.Agent.SocketPath);
        await watch.Stdout.WaitForAsync(l => l.Contains("1 SVID(s), written to", StringComparison.Ordinal), TimeSpan.FromSeconds(30), () => watch.HasExited);
        Assert.True(File.Exists(own["svid/svid.key"]));
    }

    [Fact]
    public async Task Every_writer_refuses_a_directory_owned_by_another_user_even_for_root()
    {
        using var foreign = await ForeignDir.CreateAsync("0755");
        var r = await MintAsync(foreign.Path);
        Expect.OneLineError(r, $"'{foreign.Path}' is owned by uid 65534");
        Expect.OneLineError(await Server.WritAsync("policy", "show", "--write", foreign.Path), "owned by uid 65534");
        Expect.OneLineError(await Server.WritAsync("audit", "export", "--file", Path.Combine(foreign.Path, "ledger.jsonl")), "owned by uid 65534");
        Assert.Empty(Directory.EnumerateFileSystemEntries(foreign.Path));
    }

    [Fact]
    public async Task A_directory_of_ours_below_a_parent_another_user_owns_is_refused()
    {
        // nobody owns the parent: they can rename our directory away and put theirs in its place.
        using var foreign = await ForeignDir.CreateAsync("0755");
        var ours = Path.Combine(foreign.Path, "ours");
        Directory.CreateDirectory(ours);   // root may create it there; it is root's, 0700
        File.SetUnixFileMode(ours, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);

        Expect.OneLineError(await MintAsync(ours), $"'{foreign.Path}' (above '{ours}') is owned by uid 65534");
        Expect.OneLineError(await MintAsync(Path.Combine(foreign.Path, "new")), "owned by uid 65534");
        Assert.Empty(Directory.EnumerateFileSystemEntries(ours));
        Assert.False(Directory.Exists(Path.Combine(foreign.Path, "new")));   // nothing created either
    }

    [Fact]
    public async Task A_symlink_of_ours_into_another_users_directory_is_refused()
    {
        using var foreign = await ForeignDir.CreateAsync("0755");
        using var own = new TempDir();
        var link = own["creds"];
        File.CreateSymbolicLink(link, foreign.Path);
        Expect.OneLineError(await MintAsync(link), "owned by uid 65534");
        Assert.Empty(Directory.EnumerateFileSystemEntries(foreign.Path));
    }

    [Fact]
    public async Task A_symlink_another_user_planted_in_a_sticky_root_directory_is_refused_even_as_the_last_component()
    {
        // A root-owned 1777 directory (as /tmp, /var/tmp): anyone may put a link there, and its owner can re-point it at
        // will. The link's target is a directory that passes every check on its own (root's, 0700).
        var pub = Path.Combine(Path.GetTempPath(), "writ-pub-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(pub);
        try
        {
            File.SetUnixFileMode(pub, (UnixFileMode)0b1_111_111_111);
            using var own = new TempDir();
            var victim = own["victim"];
            Directory.CreateDirectory(victim, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            var planted = Path.Combine(pub, "out");
            await AsNobodyAsync($"ln -s '{victim}' '{planted}'");

            Expect.OneLineError(await MintAsync(planted), $"'{planted}' is a symlink owned by uid 65534");
            Expect.OneLineError(await MintAsync(Path.Combine(planted, "sub")), "is a symlink owned by uid 65534");
            Expect.OneLineError(await Server.WritAsync("audit", "export", "--file", Path.Combine(planted, "ledger.jsonl")), "is a symlink owned by uid 65534");
            Assert.Empty(Directory.EnumerateFileSystemEntries(victim));

            // The same link made by root, in the same directory, to the same target: written.
            var ours = Path.Combine(pub, "ours");
            File.CreateSymbolicLink(ours, victim);
            var ok = await MintAsync(ours);
            Assert.True(ok.ExitCode == 0, ok.ToString());
            Assert.True(File.Exists(Path.Combine(victim, "svid.key")));
        }
        finally
        {
            Directory.Delete(pub, recursive: true);
        }
    }

    [Fact]
    public async Task Group_or_world_writable_directories_are_refused_whoever_owns_them_and_a_safe_one_works()
    {
        using var own = new TempDir();
        foreach (var (name, mode) in new[] { ("group-writable", 0b111_111_101), ("sticky-world", 0b1_111_111_111) })
        {
            var dir = own[name];
            Directory.CreateDirectory(dir);
            File.SetUnixFileMode(dir, (UnixFileMode)mode);
            Expect.OneLineError(await MintAsync(dir), $"'{dir}' is writable by other users");
            Assert.Empty(Directory.EnumerateFileSystemEntries(dir));
        }
        // A world-writable parent without the sticky bit: anyone could swap our directory.
        var open = own["open"];
        Directory.CreateDirectory(open);
        File.SetUnixFileMode(open, (UnixFileMode)0b111_111_111);
        Expect.OneLineError(await MintAsync(Path.Combine(open, "creds")), $"'{open}' (above");

        // Our own directory, created on demand below our 0700 temp dir and the sticky /tmp: written.
        var good = own["a/b/creds"];
        var ok = await MintAsync(good);
        Assert.True(ok.ExitCode == 0, ok.ToString());
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(good, "svid.key")));
        Assert.Equal(0, (int)(File.GetUnixFileMode(good) & (UnixFileMode.GroupWrite | UnixFileMode.OtherWrite)));
    }
}
