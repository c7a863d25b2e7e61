using System.Text.Json;
using Writ.IntegrationTests.Harness;

namespace Writ.IntegrationTests;

/// <summary>`writ bench revocation` runs as a real process and reports every level with sane figures (no timing asserted).</summary>
public sealed class RevocationBenchTests
{
    [Fact]
    public async Task Bench_revocation_reports_each_level_with_consistent_percentiles()
    {
        var r = await Proc.RunAsync("dotnet", [Repo.WritDll, "bench", "revocation", "--watchers", "1,5", "--revocations", "3", "--output", "json"], timeout: TimeSpan.FromMinutes(3));
        Assert.True(r.ExitCode == 0, r.ToString());
        using var doc = JsonDocument.Parse(r.Stdout);
        Assert.Equal("revocation", doc.RootElement.GetProperty("benchmark").GetString());
        Assert.Equal(250, doc.RootElement.GetProperty("goal_p99_ms").GetDouble());
        var levels = doc.RootElement.GetProperty("levels").EnumerateArray().ToList();
        Assert.Equal([1, 5], levels.Select(l => l.GetProperty("watchers").GetInt32()));
        foreach (var l in levels)
        {
            Assert.Equal(3, l.GetProperty("revocations").GetInt32());
            var p50 = l.GetProperty("stream_p50_ms").GetDouble();
            var p99 = l.GetProperty("stream_p99_ms").GetDouble();
            var all99 = l.GetProperty("all_streams_p99_ms").GetDouble();
            var max = l.GetProperty("max_ms").GetDouble();
            Assert.True(p50 > 0 && p50 <= p99 && p99 <= max && all99 <= max && all99 >= l.GetProperty("all_streams_p50_ms").GetDouble(), l.ToString());
        }

        var bad = await Proc.RunAsync("dotnet", [Repo.WritDll, "bench", "revocation", "--watchers", "0"]);
        Expect.OneLineError(bad, "--watchers '0'");
    }
}
