using Microsoft.Extensions.Logging;

namespace Writ.Workload;

/// <summary>How the SDK reaches the Workload API and how its sources wait and retry.</summary>
public class WorkloadApiOptions
{
    /// <summary>The Workload API address (<c>unix:///path</c> or <c>unix:/path</c>); null: <c>SPIFFE_ENDPOINT_SOCKET</c>.</summary>
    public string? Address { get; set; }

    /// <summary>How long <c>CreateAsync</c> waits for the first update before failing with WRIT-SDK-TIMEOUT. Default 30 s.</summary>
    public TimeSpan InitialTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>First reconnect delay after a stream failed. Default 1 s.</summary>
    public TimeSpan InitialBackoff { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Longest reconnect delay (the backoff doubles up to it, with jitter). Default 30 s.</summary>
    public TimeSpan MaxBackoff { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Clock for expiry checks, cache ages and backoff delays.</summary>
    public TimeProvider TimeProvider { get; set; } = TimeProvider.System;

    /// <summary>Jitter source: returns a number in [0, 1). Default <see cref="Random.Shared"/>.</summary>
    public Func<double> Jitter { get; set; } = () => Random.Shared.NextDouble();

    /// <summary>Where the SDK logs (event ids 5000–5049); null: nowhere.</summary>
    public ILoggerFactory? LoggerFactory { get; set; }

    internal void Check()
    {
        if (InitialTimeout <= TimeSpan.Zero || InitialBackoff <= TimeSpan.Zero || MaxBackoff < InitialBackoff)
        {
            throw new ArgumentException("InitialTimeout and InitialBackoff must be positive and MaxBackoff at least InitialBackoff");
        }
        ArgumentNullException.ThrowIfNull(TimeProvider);
        ArgumentNullException.ThrowIfNull(Jitter);
    }
}
