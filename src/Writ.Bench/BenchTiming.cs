using System.Diagnostics;

namespace Writ.Bench;

/// <summary>One operation a benchmark repeats: a name and the call (synchronous or asynchronous).</summary>
public sealed record BenchOp(string Name, Func<ValueTask> Run)
{
    public static BenchOp Sync(string name, Action run) => new(name, () =>
    {
        run();
        return ValueTask.CompletedTask;
    });
}

/// <summary>What a measured operation did: how many calls in how long, and (when timed one by one) their latencies.</summary>
public sealed class BenchSample(string name)
{
    private readonly List<long> _ticks = [];

    public string Name { get; } = name;

    public long Count { get; private set; }

    public long ElapsedTicks { get; private set; }

    public double PerSecond => ElapsedTicks == 0 ? 0 : Count * (double)Stopwatch.Frequency / ElapsedTicks;

    public double MicrosecondsPerOp => Count == 0 ? 0 : ElapsedTicks * 1e6 / Stopwatch.Frequency / Count;

    internal void Add(long count, long ticks) => (Count, ElapsedTicks) = (Count + count, ElapsedTicks + ticks);

    internal void AddLatency(long ticks) => _ticks.Add(ticks);

    /// <summary>The <paramref name="p"/>-th percentile latency (nearest rank) in microseconds; 0 when nothing was timed.</summary>
    public double PercentileMicroseconds(double p)
    {
        if (_ticks.Count == 0)
        {
            return 0;
        }
        var sorted = _ticks.Order().ToArray();
        var rank = (int)Math.Ceiling(p / 100.0 * sorted.Length) - 1;
        return sorted[Math.Clamp(rank, 0, sorted.Length - 1)] * 1e6 / Stopwatch.Frequency;
    }
}

/// <summary>
/// Runs operations in interleaved slices (a quarter second each, round-robin) until each has run for the requested time,
/// so that load from other processes on a shared machine hits all of them alike and their ratios stay meaningful.
/// </summary>
public static class BenchTiming
{
    public static readonly TimeSpan Slice = TimeSpan.FromMilliseconds(250);

    /// <summary>Throughput: each op is called back to back; returns one sample per op, in order.</summary>
    public static async Task<IReadOnlyList<BenchSample>> ThroughputAsync(IReadOnlyList<BenchOp> ops, TimeSpan each, CancellationToken ct) =>
        await RunAsync(ops, each, timeEachCall: false, ct).ConfigureAwait(false);

    /// <summary>Latency: each call is timed on its own (for percentiles).</summary>
    public static async Task<IReadOnlyList<BenchSample>> LatencyAsync(IReadOnlyList<BenchOp> ops, TimeSpan each, CancellationToken ct) =>
        await RunAsync(ops, each, timeEachCall: true, ct).ConfigureAwait(false);

    private static async Task<IReadOnlyList<BenchSample>> RunAsync(IReadOnlyList<BenchOp> ops, TimeSpan each, bool timeEachCall, CancellationToken ct)
    {
        if (each <= TimeSpan.Zero)
        {
            throw new ArgumentException("the measuring time must be positive", nameof(each));
        }
        // Warm-up: let the JIT reach its optimized code and caches fill before anything is counted.
        var warmup = TimeSpan.FromMilliseconds(Math.Min(500, each.TotalMilliseconds / 2));
        foreach (var op in ops)
        {
            await RunSliceAsync(op, new BenchSample(op.Name), warmup, timeEachCall, ct).ConfigureAwait(false);
        }
        var samples = ops.Select(o => new BenchSample(o.Name)).ToArray();
        var target = (long)(each.TotalSeconds * Stopwatch.Frequency);
        while (samples.Any(s => s.ElapsedTicks < target))
        {
            for (var i = 0; i < ops.Count; i++)
            {
                var left = target - samples[i].ElapsedTicks;
                if (left <= 0)
                {
                    continue;
                }
                var slice = TimeSpan.FromSeconds(Math.Min(left, (long)(Slice.TotalSeconds * Stopwatch.Frequency)) / (double)Stopwatch.Frequency);
                await RunSliceAsync(ops[i], samples[i], slice, timeEachCall, ct).ConfigureAwait(false);
            }
        }
        return samples;
    }

    private static async Task RunSliceAsync(BenchOp op, BenchSample sample, TimeSpan duration, bool timeEachCall, CancellationToken ct)
    {
        var limit = (long)(duration.TotalSeconds * Stopwatch.Frequency);
        var start = Stopwatch.GetTimestamp();
        long count = 0;
        var now = start;
        do
        {
            ct.ThrowIfCancellationRequested();
            var before = now;
            await op.Run().ConfigureAwait(false);
            now = Stopwatch.GetTimestamp();
            if (timeEachCall)
            {
                sample.AddLatency(now - before);
            }
            count++;
        }
        while (now - start < limit);
        sample.Add(count, now - start);
    }

    /// <summary>The rate of two operations done one after the other: 1 / (1/a + 1/b).</summary>
    public static double Serial(double a, double b) => a <= 0 || b <= 0 ? 0 : 1 / ((1 / a) + (1 / b));

    public static double Round(double v, int digits = 1) => Math.Round(v, digits, MidpointRounding.AwayFromZero);
}
