using Writ.Agent.Instances;
using Writ.Agent.Tests.TestSupport;

namespace Writ.Agent.Tests.Instances;

/// <summary>Instance-gone reports are never lost silently: kept while the server cannot take them, and across restarts.</summary>
public sealed class InstanceReporterTests
{
    [Fact]
    public async Task Pending_reports_survive_a_restart_and_are_delivered_by_the_next_agent()
    {
        using var dir = new TempDir();
        var path = dir.Combine("pending-reports.json");
        using var server = new FakeAgentServer { ReportStatus = Grpc.Core.StatusCode.Unavailable };
        var log = new ListLogger();
        var first = new InstanceReporter(() => server, _ => null, TimeProvider.System, log, path);
        using (var cts = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken))
        {
            var run = first.RunAsync(cts.Token);
            first.Enqueue("10:20", ["0A", "0B"], ["jti-x"], "exited");
            first.Enqueue("30:40", ["0C"], [], "executable changed");
            first.Enqueue("50:60", [], [], "exited");   // nothing to revoke: not sent at all
            await Deadline.UntilAsync(() => log.Entries.Any(e => e.Message.Contains("Could not report instance 10:20", StringComparison.Ordinal)), "a failed attempt");
            await cts.CancelAsync();   // the agent stops
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => run);
        }
        Assert.Equal(2, first.Pending);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));

        server.ReportStatus = null;
        var second = new InstanceReporter(() => server, _ => null, TimeProvider.System, log, path);
        Assert.Equal(2, second.Pending);
        using var cts2 = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        var run2 = second.RunAsync(cts2.Token);
        await Deadline.UntilAsync(() => second.Pending == 0, "delivery after the restart");
        Assert.Equal(["10:20", "30:40"], server.Reports.Select(r => r.InstanceId));
        Assert.Equal(["0A", "0B"], server.Reports[0].SerialHex);
        Assert.Equal(["jti-x"], server.Reports[0].Jti);
        Assert.Equal("executable changed", server.Reports[1].Reason);
        await cts2.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => run2);
        // Nothing left for a third start.
        Assert.Equal(0, new InstanceReporter(() => server, _ => null, TimeProvider.System, log, path).Pending);
    }

    [Fact]
    public async Task A_report_the_server_rejects_as_invalid_is_dropped_loudly_and_the_rest_go_on()
    {
        using var server = new FakeAgentServer { ReportStatus = Grpc.Core.StatusCode.InvalidArgument };
        var log = new ListLogger();
        var reporter = new InstanceReporter(() => server, _ => null, TimeProvider.System, log);
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        var run = reporter.RunAsync(cts.Token);
        reporter.Enqueue("1:1", ["01"], [], "exited");
        await Deadline.UntilAsync(() => reporter.Pending == 0, "the drop");
        Assert.Contains(log.Entries, e => e.Level == Microsoft.Extensions.Logging.LogLevel.Error && e.Message.Contains("Report of instance 1:1 gone dropped", StringComparison.Ordinal));
        await cts.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => run);
    }
}
