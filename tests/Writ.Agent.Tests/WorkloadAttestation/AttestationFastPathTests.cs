using System.Net.Sockets;
using System.Security.Cryptography;
using Writ.Agent.PeerTracking;
using Writ.Agent.Tests.TestSupport;
using Writ.Agent.WorkloadAttestation;

namespace Writ.Agent.Tests.WorkloadAttestation;

/// <summary>
/// The fast attestation path (attestors on the caller's thread, the pidfd instead of a second /proc stat read, caches
/// of the executable hash, the cgroup result, the boot id and the user/group files) must never serve evidence that
/// was true of a process once and is not any more. Each test is an attacker that changes its process between two
/// Workload API calls on the SAME connection — exec of another binary, a uid or group change, a move to another
/// cgroup, an exit — and checks that the second attestation sees the change.
/// </summary>
public sealed class AttestationFastPathTests
{
    private static readonly string Python = Child.Resolve("/usr/bin/python3");
    private static readonly string Sleep = Child.Resolve("/usr/bin/sleep");

    // A workload (supplementary group 27 before it connects) that keeps its connection and obeys one-byte commands: e = exec sleep (the socket survives the exec),
    // u = setresuid to nobody, g = change the supplementary groups, x = exit.
    private const string Client = """
        import os, socket, sys
        os.setgroups([27])
        s = socket.socket(socket.AF_UNIX)
        s.connect(sys.argv[1])
        os.set_inheritable(s.fileno(), True)
        while True:
            c = s.recv(1)
            if c == b'e':
                os.execv('/usr/bin/sleep', ['sleep', '60'])
            elif c == b'u':
                os.setresuid(65534, 65534, 65534)
            elif c == b'g':
                os.setgroups([4])
            else:
                os._exit(0)
        """;

    [Fact]
    public async Task Exec_of_another_binary_after_a_first_call_is_seen_on_the_next_call_on_the_same_connection()
    {
        await using var rig = await Rig.StartAsync();
        ProcessEvidence first = await rig.AttestAsync();
        Assert.Contains($"unix:path:{Python}", Strings(first));
        Assert.Contains($"unix:sha256:{Sha256Of(Python)}", Strings(first));

        await rig.SendAsync('e');
        Wait.Until(() => Child.ExeOf(rig.Pid) == Sleep, "exec of sleep");
        ProcessEvidence second = await rig.AttestAsync();

        Assert.Equal(first.Process.Pin.StartTimeTicks, second.Process.Pin.StartTimeTicks);   // same pid, same start time
        Assert.Contains($"unix:path:{Sleep}", Strings(second));
        Assert.Contains($"unix:sha256:{Sha256Of(Sleep)}", Strings(second));
        Assert.DoesNotContain($"unix:sha256:{Sha256Of(Python)}", Strings(second));
        Assert.DoesNotContain($"unix:path:{Python}", Strings(second));
    }

