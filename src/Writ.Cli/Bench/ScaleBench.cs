using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Serialization;
using Writ.Cli.Admin;
using Writ.Protocol.Admin;
using Writ.Spiffe;
using ProtoEntry = Writ.Protocol.Agent.Entry;
using ProtoSelector = Writ.Protocol.Agent.Selector;

namespace Writ.Cli.Bench;

public sealed record ScaleResult(
    [property: JsonPropertyName("benchmark")] string Benchmark,
    [property: JsonPropertyName("store")] string Store,
    [property: JsonPropertyName("entries")] int Entries,
    [property: JsonPropertyName("batch_size")] int BatchSize,
    [property: JsonPropertyName("entry_create_per_second")] double CreatePerSecond,
    [property: JsonPropertyName("startup_empty_ms")] double StartupEmptyMs,
    [property: JsonPropertyName("rss_empty_mb")] double RssEmptyMb,
    [property: JsonPropertyName("startup_ms")] double StartupMs,
    [property: JsonPropertyName("rss_mb")] double RssMb);

/// <summary>
/// `writ bench scale --entries N` (partial): a real `writ server run` process on SQLite in a temporary directory — its
/// cold start-up time and resident memory empty; N registration entries created through its admin API in batches;
/// then a fresh server process on that store, its start-up time and memory. (Agent sync and many connected agents, and
/// PostgreSQL, are not measured yet.)
/// </summary>
public static class ScaleBench
{
    public const int BatchSize = 1000;
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(120);

    public static async Task<ScaleResult> RunAsync(int entries, TextWriter progress, CancellationToken ct)
    {
        var dir = Directory.CreateTempSubdirectory("ws-").FullName;
        try
        {
            var td = TrustDomain.Parse("bench.writ");
            var dataDir = Path.Combine(dir, "server");
            var adminSocket = Path.Combine(dataDir, "admin.sock");
            double createRate;
            var (first, startupEmpty) = await StartServerAsync(td, dataDir, ct).ConfigureAwait(false);
            double rssEmpty;
            using (first)
            {
                try
                {
                    rssEmpty = RssMb(first);
                    using var admin = new AdminConnection(adminSocket);
                    var parent = td.IdString + "/writ/agent/join_token/bench";
                    var sw = Stopwatch.StartNew();
                    for (var start = 0; start < entries; start += BatchSize)
                    {
                        var request = new CreateEntriesRequest();
                        for (var i = start; i < Math.Min(entries, start + BatchSize); i++)
                        {
                            request.Entries.Add(new ProtoEntry
                            {
                                SpiffeId = $"{td.IdString}/ns/bench/sa/workload-{i}",
                                ParentId = parent,
                                Selectors = { new ProtoSelector { Type = "unix", Value = $"uid:{100000 + i}" } },
                            });
                        }
                        await admin.CallAsync(s => s.CreateEntriesAsync(request, cancellationToken: ct)).ConfigureAwait(false);
                        if ((start / BatchSize) % 50 == 49)
                        {
                            progress.WriteLine($"{start + BatchSize} entries created");
                        }
                    }
                    createRate = entries / sw.Elapsed.TotalSeconds;
                }
                finally
                {
                    Stop(first);
                }
            }
            var (second, startup) = await StartServerAsync(td, dataDir, ct).ConfigureAwait(false);
            using (second)
            {
                try
                {
                    return new ScaleResult("scale", "sqlite", entries, BatchSize, BenchTiming.Round(createRate), BenchTiming.Round(startupEmpty),
                        BenchTiming.Round(rssEmpty), BenchTiming.Round(startup), BenchTiming.Round(RssMb(second)));
                }
                finally
                {
                    Stop(second);
                }
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>Starts `writ server run` (this same executable) and waits for its "ready" line; returns it and the time taken.</summary>
    private static async Task<(Process Server, double Ms)> StartServerAsync(TrustDomain td, string dataDir, CancellationToken ct)
    {
        var host = Environment.ProcessPath ?? throw new InvalidOperationException("cannot tell which executable runs this process");
        var psi = new ProcessStartInfo(host) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        if (Path.GetFileNameWithoutExtension(host) == "dotnet")
        {
            psi.ArgumentList.Add(typeof(ScaleBench).Assembly.Location);
        }
        foreach (var a in new[] { "server", "run", "--trust-domain", td.Name, "--data-dir", dataDir, "--bind", "127.0.0.1:0", "--log-level", "error" })
        {
            psi.ArgumentList.Add(a);
        }
        var sw = Stopwatch.StartNew();
        var p = Process.Start(psi) ?? throw new CommandLine.CommandFailedException("could not start a writ server process for the benchmark");
        _ = p.StandardError.ReadToEndAsync(ct);
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
        deadline.CancelAfter(StartTimeout);
        try
        {
            while (await p.StandardOutput.ReadLineAsync(deadline.Token).ConfigureAwait(false) is { } line)
            {
                if (line.StartsWith("ready ", StringComparison.Ordinal))
                {
                    return (p, sw.Elapsed.TotalMilliseconds);
                }
            }
            throw new CommandLine.CommandFailedException($"the benchmark's server exited (code {(p.HasExited ? p.ExitCode : -1)}) before it was ready");
        }
        catch
        {
            Stop(p);
            p.Dispose();
            throw;
        }
    }

    private static void Stop(Process p)
    {
        if (!p.HasExited)
        {
            p.Kill(entireProcessTree: true);
            p.WaitForExit(TimeSpan.FromSeconds(30));
        }
    }

    /// <summary>Resident set size of a process, from /proc/PID/status (VmRSS), in MiB.</summary>
    private static double RssMb(Process p)
    {
        foreach (var line in File.ReadLines($"/proc/{p.Id}/status"))
        {
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
            {
                var kb = line["VmRSS:".Length..].Trim().Split(' ')[0];
                return double.Parse(kb, CultureInfo.InvariantCulture) / 1024;
            }
        }
        return 0;
    }
}
