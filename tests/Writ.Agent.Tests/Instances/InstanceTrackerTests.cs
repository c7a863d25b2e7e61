using System.Diagnostics;
using Writ.Agent.Instances;
using Writ.Agent.Tests.TestSupport;

namespace Writ.Agent.Tests.Instances;

/// <summary>Continuous re-attestation against real child processes: exits, exec'd programs and replaced binaries.</summary>
public sealed class InstanceTrackerTests
{
    [Fact]
    public async Task Two_processes_are_two_instances_named_by_pid_and_start_time()
    {
        using var rig = new InstanceRig();
        using var a = Child.Start("/bin/sleep", "60");
        using var b = Child.Start("/bin/sleep", "60");
        var ia = await rig.ObserveAsync(a.Pid);
        var ib = await rig.ObserveAsync(b.Pid);
        Assert.NotEqual(ia.Id, ib.Id);
        Assert.StartsWith($"{a.Pid}:", ia.Id, StringComparison.Ordinal);
        Assert.Same(ia, await rig.ObserveAsync(a.Pid));   // a second call from the same process: the same instance
        Assert.Equal(2, rig.Tracker.Count);
    }

    [Fact]
    public async Task An_exit_is_noticed_through_the_pidfd_at_once_and_its_credentials_are_reported()
    {
        using var rig = new InstanceRig();
        using var child = Child.Start("/bin/sleep", "60");
        var instance = await rig.ObserveAsync(child.Pid);
        Assert.True(rig.Tracker.WatchedByPidfd > 0, "this kernel should support pidfds (Linux 5.3+)");
        Assert.True(instance.TryRecordSerial(instance.Epoch, "1A2B", DateTimeOffset.UtcNow.AddMinutes(5)));

        var sw = Stopwatch.StartNew();
        child.KillAndWait();
        // No periodic re-check runs here: only the pidfd can notice.
        await Deadline.UntilAsync(() => rig.Tracker.Get(instance.Id) is null, "the instance to be forgotten", TimeSpan.FromSeconds(3));
        TestContext.Current.SendDiagnosticMessage($"exit noticed after {sw.Elapsed.TotalMilliseconds:F0} ms");
        Assert.True(instance.IsGone);
        Assert.Equal("exited", instance.GoneReason);
        Assert.Null(instance.Current.Evidence);
        var report = Assert.Single(rig.Reporter.Snapshot());
        Assert.Equal(instance.Id, report.InstanceId);
        Assert.Equal(["1A2B"], report.Serials);
        Assert.Equal("exited", report.Reason);
        Assert.Contains(rig.Log.Entries, e => e.Message.Contains($"{instance.Id}", StringComparison.Ordinal) && e.Message.Contains("forgotten (exited)", StringComparison.Ordinal));
    }

    [Fact]
    public async Task The_periodic_recheck_forgets_an_exited_instance_too()
    {
        using var rig = new InstanceRig();
        using var child = Child.Start("/bin/sleep", "60");
        var instance = await rig.ObserveAsync(child.Pid);
        using var alive = Child.Start("/bin/sleep", "60");
        var stays = await rig.ObserveAsync(alive.Pid);
        child.KillAndWait();
        await rig.Tracker.RecheckAsync(instance, TestContext.Current.CancellationToken);   // whether or not the pidfd was first
        await rig.Tracker.RecheckAsync(stays, TestContext.Current.CancellationToken);
        Assert.Null(rig.Tracker.Get(instance.Id));
        Assert.Same(stays, rig.Tracker.Get(stays.Id));
        Assert.False(stays.IsGone);
    }

