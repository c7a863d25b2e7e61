using Writ.Agent.PeerTracking;
using Writ.Agent.Tests.TestSupport;

namespace Writ.Agent.Tests.PeerTracking;

public sealed class ProcessPinTests
{
    [Fact]
    public void Pins_a_live_child_and_stops_recognising_it_once_it_has_exited()
    {
        using Child child = Child.Start("/usr/bin/sleep", "30");
        Assert.True(ProcessPin.TryCreate(ProcFs.Host, child.Pid, out ProcessPin? pin, out string? error), error);
        Assert.Equal(child.Pid, pin!.Pid);
        Assert.True(pin.StartTimeTicks > 0);
        Assert.Equal(File.ReadAllText("/proc/sys/kernel/random/boot_id").Trim(), pin.BootId);
        Assert.NotNull(pin.Executable);
        Assert.True(pin.IsSameProcess(ProcFs.Host));

        child.KillAndWait();

        Assert.False(pin.IsSameProcess(ProcFs.Host));
        Assert.False(pin.Verify(ProcFs.Host, out string? reason));
        Assert.Contains($"{child.Pid}", reason, StringComparison.Ordinal);
    }

    [Fact]
    public void Unknown_or_invalid_pids_cannot_be_pinned()
    {
        int pidMax = int.Parse(File.ReadAllText("/proc/sys/kernel/pid_max").Trim(), System.Globalization.CultureInfo.InvariantCulture);
        foreach (int pid in new[] { pidMax, pidMax + 1, 0, -1 })
        {
            Assert.False(ProcessPin.TryCreate(ProcFs.Host, pid, out ProcessPin? pin, out string? error));
            Assert.Null(pin);
            Assert.False(string.IsNullOrWhiteSpace(error));
            Assert.DoesNotContain('\n', error!);
        }
    }

    [Theory]
    [InlineData("a) b (c")]
    [InlineData("x) (y z")]
    [InlineData(") 1 2 (")]
    public void Parses_the_start_time_of_a_process_whose_name_contains_parentheses_and_spaces(string name)
    {
        using var dir = new TempDir();
        string trick = dir.Combine(name);
        File.Copy("/usr/bin/sleep", trick);
        File.SetUnixFileMode(trick, (UnixFileMode)0b111_101_101);
        using Child reference = Child.Start("/usr/bin/sleep", "30");
        using Child child = Child.Start(trick, "30");
        Assert.Contains($"({name})", File.ReadAllText($"/proc/{child.Pid}/stat"), StringComparison.Ordinal);

        Assert.True(ProcessPin.TryCreate(ProcFs.Host, child.Pid, out ProcessPin? pin, out string? error), error);
        Assert.True(ProcessPin.TryCreate(ProcFs.Host, reference.Pid, out ProcessPin? refPin, out error), error);
        Assert.True(ProcStat.TryRead(ProcFs.Host, child.Pid, out ProcStat? stat, out error), error);
        Assert.Equal(name, stat!.Comm);
        Assert.Equal(Environment.ProcessId, stat.ParentPid);
        Assert.Contains(stat.State, "RS"); // running or sleeping: a mis-parsed line would give a digit
        // Started right after the reference process (clock ticks are 1/100 s): a mis-parsed field
        // would be far off.
        Assert.InRange(pin!.StartTimeTicks, refPin!.StartTimeTicks, refPin.StartTimeTicks + 1000);
        Assert.True(pin.IsSameProcess(ProcFs.Host));
    }

    [Fact]
    public void A_recycled_pid_is_not_the_same_process()
    {
        using var proc = new FakeProc();
        proc.Write(4242, "stat", FakeProc.StatLine(4242, "worker", 'S', 1000));
        Assert.True(ProcessPin.TryCreate(proc, 4242, out ProcessPin? pin, out string? error), error);
        Assert.Null(pin!.Executable);
        Assert.True(pin.IsSameProcess(proc));

        proc.Write(4242, "stat", FakeProc.StatLine(4242, "worker", 'S', 1001));

        Assert.False(pin.Verify(proc, out string? reason));
        Assert.Contains("another process", reason, StringComparison.Ordinal);
    }

    [Fact]
    public void An_executable_that_was_unreadable_when_pinned_and_is_readable_now_means_an_exec()
    {
        using var proc = new FakeProc();
        proc.Write(4243, "stat", FakeProc.StatLine(4243, "worker", 'S', 1000));
        Assert.True(ProcessPin.TryCreate(proc, 4243, out ProcessPin? pin, out _));
        Assert.Null(pin!.Executable);
        File.CreateSymbolicLink(Path.Combine(proc.Root, "4243", "exe"), "/usr/bin/sleep");

        Assert.False(pin.Verify(proc, out string? reason));
        Assert.Contains("executed another program", reason, StringComparison.Ordinal);
    }

