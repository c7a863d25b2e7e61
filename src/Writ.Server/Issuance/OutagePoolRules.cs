using Writ.Server.Registration;
using Writ.Server.Storage;

namespace Writ.Server.Issuance;

/// <summary>
/// The rules of the outage pool (issue #16 item 5): pre-signed X.509-SVIDs an agent keeps for an entry that opted in, so
/// a new instance starting while no server is reachable still gets an identity. Stable codes (docs/errors.md).
/// </summary>
public static class OutagePoolRules
{
    /// <summary>The largest pool an entry may ask for: a compromised agent holds at most this many unused SVIDs per entry.</summary>
    public const int MaxPool = 16;

    public const string TooLargeCode = "WRIT-ENTRY-OUTAGE-POOL";
    public const string NotEnabledCode = "WRIT-ISSUE-POOL-NOT-ENABLED";
    public const string FullCode = "WRIT-ISSUE-POOL-FULL";
    public const string UnknownSerialCode = "WRIT-ISSUE-POOL-UNKNOWN-SERIAL";
    public const string BadReportCode = "WRIT-ISSUE-POOL-BAD-REPORT";

    /// <summary>Refuses entries whose outage_pool is negative or above <see cref="MaxPool"/>, before anything is written.</summary>
    public static void Check(IReadOnlyList<RegistrationEntry> entries)
    {
        ArgumentNullException.ThrowIfNull(entries);
        for (var i = 0; i < entries.Count; i++)
        {
            var e = entries[i];
            if (e.OutagePool is < 0 or > MaxPool)
            {
                var label = entries.Count == 1 ? "entry" : $"entry {i}";
                throw new ValidationException(
                    $"{label}: outage_pool {e.OutagePool} is outside 0..{MaxPool}; give 0 (off) or a small pool, e.g. --outage-pool 2", TooLargeCode);
            }
        }
    }
}
