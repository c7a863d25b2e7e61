using Writ.IntegrationTests.Harness;

namespace Writ.IntegrationTests;

/// <summary>
/// Another local user (nobody) tries to keep the server or agent from (re)starting by holding a flock on what Writ locks:
/// a descriptor to the data dir opened while it was 0755 (it survives a later chmod 700). Writ locks a 0600 file of its
/// own inside its 0700 data dir (and a sidecar '&lt;db&gt;.lock', never the database, which readers may open), so both
/// start. A data dir another user owns, or one others may write to, is refused in one line.
/// </summary>
public sealed class DataDirLockAttackTests
{
    private static readonly UnixFileMode Open755 = (UnixFileMode)0b111_101_101;
    private static readonly UnixFileMode Private700 = (UnixFileMode)0b111_000_000;

    /// <summary>nobody holds an exclusive flock on each path (via flock(1)) until disposed; returns once all are held.</summary>
    private static async Task<BackgroundProcess> HoldFlocksAsNobodyAsync(params string[] paths)
    {
        // flock -n A flock -n B sh -c 'echo held; exec cat': "held" is printed only once every lock is taken.
        List<string> args = ["-u", "nobody", "--"];
        foreach (var p in paths)
        {
            args.AddRange(["flock", "-n", p]);
        }
        args.AddRange(["sh", "-c", "echo held; exec cat"]);
        var holder = BackgroundProcess.StartIn("/", "runuser", [.. args]);
        await holder.Stdout.WaitForAsync(l => l == "held", TimeSpan.FromSeconds(30), () => holder.HasExited);
        return holder;
    }

    [Fact]
    public async Task A_flock_by_another_user_on_the_data_dir_does_not_stop_the_server_starting()
    {
        using var dir = new TempDir();
        File.SetUnixFileMode(dir.Path, Open755);
        var server = await ServerProcess.StartAsync(dir["server"]);
        await using var _ = server;
        await server.StopAsync();

        // While the data dir was 0755, nobody opened it and took a lock; then it went 0700 (the descriptor survives).
        File.SetUnixFileMode(dir["server"], Open755);
        await using var holder = await HoldFlocksAsNobodyAsync(dir["server"]);
        File.SetUnixFileMode(dir["server"], Private700);

        await server.StartAsync();
        var listed = await server.WritAsync("entry", "list");
        Assert.True(listed.ExitCode == 0, listed.ToString());
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(dir["server"], "writ.lock")));

        // A second server is still refused: the lock that counts is Writ's own.
        var second = await Proc.WritAsync("server", "run", "--trust-domain", "example.org", "--data-dir", dir["server"],
            "--bind", "127.0.0.1:0", "--admin-socket", dir["other.sock"]);
        Expect.OneLineError(second, "WRIT-SERVER-DATA-DIR-IN-USE");
    }

    [Fact]
    public async Task A_reader_of_the_running_servers_database_is_not_locked_out()
    {
        using var dir = new TempDir();
        await using var server = await ServerProcess.StartAsync(dir["server"]);
        var db = Path.Combine(dir["server"], "writ.db");

        // .NET's FileStream takes a shared flock, as other readers may: the server locks the sidecar, not the database.
        await using (var reader = new FileStream(db, FileMode.Open, FileAccess.Read, FileShare.ReadWrite))
        {
            var header = new byte[16];
            await reader.ReadExactlyAsync(header, TestContext.Current.CancellationToken);
            Assert.Equal("SQLite format 3\0", System.Text.Encoding.ASCII.GetString(header));
        }
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(db + ".lock"));
    }

    [Fact]
    public async Task A_flock_by_another_user_on_the_agent_data_dir_does_not_stop_the_agent_restarting()
    {
        await using var rig = await AgentRig.StartAsync();
        await rig.Agent.KillAsync();
        // The agent never changes the mode of an existing data dir: one left 0755 can be opened by anyone.
        File.SetUnixFileMode(rig.Agent.DataDir, Open755);
        await using var holder = await HoldFlocksAsNobodyAsync(rig.Agent.DataDir);

        await rig.Agent.StartAsync();
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(rig.Agent.DataDir, "writ.lock")));
    }

    [Fact]
    public async Task A_data_dir_another_user_owns_or_others_may_write_is_refused_and_a_new_one_is_created_0700()
    {
        using var dir = new TempDir();
        File.SetUnixFileMode(dir.Path, Open755);
        var theirs = dir["theirs"];
        Directory.CreateDirectory(theirs);
        var r = await Proc.RunAsync("chown", ["nobody", theirs]);
        Assert.True(r.ExitCode == 0, r.ToString());
        var shared = dir["shared"];
        Directory.CreateDirectory(shared);
        File.SetUnixFileMode(shared, (UnixFileMode)0b111_111_101);

        foreach (var (dataDir, expected) in new[] { (theirs, "owned by uid 65534"), (shared, "writable by other users") })
        {
            var server = await Proc.WritAsync("server", "run", "--trust-domain", "example.org", "--data-dir", dataDir,
                "--bind", "127.0.0.1:0", "--admin-socket", dir["s.sock"]);
            Expect.OneLineError(server, "WRIT-SERVER-DATA-DIR-UNSAFE");
            Assert.Contains(expected, server.Stderr, StringComparison.Ordinal);
            var agent = await Proc.WritAsync("agent", "run", "--server", "127.0.0.1:1", "--trust-domain", "example.org", "--data-dir", dataDir, "--socket", dir["a.sock"]);
            Expect.OneLineError(agent, "WRIT-AGENT-DATA-DIR-UNSAFE");
            Assert.Contains(expected, agent.Stderr, StringComparison.Ordinal);
            Assert.Empty(Directory.GetFileSystemEntries(dataDir));   // no lock file, no database, no key
        }

        // A data dir Writ creates is 0700 from the start, not chmod-ed later.
        await using var fresh = await ServerProcess.StartAsync(dir["fresh"]);
        Assert.Equal(Private700, File.GetUnixFileMode(dir["fresh"]));
    }

    [Fact]
    public async Task A_symlink_in_place_of_the_database_lock_file_is_refused()
    {
        using var dir = new TempDir();
        var target = dir["elsewhere"];
        await File.WriteAllTextAsync(target, "not a lock", TestContext.Current.CancellationToken);
        Directory.CreateDirectory(dir["db"]);
        File.CreateSymbolicLink(dir["db/writ.db.lock"], target);

        var r = await Proc.WritAsync("server", "run", "--trust-domain", "example.org", "--data-dir", dir["server"],
            "--bind", "127.0.0.1:0", "--admin-socket", dir["s.sock"], "--store-connection", dir["db/writ.db"]);
        Expect.OneLineError(r, "WRIT-SERVER-STORE-LOCK-UNSAFE");
        Assert.False(File.Exists(dir["db/writ.db"]));
        Assert.Equal("not a lock", await File.ReadAllTextAsync(target, TestContext.Current.CancellationToken));
    }
}