    [Fact]
    public async Task A_process_that_execs_another_program_drifts_and_its_old_credentials_are_reported()
    {
        using var rig = new InstanceRig();
        // sh waits for a line on stdin, then execs sleep: same pid, same start time, another executable.
        using var child = Child.Start("/bin/sh", "-c", "read x; exec /bin/sleep 60");
        var instance = await rig.ObserveAsync(child.Pid);
        var epoch = instance.Epoch;
        Assert.True(instance.TryRecordSerial(epoch, "AA01", DateTimeOffset.UtcNow.AddMinutes(5)));
        Assert.True(instance.TryRecordJti(epoch, "jti-1", DateTimeOffset.UtcNow.AddMinutes(5)));

        await rig.Tracker.RecheckAsync(instance, TestContext.Current.CancellationToken);
        Assert.Equal(epoch, instance.Epoch);   // nothing changed yet: no drift (the check can pass)

        await child.Process.StandardInput.WriteLineAsync("go");
        await child.Process.StandardInput.FlushAsync(TestContext.Current.CancellationToken);
        var sleep = Child.Resolve("/bin/sleep");
        await Deadline.UntilAsync(() => Child.ExeOf(child.Pid) == sleep, "the exec");
        await rig.Tracker.RecheckAsync(instance, TestContext.Current.CancellationToken);

        Assert.True(instance.Epoch > epoch, "the drift must start a new epoch");
        Assert.False(instance.IsCurrent(epoch));
        Assert.False(instance.IsGone);   // still the same live process: it may get fresh credentials from its new evidence
        Assert.Contains(instance.Current.Evidence!.Selectors, s => s.ToString() == $"unix:path:{sleep}");
        Assert.False(instance.TryRecordSerial(epoch, "AA02", DateTimeOffset.UtcNow.AddMinutes(5)));   // a late SVID of the old epoch is refused
        var report = Assert.Single(rig.Reporter.Snapshot());
        Assert.Equal("executable changed", report.Reason);
        Assert.Equal(["AA01"], report.Serials);
        Assert.Equal(["jti-1"], report.Jtis);
    }

