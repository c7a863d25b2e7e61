using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Writ.Agent.PeerTracking;
using Writ.Agent.Tests.TestSupport;
using Writ.Agent.WorkloadAttestation;
using Writ.Protocol.Evidence;

namespace Writ.Agent.Tests.WorkloadAttestation;

public sealed class WorkloadAttestationRunnerTests
{
    private static readonly TimeSpan ShortTimeout = TimeSpan.FromMilliseconds(1500);

    [Fact]
    public async Task A_throwing_and_a_hanging_attestor_are_recorded_and_the_third_still_counts()
    {
        using Child child = Child.Start("/usr/bin/sleep", "30");
        using var release = new ManualResetEventSlim();
        var log = new ListLogger();
        var runner = new WorkloadAttestationRunner(
            [
                new Fake("boom", (_, _) => throw new InvalidOperationException("secret-ish detail\nsecond line")),
                new Fake("stuck", (_, _) => { release.Wait(TimeSpan.FromMinutes(1)); return Ok("stuck", "stuck:late"); }), // blocks synchronously, ignores the token
                new Fake("good", (_, _) => Ok("good", "good:one", "good:two")),
            ],
            ProcFs.Host, ShortTimeout, log);

        try
        {
            WorkloadAttestationResult result = await runner.AttestAsync(new PeerCredentials(child.Pid, 0, 0), TestContext.Current.CancellationToken);

            Assert.Null(result.Error);
            ProcessEvidence e = result.Evidence!;
            Assert.Equal(["good:one", "good:two"], e.Selectors.Select(s => s.ToString()));
            Assert.Equal(2, e.AttestorErrors.Count);
            Assert.Contains(e.AttestorErrors, x => x.Contains("'boom' failed with InvalidOperationException", StringComparison.Ordinal));
            Assert.Contains(e.AttestorErrors, x => x.Contains("'stuck' did not finish within 1500 ms", StringComparison.Ordinal));
            Assert.All(e.AttestorErrors, x => Assert.DoesNotContain('\n', x));
            Assert.DoesNotContain(e.AttestorErrors, x => x.Contains("secret-ish", StringComparison.Ordinal));
            Assert.Equal(child.Pid, e.Process.Pin.Pid);
            Assert.Contains(log.Entries, x => x.Level == LogLevel.Error && x.Message.Contains("boom", StringComparison.Ordinal));
            Assert.Contains(log.Entries, x => x.Level == LogLevel.Warning && x.Message.Contains("stuck", StringComparison.Ordinal));
        }
        finally
        {
            release.Set();
        }
    }

    [Fact]
    public async Task Attestors_run_concurrently()
    {
        // Each attestor waits for the other to start: only a concurrent runner finishes both in time.
        using Child child = Child.Start("/usr/bin/sleep", "30");
        using var barrier = new Barrier(2);
        var runner = new WorkloadAttestationRunner(
            [
                new Fake("left", (_, ct) => barrier.SignalAndWait(TimeSpan.FromSeconds(10), ct) ? Ok("left", "left:x") : throw new TimeoutException()),
                new Fake("right", (_, ct) => barrier.SignalAndWait(TimeSpan.FromSeconds(10), ct) ? Ok("right", "right:x") : throw new TimeoutException()),
            ],
            ProcFs.Host, TimeSpan.FromSeconds(20), new ListLogger());

        WorkloadAttestationResult result = await runner.AttestAsync(new PeerCredentials(child.Pid, 0, 0), TestContext.Current.CancellationToken);

        Assert.Empty(result.Evidence!.AttestorErrors);
        Assert.Equal(["left:x", "right:x"], result.Evidence.Selectors.Select(s => s.ToString()));
    }

