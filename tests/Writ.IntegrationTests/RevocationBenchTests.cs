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
        Expect.OneLineError(await Proc.RunAsync("dotnet", [Repo.WritDll, "bench", "revocation", "--seconds", "0"]), "--seconds '0'");
    }

    /// <summary>
    /// `--seconds` bounds each level: no round starts once it has passed. Ten thousand revocations (each waits for the
    /// stream's update and the re-signed SVID) cannot fit in a second, so fewer is the bound's doing; no time is compared.
    /// </summary>
    [Fact]
    public async Task Bench_revocation_with_seconds_stops_each_level_once_the_bound_has_passed()
    {
        var r = await Proc.RunAsync("dotnet", [Repo.WritDll, "bench", "revocation", "--watchers", "1,2", "--revocations", "10000", "--seconds", "1", "--output", "json"],
            timeout: TimeSpan.FromMinutes(3));
        Assert.True(r.ExitCode == 0, r.ToString());
        using var doc = JsonDocument.Parse(r.Stdout);
        var levels = doc.RootElement.GetProperty("levels").EnumerateArray().ToList();
        Assert.Equal([1, 2], levels.Select(l => l.GetProperty("watchers").GetInt32()));
        Assert.All(levels, l => Assert.InRange(l.GetProperty("revocations").GetInt32(), 1, 9999));
    }
}