    [Fact]
    public async Task A_call_from_a_process_that_exec_d_is_a_drift_before_it_is_served()
    {
        using var rig = new InstanceRig();
        using var child = Child.Start("/bin/sh", "-c", "read x; exec /bin/sleep 60");
        var instance = await rig.ObserveAsync(child.Pid);
        var epoch = instance.Epoch;
        await child.Process.StandardInput.WriteLineAsync("go");
        await child.Process.StandardInput.FlushAsync(TestContext.Current.CancellationToken);
        await Deadline.UntilAsync(() => Child.ExeOf(child.Pid) == Child.Resolve("/bin/sleep"), "the exec");

        var again = await rig.ObserveAsync(child.Pid);   // the Workload API call path
        Assert.Same(instance, again);
        Assert.True(instance.Epoch > epoch);
        Assert.Contains(rig.Log.Entries, e => e.Message.Contains("evidence drifted (executable changed)", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_process_that_changes_its_uid_drifts_and_keeps_no_unix_identity()
    {
        using var rig = new InstanceRig();
        // perl (in every Debian base) waits for a line, then drops to uid 65534 without exec'ing.
        using var child = Child.Start("/usr/bin/perl", "-e", "$_ = <STDIN>; $< = $> = 65534; sleep 60;");
        var instance = await rig.ObserveAsync(child.Pid);
        var epoch = instance.Epoch;
        Assert.Contains(instance.Current.Evidence!.Selectors, s => s.ToString() == "unix:uid:0");
        Assert.True(instance.TryRecordSerial(epoch, "BB01", DateTimeOffset.UtcNow.AddMinutes(5)));

        await child.Process.StandardInput.WriteLineAsync("go");
        await child.Process.StandardInput.FlushAsync(TestContext.Current.CancellationToken);
        await Deadline.UntilAsync(() => InstanceRig.Ids(child.Pid).Uid == 65534, "the uid change");
        await rig.Tracker.RecheckAsync(instance, TestContext.Current.CancellationToken);

        Assert.True(instance.Epoch > epoch);
        Assert.DoesNotContain(instance.Current.Evidence!.Selectors, s => s.Type == "unix");   // the unix attestor refuses a changed uid
        var report = Assert.Single(rig.Reporter.Snapshot());
        Assert.Equal("uid changed", report.Reason);
        Assert.Equal(["BB01"], report.Serials);
    }

    [Fact]
    public async Task A_binary_replaced_at_its_path_takes_the_path_away_from_the_process_still_running_the_old_one()
    {
        using var dir = new TempDir();
        var path = dir.Combine("sleep");
        File.Copy("/bin/sleep", path);
        File.SetUnixFileMode(path, (UnixFileMode)0b111_101_101);
        using var rig = new InstanceRig();
        using var child = Child.Start(path, "60");
        var instance = await rig.ObserveAsync(child.Pid);
        var epoch = instance.Epoch;
        var hash = instance.Current.Evidence!.Selectors.Single(s => s.Value.StartsWith("sha256:", StringComparison.Ordinal));
        Assert.Contains(instance.Current.Evidence.Selectors, s => s.ToString() == $"unix:path:{Child.Resolve(path)}");

        // Another binary renamed over the path (a running executable cannot be written in place: ETXTBSY).
        var other = dir.Combine("other");
        File.Copy("/bin/true", other);
        File.Move(other, path, overwrite: true);

        await rig.Tracker.RecheckAsync(instance, TestContext.Current.CancellationToken);
        Assert.True(instance.Epoch > epoch);
        Assert.DoesNotContain(instance.Current.Evidence!.Selectors, s => s.Type == "unix" && s.Value.StartsWith("path:", StringComparison.Ordinal));
        Assert.Contains(hash, instance.Current.Evidence.Selectors);   // it still runs the old program: same hash
        Assert.Contains(rig.Log.Entries, e => e.Message.Contains("evidence drifted (executable path changed)", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Reports_wait_while_the_server_does_not_implement_them_and_are_delivered_later()
    {
        using var rig = new InstanceRig();
        rig.Server.ReportStatus = Grpc.Core.StatusCode.Unimplemented;
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        var run = rig.Reporter.RunAsync(cts.Token);
        rig.Reporter.Enqueue("1:2", ["0A"], [], "exited");
        rig.Reporter.Enqueue("3:4", [], ["j"], "uid changed");
        await Deadline.UntilAsync(() => rig.Log.Entries.Any(e => e.Message.Contains("does not implement ReportInstanceGone", StringComparison.Ordinal)), "the log line");
        Assert.Equal(2, rig.Reporter.Pending);
        Assert.Empty(rig.Server.Reports);

        rig.Server.ReportStatus = null;   // the server learnt the call
        await Deadline.UntilAsync(() => rig.Reporter.Pending == 0, "delivery", TimeSpan.FromSeconds(10));
        Assert.Equal(["1:2", "3:4"], rig.Server.Reports.Select(r => r.InstanceId));
        Assert.Equal("uid changed", rig.Server.Reports[1].Reason);
        Assert.Single(rig.Log.Entries, e => e.Message.Contains("does not implement ReportInstanceGone", StringComparison.Ordinal));   // logged once
        await cts.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => run);
    }

    [Fact]
    public async Task A_tick_over_many_instances_is_cheap()
    {
        using var rig = new InstanceRig();
        var children = Enumerable.Range(0, 50).Select(_ => Child.Start("/bin/sleep", "60")).ToList();
        try
        {
            foreach (var c in children)
            {
                await rig.ObserveAsync(c.Pid);
            }
            // Make every instance due, then run rounds (the first hashes nothing new: the hasher caches by file identity).
            var times = new List<double>();
            for (var i = 0; i < 3; i++)
            {
                foreach (var inst in rig.Tracker.Instances)
                {
                    inst.Refresh(inst.Current.Evidence!, DateTimeOffset.UtcNow.AddMinutes(-1));
                }
                await rig.Tracker.RecheckAllAsync(TestContext.Current.CancellationToken);
                times.Add(rig.Tracker.LastTickDuration.TotalMilliseconds);
            }
            TestContext.Current.SendDiagnosticMessage($"re-attestation round over 50 instances: {string.Join(", ", times.Select(t => $"{t:F1} ms"))}");
            Assert.Equal(50, rig.Tracker.Count);
            Assert.All(rig.Tracker.Instances, i => Assert.Equal(0, i.Epoch));   // nothing drifted
            Assert.True(times.Min() < 2000, $"a round over 50 instances took {times.Min():F0} ms");
        }
        finally
        {
            foreach (var c in children)
            {
                c.Dispose();
            }
        }
    }
}