    [Fact]
    public void A_pin_from_another_boot_is_not_the_same_process()
    {
        using var proc = new FakeProc();
        proc.Write(7, "stat", FakeProc.StatLine(7, "w", 'S', 50));
        Assert.True(ProcessPin.TryCreate(proc, 7, out ProcessPin? pin, out _));
        proc.BootId = "6b1d2c1e-0000-4000-8000-000000000002";
        Assert.False(pin!.IsSameProcess(proc));
    }

    [Fact]
    public void A_zombie_cannot_be_pinned_and_a_pinned_process_that_became_a_zombie_is_not_the_same()
    {
        using var proc = new FakeProc();
        proc.Write(9, "stat", FakeProc.StatLine(9, "w", 'Z', 50));
        Assert.False(ProcessPin.TryCreate(proc, 9, out _, out string? error));
        Assert.Contains("exited", error, StringComparison.Ordinal);

        proc.Write(9, "stat", FakeProc.StatLine(9, "w", 'S', 50));
        Assert.True(ProcessPin.TryCreate(proc, 9, out ProcessPin? pin, out _));
        proc.Write(9, "stat", FakeProc.StatLine(9, "w", 'Z', 50));
        Assert.False(pin!.IsSameProcess(proc));
    }

    [Theory]
    [InlineData("x) R 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 999 ) S")] // tries to inject a start time of 999
    [InlineData(") (")]
    [InlineData("((((")]
    [InlineData("))))")]
    [InlineData("")]
    [InlineData("a b c d e f")]
    public void Stat_parsing_takes_fields_after_the_last_parenthesis_whatever_the_name(string comm)
    {
        string line = FakeProc.StatLine(321, comm, 'S', 123456).TrimEnd('\n');
        Assert.True(ProcStat.TryParse(line, out ProcStat? stat, out string? error), error);
        Assert.Equal(321, stat!.Pid);
        Assert.Equal(comm, stat.Comm);
        Assert.Equal('S', stat.State);
        Assert.Equal(1, stat.ParentPid);
        Assert.Equal(123456UL, stat.StartTimeTicks);
    }

    [Theory]
    [InlineData("")]
    [InlineData("321 no-parens S 1")]
    [InlineData("(x) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20")]
    [InlineData("321 (x) S 1 2 3")]
    [InlineData("321 (x) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 notanumber 0")]
    [InlineData("321 (x) SS 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5 0")]
    public void Malformed_stat_lines_are_errors_not_exceptions(string line)
    {
        Assert.False(ProcStat.TryParse(line, out ProcStat? stat, out string? error));
        Assert.Null(stat);
        Assert.False(string.IsNullOrWhiteSpace(error));
    }

    [Fact]
    public void A_stat_file_that_names_another_pid_is_rejected()
    {
        using var proc = new FakeProc();
        proc.Write(10, "stat", FakeProc.StatLine(11, "w", 'S', 50));
        Assert.False(ProcessPin.TryCreate(proc, 10, out _, out string? error));
        Assert.Contains("inconsistent", error, StringComparison.Ordinal);
    }

    [Fact]
    public void An_exec_after_pinning_is_detected()
    {
        // dash reads a line, then execs sleep: same pid, same start time, another program.
        using Child child = Child.Start("/usr/bin/dash", "-c", "read x; exec /usr/bin/sleep 30");
        Assert.True(ProcessPin.TryCreate(ProcFs.Host, child.Pid, out ProcessPin? pin, out string? error), error);
        Assert.True(pin!.IsSameProcess(ProcFs.Host));

        child.Process.StandardInput.WriteLine("go");
        child.Process.StandardInput.Flush();
        string sleep = Child.Resolve("/usr/bin/sleep");
        Wait.Until(() => Child.ExeOf(child.Pid) == sleep, "exec of sleep");

        Assert.True(ProcStat.TryRead(ProcFs.Host, child.Pid, out ProcStat? stat, out _));
        Assert.Equal(pin.StartTimeTicks, stat!.StartTimeTicks); // the start time alone cannot see it
        Assert.False(pin.Verify(ProcFs.Host, out string? reason));
        Assert.Contains("executed another program", reason, StringComparison.Ordinal);
    }
}
