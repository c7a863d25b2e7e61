using System.Diagnostics;
using Microsoft.Extensions.Logging.Abstractions;
using Writ.Agent.PeerTracking;
using Writ.Agent.Tests.TestSupport;
using Writ.Agent.WorkloadAttestation;
using Writ.Protocol.Evidence;

namespace Writ.Agent.Tests.WorkloadAttestation;

/// <summary>
/// What every workload attestor must survive: a /proc tree (real files in a temp dir) whose files a hostile or broken
/// system wrote. Each attestor, run through the real runner, must answer in time, never throw or hang, fail with a
/// stable code when it cannot attest, and produce evidence the server's wire check accepts.
/// </summary>
public abstract class HostileProcConformanceTests
{
    private const int Pid = 4242;
    private static readonly TimeSpan AttestorTimeout = TimeSpan.FromSeconds(2);
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);
    private const string SaneStatus = "Name:\tapp\nUmask:\t0022\nState:\tS (sleeping)\nPPid:\t1\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nGroups:\t4 27\n";
    private const string SaneCgroup = "0::/system.slice/app.service\n";

    protected abstract IWorkloadAttestor Create(IProcFs proc);

    /// <summary>Hostile contents: the file it replaces and its text.</summary>
    public static TheoryData<string, string, string> HostileFiles() => new()
    {
        { "status: duplicated Uid/Gid lines (a forged second one)", "status", "Name:\tapp\nPPid:\t1\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nUid:\t1000\t1000\t1000\t1000\nGid:\t1000\t1000\t1000\t1000\n" },
        { "status: no Uid line", "status", "Name:\tapp\nPPid:\t1\nGid:\t0\t0\t0\t0\n" },
        { "status: Uid overflowing int", "status", "Name:\tapp\nPPid:\t1\nUid:\t99999999999\t0\t0\t0\nGid:\t0\t0\t0\t0\n" },
        { "status: Uid with three fields", "status", "Name:\tapp\nUid:\t0\t0\t0\nGid:\t0\t0\t0\t0\n" },
        { "status: non-numeric fields", "status", "Name:\tapp\nPPid:\tone\nUid:\troot\t0\t0\t0\nGid:\t0\tx\t0\t0\nGroups:\ta b\n" },
        { "status: NUL and escape bytes in the name", "status", "Name:\tev\0il\u001b[2J\nPPid:\t1\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\n" },
        { "status: a name line of 3 MB", "status", "Name:\t" + new string('n', 3 << 20) + "\nPPid:\t1\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\n" },
        { "status: 5 MB (over the read cap)", "status", SaneStatus + new string('x', 5 << 20) },
        { "status: empty", "status", "" },
        { "cgroup: path traversal", "cgroup", "0::/../../../etc/passwd\n" },
        { "cgroup: a name with a space and a tab", "cgroup", "0::/system.slice/my app\t.service\n" },
        { "cgroup: a name with a newline", "cgroup", "0::/system.slice/a\nforged.scope\n" },
        { "cgroup: NUL bytes", "cgroup", "0::/system.slice/a\0b.scope\n" },
        { "cgroup: a path of 1 MB", "cgroup", "0::/" + new string('p', 1 << 20) + "\n" },
        { "cgroup: 5 MB of lines", "cgroup", string.Concat(Enumerable.Repeat("1:cpu:/docker/" + new string('a', 64) + "\n", 60_000)) },
        { "cgroup: empty", "cgroup", "" },
    };

    [Theory]
    [MemberData(nameof(HostileFiles))]
    public async Task Hostile_proc_contents_give_accepted_evidence_or_a_coded_one_line_error(string name, string file, string content)
    {
        using var proc = SaneProc();
        proc.Write(Pid, file, content);

        WorkloadAttestationResult result = await AttestAsync(proc, Create(proc));

        AssertConforms(result, name);
    }

    [Fact]
    public async Task A_forged_second_uid_line_is_not_believed()
    {
        using var proc = SaneProc();
        proc.Write(Pid, "status", "Name:\tapp\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nUid:\t1000\t1000\t1000\t1000\n");

        WorkloadAttestationResult result = await AttestAsync(proc, Create(proc));

        AssertConforms(result, "forged uid");
        Assert.DoesNotContain(result.Evidence!.Selectors, s => s.Value.Contains("1000", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("status")]
    [InlineData("cgroup")]
    public async Task A_fifo_in_place_of_a_proc_file_does_not_block_the_caller(string file)
    {
        using var proc = SaneProc();
        string path = Path.Combine(proc.Root, Pid.ToString(System.Globalization.CultureInfo.InvariantCulture), file);
        File.Delete(path);
        MkFifo(path);
        try
        {
            // The runner calls non-blocking attestors on the caller's own thread: a blocking open() there would hold the
            // Workload API call forever, whatever the attestor time limit.
            WorkloadAttestationResult result = await AttestAsync(proc, Create(proc));
            AssertConforms(result, $"fifo {file}");
        }
        finally
        {
            Unblock(path);
        }
    }

    [Fact]
    public async Task An_exe_link_to_a_fifo_does_not_block_the_caller()
    {
        using var proc = SaneProc();
        using var dir = new TempDir();
        string fifo = dir.Combine("app");
        MkFifo(fifo);
        File.CreateSymbolicLink(Path.Combine(proc.Root, Pid.ToString(System.Globalization.CultureInfo.InvariantCulture), "exe"), fifo);
        try
        {
            WorkloadAttestationResult result = await AttestAsync(proc, Create(proc));
            AssertConforms(result, "exe fifo");
            Assert.DoesNotContain(result.Evidence!.Selectors, s => s.Value.StartsWith("sha256:", StringComparison.Ordinal));
        }
        finally
        {
            Unblock(fifo);
        }
    }

    [Fact]
    public async Task An_exe_link_to_a_deleted_file_names_no_path()
    {
        using var proc = SaneProc();
        File.CreateSymbolicLink(Path.Combine(proc.Root, Pid.ToString(System.Globalization.CultureInfo.InvariantCulture), "exe"), "/usr/bin/app (deleted)");

        WorkloadAttestationResult result = await AttestAsync(proc, Create(proc));

        AssertConforms(result, "deleted exe");
        Assert.DoesNotContain(result.Evidence!.Selectors, s => s.Type == "unix" && s.Value.StartsWith("path:", StringComparison.Ordinal));
    }

    [Fact]
    public async Task An_exe_replaced_after_the_pin_is_not_attested_as_the_new_file()
    {
        using var proc = SaneProc();
        using var dir = new TempDir();
        string first = dir.Combine("first"), second = dir.Combine("second");
        File.WriteAllText(first, "#!/bin/sh\necho first\n");
        File.WriteAllText(second, "#!/bin/sh\necho second\n");
        string exe = Path.Combine(proc.Root, Pid.ToString(System.Globalization.CultureInfo.InvariantCulture), "exe");
        File.CreateSymbolicLink(exe, first);
        Assert.True(ProcessPin.TryCreate(proc, Pid, out ProcessPin? pin, out string? error), error);
        File.Delete(exe);
        File.CreateSymbolicLink(exe, second);   // what the pid runs now is another file

        AttestorResult result = await Create(proc).AttestAsync(new WorkloadProcess(new PeerCredentials(Pid, 0, 0), pin!), TestContext.Current.CancellationToken)
            .WaitAsync(Deadline, TestContext.Current.CancellationToken);

        Assert.DoesNotContain(result.Selectors, s => s.Value.Contains(second, StringComparison.Ordinal));
        Assert.DoesNotContain(result.Selectors, s => s.Value == "sha256:" + UnixWorkloadAttestorTests.Sha256Of(second));
    }

    [Fact]
    public async Task A_process_replaced_during_attestation_is_refused_as_pid_reuse()
    {
        using var proc = SaneProc();
        // Mid-attestation the pid comes to name another process (another start time): as if the workload exited and
        // the pid was reused. The second attestor does that to the fake /proc, between pin and re-check.
        var recycle = new Inline("recycle", () => proc.Write(Pid, "stat", FakeProc.StatLine(Pid, "other", 'S', 999)));
        var runner = new WorkloadAttestationRunner([Create(proc), recycle], proc, AttestorTimeout, NullLogger.Instance);

        WorkloadAttestationResult result = await runner.AttestAsync(new PeerCredentials(Pid, 0, 0), TestContext.Current.CancellationToken)
            .WaitAsync(Deadline, TestContext.Current.CancellationToken);

        Assert.Null(result.Evidence);
        Assert.Equal(WorkloadAttestationCodes.PidReused, result.Code);
        Assert.StartsWith(WorkloadAttestationCodes.PidReused + ": ", result.Describe(), StringComparison.Ordinal);
        Assert.Equal(WorkloadAttestationCodes.PidReused, result.ToException().Code);
    }

    [Fact]
    public async Task A_read_that_hangs_is_cut_off_by_the_time_limit_with_a_stable_code()
    {
        using var proc = SaneProc();
        using var dir = new TempDir();
        string fifo = dir.Combine("hangs");
        MkFifo(fifo);
        // A blocking attestor whose /proc read never returns (a FIFO nobody writes): the runner gives it a thread of its
        // own and the time limit; the attestor under test still counts.
        var hanging = new Blocking("hanging", () => File.ReadAllText(fifo));
        var runner = new WorkloadAttestationRunner([Create(proc), hanging], proc, AttestorTimeout, NullLogger.Instance);
        try
        {
            WorkloadAttestationResult result = await runner.AttestAsync(new PeerCredentials(Pid, 0, 0), TestContext.Current.CancellationToken)
                .WaitAsync(Deadline, TestContext.Current.CancellationToken);

            Assert.NotNull(result.Evidence);
            Assert.Contains(result.Evidence!.AttestorErrors, e => e.StartsWith(WorkloadAttestationCodes.Timeout + ": attestor 'hanging'", StringComparison.Ordinal));
            AssertConforms(result, "hanging neighbour");
        }
        finally
        {
            Unblock(fifo);
        }
    }

    private static FakeProc SaneProc()
    {
        var proc = new FakeProc();
        proc.Write(Pid, "stat", FakeProc.StatLine(Pid, "app", 'S', 5));
        proc.Write(Pid, "status", SaneStatus);
        proc.Write(Pid, "cgroup", SaneCgroup);
        return proc;
    }

    private static async Task<WorkloadAttestationResult> AttestAsync(FakeProc proc, IWorkloadAttestor attestor)
    {
        var runner = new WorkloadAttestationRunner([attestor], proc, AttestorTimeout, NullLogger.Instance);
        // Task.Run: an attestor that blocks its caller must fail this test, not hang it.
        return await Task.Run(() => runner.AttestAsync(new PeerCredentials(Pid, 0, 0), TestContext.Current.CancellationToken), TestContext.Current.CancellationToken)
            .WaitAsync(Deadline, TestContext.Current.CancellationToken);
    }

    /// <summary>The attestor either failed with a coded one-line error, or its evidence is what the server accepts.</summary>
    private static void AssertConforms(WorkloadAttestationResult result, string what)
    {
        Assert.True(result.Evidence is not null, $"{what}: the pin of a live fake process failed: {result.Describe()}");
        ProcessEvidence evidence = result.Evidence!;
        foreach (string error in evidence.AttestorErrors)
        {
            Assert.StartsWith("WRIT-", error, StringComparison.Ordinal);
            Assert.DoesNotContain(error, char.IsControl);
            Assert.True(error.Length <= 600, $"{what}: error of {error.Length} characters");
        }
        Assert.All(evidence.Selectors, s => Assert.True(Selector.IsValid(s.Type, s.Value, out string? e), $"{what}: {e}"));
        Assert.True(EvidenceProto.TryFromProto(evidence.ToProto(), out WorkloadEvidence? back, out string? wireError), $"{what}: the server would refuse the evidence: {wireError}");
        Assert.Equal(evidence.Selectors, back!.Selectors);
    }

    private static void MkFifo(string path)
    {
        using var p = Process.Start("/usr/bin/mkfifo", [path])!;
        p.WaitForExit();
        Assert.Equal(0, p.ExitCode);
    }

    /// <summary>Opens the FIFO for writing (non-blocking) so a reader left blocked on it, if any, gets EOF.</summary>
    private static void Unblock(string fifo)
    {
        try
        {
            using var p = Process.Start("/usr/bin/timeout", ["2", "/bin/sh", "-c", $"exec 3<>'{fifo}'"])!;
            p.WaitForExit();
        }
        catch (System.ComponentModel.Win32Exception)
        {
        }
    }

    private sealed class Inline(string name, Action act) : INonBlockingWorkloadAttestor
    {
        public string Name => name;

        public Task<AttestorResult> AttestAsync(WorkloadProcess process, CancellationToken ct)
        {
            act();
            return Task.FromResult(AttestorResult.Success(name, [], new Dictionary<string, string>()));
        }
    }

    private sealed class Blocking(string name, Action act) : IWorkloadAttestor
    {
        public string Name => name;

        public Task<AttestorResult> AttestAsync(WorkloadProcess process, CancellationToken ct)
        {
            act();
            return Task.FromResult(AttestorResult.Success(name, [], new Dictionary<string, string>()));
        }
    }
}

public sealed class UnixHostileProcConformanceTests : HostileProcConformanceTests
{
    protected override IWorkloadAttestor Create(IProcFs proc) => new UnixWorkloadAttestor(proc);
}

public sealed class CgroupHostileProcConformanceTests : HostileProcConformanceTests
{
    protected override IWorkloadAttestor Create(IProcFs proc) => new CgroupWorkloadAttestor(proc);
}
