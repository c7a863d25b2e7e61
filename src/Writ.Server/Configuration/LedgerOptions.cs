using System.Globalization;

namespace Writ.Server.Configuration;

/// <summary>
/// Limits that keep a registered workload (or a compromised agent) from flooding the ledger and the database, and the
/// ledger's signed checkpoints (issue #12 items 7 and 9). Rates are per minute (a token bucket that holds one minute's
/// worth); 0 turns a rate limit off.
/// </summary>
public sealed record LedgerOptions
{
    /// <summary>At most this many audiences in one JWT-SVID request.</summary>
    public int MaxAudiences { get; init; } = 16;

    /// <summary>At most this many bytes in one MintJwtSvid request, or in one CSR (with its evidence) of a SignX509Svids request.</summary>
    public int MaxRequestBytes { get; init; } = 64 * 1024;

    /// <summary>Credentials (X.509 and JWT) one agent may have issued per minute.</summary>
    public int IssuancePerAgent { get; init; } = 10_000;

    /// <summary>Credentials one workload (registration entry, on one agent) may have issued per minute.</summary>
    public int IssuancePerWorkload { get; init; } = 120;

    /// <summary>Refusals recorded in the ledger per minute for one agent; the rest are counted in the next record.</summary>
    public int DenialsPerAgent { get; init; } = 600;

    /// <summary>Refusals recorded in the ledger per minute for one workload; the rest are counted in the next record.</summary>
    public int DenialsPerWorkload { get; init; } = 10;

    /// <summary>How often the ledger head is signed as a checkpoint.</summary>
    public TimeSpan CheckpointInterval { get; init; } = TimeSpan.FromMinutes(1);

    public static readonly IReadOnlyList<ConfigKey> Keys =
    [
        new("issuance.max_audiences", "16", "At most this many audiences in one JWT-SVID request."),
        new("issuance.max_request_bytes", "65536", "At most this many bytes in one JWT-SVID request or one CSR with its evidence."),
        new("issuance.rate_per_agent", "10000", "Credentials one agent may have issued per minute, X.509 and JWT counted apart (0: no limit)."),
        new("issuance.rate_per_workload", "120", "Credentials one workload (entry, per agent) may have issued per minute, X.509 and JWT counted apart (0: no limit)."),
        new("ledger.denials_per_agent", "600", "Refusals recorded per minute for one agent; the rest are counted in the next record (0: record all)."),
        new("ledger.denials_per_workload", "10", "Refusals recorded per minute for one workload; the rest are counted in the next record (0: record all)."),
        new("ledger.checkpoint_interval", "1m", "How often the ledger head is signed as a checkpoint (checkpoint.key, checkpoints.jsonl in the data dir)."),
    ];

    public static LedgerOptions Build(ConfigSources c)
    {
        ArgumentNullException.ThrowIfNull(c);
        return new LedgerOptions
        {
            MaxAudiences = Int(c, "issuance.max_audiences", 1, 1000),
            MaxRequestBytes = Int(c, "issuance.max_request_bytes", 4096, 16 << 20),
            IssuancePerAgent = Int(c, "issuance.rate_per_agent", 0, 10_000_000),
            IssuancePerWorkload = Int(c, "issuance.rate_per_workload", 0, 10_000_000),
            DenialsPerAgent = Int(c, "ledger.denials_per_agent", 0, 10_000_000),
            DenialsPerWorkload = Int(c, "ledger.denials_per_workload", 0, 10_000_000),
            CheckpointInterval = c.Duration("ledger.checkpoint_interval", TimeSpan.FromMilliseconds(100), TimeSpan.FromDays(1)),
        };
    }

    private static int Int(ConfigSources c, string name, int min, int max)
    {
        var v = c.Get(name);
        if (!int.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out var n) || n < min || n > max)
        {
            c.Errors.Add($"{c.Describe(name)} must be a whole number from {min} to {max}, got '{v}'");
            return min;
        }
        return n;
    }
}