    [Fact]
    public async Task A_process_that_exits_during_attestation_gets_no_evidence()
    {
        using Child child = Child.Start("/usr/bin/sleep", "30");
        var log = new ListLogger();
        var runner = new WorkloadAttestationRunner(
            [new Fake("killer", (_, _) => { child.KillAndWait(); return Ok("killer", "killer:x"); })],
            ProcFs.Host, TimeSpan.FromSeconds(10), log);

        WorkloadAttestationResult result = await runner.AttestAsync(new PeerCredentials(child.Pid, 0, 0), TestContext.Current.CancellationToken);

        Assert.Null(result.Evidence);
        Assert.StartsWith($"process {child.Pid} exited or was replaced during attestation", result.Error, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', result.Error!);
        Assert.Contains(log.Entries, x => x.Level == LogLevel.Warning);
    }

    [Fact]
    public async Task A_process_that_execs_another_program_during_attestation_gets_no_evidence()
    {
        // The attack: connect as a harmless program, then exec a trusted binary so that /proc shows
        // the trusted binary while attestation reads it. Pid and start time stay the same.
        using Child child = Child.Start("/usr/bin/dash", "-c", "read x; exec /usr/bin/sleep 30");
        string sleep = Child.Resolve("/usr/bin/sleep");
        var runner = new WorkloadAttestationRunner(
            [
                new UnixWorkloadAttestor(ProcFs.Host),
                new Fake("exec", (_, _) =>
                {
                    child.Process.StandardInput.WriteLine("go");
                    child.Process.StandardInput.Flush();
                    Wait.Until(() => Child.ExeOf(child.Pid) == sleep, "exec of sleep");
                    return Ok("exec", "exec:x");
                }),
            ],
            ProcFs.Host, TimeSpan.FromSeconds(20), new ListLogger());

        WorkloadAttestationResult result = await runner.AttestAsync(new PeerCredentials(child.Pid, 0, 0), TestContext.Current.CancellationToken);

        Assert.Null(result.Evidence);
        Assert.Contains("executed another program", result.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_peer_that_is_already_gone_gets_an_error()
    {
        using Child child = Child.Start("/usr/bin/sleep", "30");
        int pid = child.Pid;
        child.KillAndWait();
        var runner = new WorkloadAttestationRunner([new Fake("good", (_, _) => Ok("good", "good:x"))], ProcFs.Host, ShortTimeout, new ListLogger());

        WorkloadAttestationResult result = await runner.AttestAsync(new PeerCredentials(pid, 0, 0), TestContext.Current.CancellationToken);

        Assert.Null(result.Evidence);
        Assert.StartsWith($"cannot attest peer process {pid}", result.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Selectors_of_an_attestor_that_reports_an_error_or_a_malformed_selector_are_ignored()
    {
        using Child child = Child.Start("/usr/bin/sleep", "30");
        var runner = new WorkloadAttestationRunner(
            [
                new Fake("failing", (_, _) => new AttestorResult("failing", [new Selector("unix", "uid:0")], new Dictionary<string, string> { ["why"] = "x" }, "could not read\nthings")),
                new Fake("malformed", (_, _) => new AttestorResult("malformed", [new Selector("Bad:Type", "x"), new Selector("ok", "y")], new Dictionary<string, string>(), null)),
                new Fake("empty", (_, _) => new AttestorResult("empty", [new Selector("ok", "")], new Dictionary<string, string>(), null)),
                new Fake("liar", (_, _) => Ok("someone-else", "liar:x")), // the runner names results by the attestor it ran
                new Fake("null", (_, _) => null!),
            ],
            ProcFs.Host, TimeSpan.FromSeconds(10), new ListLogger());

        ProcessEvidence e = (await runner.AttestAsync(new PeerCredentials(child.Pid, 0, 0), TestContext.Current.CancellationToken)).Evidence!;

        Assert.Equal(["liar:x"], e.Selectors.Select(s => s.ToString()));
        Assert.Equal(4, e.AttestorErrors.Count);
        Assert.Contains("WRIT-ATTEST-UNAVAILABLE: attestor 'failing': could not read things", e.AttestorErrors);
        Assert.Equal("x", e.Facts["failing.why"]);
        Assert.Contains(e.AttestorErrors, x => x.Contains("'malformed' returned a malformed selector", StringComparison.Ordinal));
        Assert.Contains(e.AttestorErrors, x => x.Contains("'null' returned no result", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Cancellation_by_the_caller_is_not_swallowed()
    {
        using Child child = Child.Start("/usr/bin/sleep", "30");
        using var cts = new CancellationTokenSource();
        var runner = new WorkloadAttestationRunner(
            [Fake.Async("slow", async (_, ct) => { await cts.CancelAsync(); await Task.Delay(Timeout.Infinite, ct); return Ok("slow", "slow:x"); })],
            ProcFs.Host, TimeSpan.FromSeconds(30), new ListLogger());

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => runner.AttestAsync(new PeerCredentials(child.Pid, 0, 0), cts.Token));
    }

    [Fact]
    public void Misconfiguration_throws()
    {
        Fake a = new("same", (_, _) => Ok("same"));
        Assert.Throws<ArgumentException>(() => new WorkloadAttestationRunner([a, a], ProcFs.Host, ShortTimeout, new ListLogger()));
        Assert.Throws<ArgumentException>(() => new WorkloadAttestationRunner([new Fake("Bad Name", (_, _) => Ok("x"))], ProcFs.Host, ShortTimeout, new ListLogger()));
        Assert.Throws<ArgumentOutOfRangeException>(() => new WorkloadAttestationRunner([a], ProcFs.Host, TimeSpan.Zero, new ListLogger()));
    }

    [Fact]
    public async Task End_to_end_a_client_running_as_nobody_is_attested_from_its_socket()
    {
        using var dir = new TempDir();
        File.SetUnixFileMode(dir.Path, (UnixFileMode)0b111_111_111);
        string socketPath = dir.Combine("agent.sock");
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(socketPath));
        File.SetUnixFileMode(socketPath, (UnixFileMode)0b111_111_111);
        listener.Listen(1);
        const string script = "import socket, sys\ns = socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\ns.recv(1)\n";
        using Child client = Child.StartExpecting("/usr/bin/python3", "/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c", script, socketPath);
        using Socket conn = await listener.AcceptAsync(TestContext.Current.CancellationToken);
        Assert.True(PeerCredentialReader.TryRead(conn, out PeerCredentials peer, out string? error), error);
        var runner = new WorkloadAttestationRunner(
            [new UnixWorkloadAttestor(ProcFs.Host), new CgroupWorkloadAttestor(ProcFs.Host)], ProcFs.Host, TimeSpan.FromSeconds(10), new ListLogger());

        WorkloadAttestationResult result = await runner.AttestAsync(peer, TestContext.Current.CancellationToken);

        Assert.Null(result.Error);
        ProcessEvidence e = result.Evidence!;
        string python = Child.Resolve("/usr/bin/python3");
        string[] s = [.. e.Selectors.Select(x => x.ToString())];
        Assert.Contains("unix:uid:65534", s);
        Assert.Contains("unix:user:nobody", s);
        Assert.Contains($"unix:path:{python}", s);
        Assert.Contains($"unix:sha256:{UnixWorkloadAttestorTests.Sha256Of(python)}", s);
        Assert.Contains(s, x => x.StartsWith("cgroup:path:", StringComparison.Ordinal));
        Assert.Empty(e.AttestorErrors);
        Assert.Equal(client.Pid, peer.Pid); // setpriv execs: the client is the process we started
        Assert.Equal(peer.Pid.ToString(System.Globalization.CultureInfo.InvariantCulture), e.Facts["unix.pid"]);
    }

    private static AttestorResult Ok(string name, params string[] selectors) =>
        AttestorResult.Success(name, [.. selectors.Select(s => new Selector(s[..s.IndexOf(':', StringComparison.Ordinal)], s[(s.IndexOf(':', StringComparison.Ordinal) + 1)..]))], new Dictionary<string, string>());

    private sealed class Fake : IWorkloadAttestor
    {
        private readonly Func<WorkloadProcess, CancellationToken, Task<AttestorResult>> _run;

        public Fake(string name, Func<WorkloadProcess, CancellationToken, AttestorResult> run)
        {
            Name = name;
            _run = (p, ct) => Task.FromResult(run(p, ct));
        }

        private Fake(string name, Func<WorkloadProcess, CancellationToken, Task<AttestorResult>> run, bool _)
        {
            Name = name;
            _run = run;
        }

        public static Fake Async(string name, Func<WorkloadProcess, CancellationToken, Task<AttestorResult>> run) => new(name, run, true);

        public string Name { get; }

        public Task<AttestorResult> AttestAsync(WorkloadProcess process, CancellationToken ct) => _run(process, ct);
    }
}
