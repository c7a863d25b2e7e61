using System.Text.Json;
using Writ.IntegrationTests.Harness;

namespace Writ.IntegrationTests;

/// <summary>`writ bench pipeline` runs as a real process and reports every figure, positive and consistent. No timing is asserted.</summary>
public sealed class PipelineBenchTests
{
    [Fact]
    public async Task Pipeline_bench_reports_rates_stages_and_the_overhead()
    {
        var r = await Proc.RunAsync("dotnet", [Repo.WritDll, "bench", "pipeline", "--seconds", "0.5", "--output", "json"], timeout: TimeSpan.FromMinutes(3));
        Assert.True(r.ExitCode == 0, r.ToString());
        using var doc = JsonDocument.Parse(r.Stdout);
        var j = doc.RootElement;
        Assert.Equal("pipeline", j.GetProperty("benchmark").GetString());
        Assert.Equal("sqlite", j.GetProperty("store").GetString());
        var rows = j.GetProperty("rows").EnumerateArray().ToList();
        Assert.Equal(6, rows.Count);
        foreach (var row in rows)
        {
            var rate = row.GetProperty("svids_per_second").GetDouble();
            var us = row.GetProperty("us_per_svid").GetDouble();
            Assert.True(rate > 0 && us > 0, row.ToString());
            Assert.InRange(rate * us / 1e6, 0.9, 1.1);   // the two columns say the same thing
        }
        foreach (var stage in new[] { "match_us", "policy_us", "sign_us", "record_json_us", "ledger_write_us" })
        {
            Assert.True(j.GetProperty("stages").GetProperty(stage).GetDouble() > 0, stage);
        }
        Assert.True(j.GetProperty("pipeline_to_sign_ratio").GetDouble() is > 0 and < 1.5);

        var table = await Proc.RunAsync("dotnet", [Repo.WritDll, "bench", "pipeline", "--seconds", "0.2"], timeout: TimeSpan.FromMinutes(3));
        Assert.True(table.ExitCode == 0, table.ToString());
        Assert.Contains("ledger write (one transaction)", table.Stdout, StringComparison.Ordinal);
        Assert.Contains("pipeline overhead over signing alone", table.Stdout, StringComparison.Ordinal);
        Expect.OneLineError(await Proc.RunAsync("dotnet", [Repo.WritDll, "bench", "pipeline", "--seconds", "x"]), "--seconds");
    }
}