    [Fact]
    public async Task A_uid_change_after_a_first_call_is_refused_on_the_next_call()
    {
        await using var rig = await Rig.StartAsync();
        ProcessEvidence first = await rig.AttestAsync();
        Assert.Contains("unix:uid:0", Strings(first));

        await rig.SendAsync('u');
        Wait.Until(() => File.ReadAllText($"/proc/{rig.Pid}/status").Contains("Uid:\t65534", StringComparison.Ordinal), "setresuid");
        ProcessEvidence second = await rig.AttestAsync();

        Assert.DoesNotContain(Strings(second), s => s.StartsWith("unix:", StringComparison.Ordinal));
        Assert.Contains(second.AttestorErrors, e => e.Contains("connected as uid 0 gid 0 but now runs as uid 65534", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_change_of_supplementary_groups_after_a_first_call_is_seen_on_the_next_call()
    {
        await using var rig = await Rig.StartAsync();
        Assert.Contains("unix:supplementary_gid:27", Strings(await rig.AttestAsync()));

        await rig.SendAsync('g');
        Wait.Until(() => File.ReadAllText($"/proc/{rig.Pid}/status").Contains("Groups:\t4 ", StringComparison.Ordinal), "setgroups");
        ProcessEvidence second = await rig.AttestAsync();

        Assert.Contains("unix:supplementary_gid:4", Strings(second));
        Assert.DoesNotContain("unix:supplementary_gid:27", Strings(second));
    }

    [Fact]
    public async Task A_peer_that_exited_and_was_reaped_after_a_first_call_gets_no_evidence_on_the_next()
    {
        await using var rig = await Rig.StartAsync();
        Assert.NotNull(await rig.AttestAsync());

        await rig.SendAsync('x');
        rig.Child.Process.WaitForExit();   // reaped: its pid number is free for anyone
        WorkloadAttestationResult second = await rig.Runner.AttestConnectionAsync(rig.Connection, TestContext.Current.CancellationToken);

        Assert.Null(second.Evidence);
        Assert.Contains($"cannot attest peer process {rig.Pid}", second.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_exec_during_attestation_is_caught_through_the_pidfd_path_too()
    {
        // Attestors that answer at once and one that makes the workload exec a trusted binary while evidence is
        // gathered: the pin (made with the pidfd, one stat read) must still notice that the program changed.
        Rig? self = null;
        await using var rig = await Rig.StartAsync(extra: new Trigger(async () =>
        {
            await self!.SendAsync('e');
            Wait.Until(() => Child.ExeOf(self.Pid) == Sleep, "exec of sleep");
        }));
        self = rig;

        WorkloadAttestationResult result = await rig.Runner.AttestConnectionAsync(rig.Connection, TestContext.Current.CancellationToken);

        Assert.Null(result.Evidence);
        Assert.Contains("executed another program", result.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_exit_during_attestation_is_caught_by_the_pidfd_even_before_the_process_is_reaped()
    {
        // The workload exits while it is being attested; its parent never reaps it (a zombie keeps its pid and start
        // time, so /proc stat alone would still match). Poll on the pidfd says it exited.
        using var dir = new TempDir();
        string socketPath = dir.Combine("w.sock");
        using var listener = Listen(socketPath);
        using Child parent = Child.StartExpecting(Sleep, "/usr/bin/dash", "-c", $"{Python} -c \"$0\" {socketPath} & exec {Sleep} 60", Client);
        using Socket conn = await listener.AcceptAsync(TestContext.Current.CancellationToken);
        Assert.True(PeerCredentialReader.TryRead(conn, out PeerCredentials peer, out string? error), error);
        var runner = new WorkloadAttestationRunner(
            [
                new UnixWorkloadAttestor(ProcFs.Host),
                new Trigger(async () =>
                {
                    await conn.SendAsync(new[] { (byte)'x' }, SocketFlags.None);
                    Wait.Until(() => File.ReadAllText($"/proc/{peer.Pid}/stat").Contains(") Z ", StringComparison.Ordinal), "zombie");
                }),
            ],
            ProcFs.Host, TimeSpan.FromSeconds(20), new ListLogger());

        WorkloadAttestationResult result = await runner.AttestConnectionAsync(conn, TestContext.Current.CancellationToken);

        Assert.Null(result.Evidence);
        Assert.Contains("exited", result.Error, StringComparison.Ordinal);
        Assert.True(File.Exists($"/proc/{peer.Pid}/stat"), "the zombie must still exist for this test to mean anything");
    }

    [Fact]
    public async Task A_process_moved_to_another_cgroup_gets_the_new_container_not_the_cached_result()
    {
        using var proc = new FakeProc();
        const int pid = 4242;
        var process = new WorkloadProcess(new PeerCredentials(pid, 0, 0), new ProcessPin(pid, 1, "b"));
        var attestor = new CgroupWorkloadAttestor(proc);
        string a = new('a', 64), b = new('b', 64);

        proc.Write(pid, "cgroup", $"0::/system.slice/docker-{a}.scope\n");
        AttestorResult first = await attestor.AttestAsync(process, TestContext.Current.CancellationToken);
        AttestorResult again = await attestor.AttestAsync(process, TestContext.Current.CancellationToken);
        proc.Write(pid, "cgroup", $"0::/system.slice/docker-{b}.scope\n");
        AttestorResult moved = await attestor.AttestAsync(process, TestContext.Current.CancellationToken);

        Assert.Contains($"container:id:{a}", first.Selectors.Select(s => s.ToString()));
        Assert.Same(first, again);   // same text: served from the cache
        Assert.Contains($"container:id:{b}", moved.Selectors.Select(s => s.ToString()));
        Assert.DoesNotContain($"container:id:{a}", moved.Selectors.Select(s => s.ToString()));
    }

    [Fact]
    public async Task A_user_file_rewritten_in_place_with_the_same_size_and_mtime_is_read_again()
    {
        using var dir = new TempDir();
        string passwd = dir.Combine("passwd");
        await File.WriteAllTextAsync(passwd, "alice:x:0:0::/:/bin/sh\n", TestContext.Current.CancellationToken);
        DateTime mtime = File.GetLastWriteTimeUtc(passwd);
        using Child child = Child.Start(Sleep, "30");
        Assert.True(ProcessPin.TryCreate(ProcFs.Host, child.Pid, out ProcessPin? pin, out string? error), error);
        var process = new WorkloadProcess(new PeerCredentials(child.Pid, 0, 0), pin!);
        var attestor = new UnixWorkloadAttestor(ProcFs.Host, new UnixWorkloadAttestorOptions { PasswdPath = passwd, HashExecutable = false });

        AttestorResult first = await attestor.AttestAsync(process, TestContext.Current.CancellationToken);
        await File.WriteAllTextAsync(passwd, "mally:x:0:0::/:/bin/sh\n", TestContext.Current.CancellationToken);
        File.SetLastWriteTimeUtc(passwd, mtime);
        AttestorResult second = await attestor.AttestAsync(process, TestContext.Current.CancellationToken);

        Assert.Contains("unix:user:alice", first.Selectors.Select(s => s.ToString()));
        Assert.Contains("unix:user:mally", second.Selectors.Select(s => s.ToString()));
        Assert.DoesNotContain("unix:user:alice", second.Selectors.Select(s => s.ToString()));
    }

    [Fact]
    public async Task The_unix_and_cgroup_attestors_answer_on_the_callers_thread_when_the_hash_is_cached()
    {
        using Child child = Child.Start(Sleep, "30");
        Assert.True(ProcessPin.TryCreate(ProcFs.Host, child.Pid, out ProcessPin? pin, out string? error), error);
        var process = new WorkloadProcess(new PeerCredentials(child.Pid, 0, 0), pin!);
        var unix = new UnixWorkloadAttestor(ProcFs.Host);
        var cgroup = new CgroupWorkloadAttestor(ProcFs.Host);

        AttestorResult cold = await unix.AttestAsync(process, TestContext.Current.CancellationToken);   // hashes (off-thread)
        Task<AttestorResult> warm = unix.AttestAsync(process, TestContext.Current.CancellationToken);
        Task<AttestorResult> cg = cgroup.AttestAsync(process, TestContext.Current.CancellationToken);

        Assert.True(warm.IsCompletedSuccessfully, "a cached hash must not need another thread");
        Assert.True(cg.IsCompletedSuccessfully);
        Assert.Equal(cold.Selectors, (await warm).Selectors);
        Assert.Equal(1, unix.Hasher.HashesComputed);
    }

    private static string[] Strings(ProcessEvidence e) => [.. e.Selectors.Select(s => s.ToString())];

    private static string Sha256Of(string path) => Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(path)));

    private static Socket Listen(string path)
    {
        var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(path));
        listener.Listen(1);
        return listener;
    }

    /// <summary>An attestor (run with Task.Run, like any third-party one) that does something to the workload mid-attestation.</summary>
    private sealed class Trigger(Func<Task> action) : IWorkloadAttestor
    {
        public string Name => "trigger";

        public async Task<AttestorResult> AttestAsync(WorkloadProcess process, CancellationToken ct)
        {
            await action();
            return AttestorResult.Success(Name, [], new Dictionary<string, string>());
        }
    }

    /// <summary>A real workload process connected to a real Unix socket, and the runner the agent uses.</summary>
    private sealed class Rig : IAsyncDisposable
    {
        private readonly TempDir _dir;
        private readonly Socket _listener;

        private Rig(TempDir dir, Socket listener, Child child, Socket connection, WorkloadAttestationRunner runner)
        {
            _dir = dir;
            _listener = listener;
            Child = child;
            Connection = connection;
            Runner = runner;
        }

        public Child Child { get; }

        public Socket Connection { get; }

        public WorkloadAttestationRunner Runner { get; }

        public int Pid => Child.Pid;

        public static async Task<Rig> StartAsync(IWorkloadAttestor? extra = null)
        {
            var dir = new TempDir();
            string path = dir.Combine("w.sock");
            Socket listener = Listen(path);
            Child child = Child.StartExpecting(Python, Python, "-c", Client, path);
            Socket conn = await listener.AcceptAsync(TestContext.Current.CancellationToken);
            IWorkloadAttestor[] attestors = extra is null
                ? [new UnixWorkloadAttestor(ProcFs.Host), new CgroupWorkloadAttestor(ProcFs.Host)]
                : [new UnixWorkloadAttestor(ProcFs.Host), new CgroupWorkloadAttestor(ProcFs.Host), extra];
            return new Rig(dir, listener, child, conn, new WorkloadAttestationRunner(attestors, ProcFs.Host, TimeSpan.FromSeconds(20), new ListLogger()));
        }

        public async Task<ProcessEvidence> AttestAsync()
        {
            WorkloadAttestationResult r = await Runner.AttestConnectionAsync(Connection, TestContext.Current.CancellationToken);
            Assert.True(r.Evidence is not null, r.Error);
            return r.Evidence!;
        }

        public async Task SendAsync(char c) => await Connection.SendAsync(new[] { (byte)c }, SocketFlags.None);

        public ValueTask DisposeAsync()
        {
            Connection.Dispose();
            _listener.Dispose();
            Child.Dispose();
            _dir.Dispose();
            return ValueTask.CompletedTask;
        }
    }
}
