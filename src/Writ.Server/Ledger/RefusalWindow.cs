namespace Writ.Server.Ledger;

/// <summary>
/// The flood limit of refusal records (node attestations, workload refusals, CI logins): a fixed one-minute window in
/// which the first N refusals are recorded one by one and the rest only counted; the count travels in the next record
/// (<c>suppressed_before</c>). An attacker who floods refusals cannot fill the ledger, and cannot hide either: every
/// refusal is in a record or in a count.
/// </summary>
public sealed class RefusalWindow(int perMinute)
{
    private readonly Lock _lock = new();
    private long _windowStart = long.MinValue;
    private int _recorded;
    private long _suppressed;

    /// <summary>Whether to record this refusal now; when true, <paramref name="suppressedBefore"/> says how many went unrecorded since the last record.</summary>
    public bool TryRecord(DateTimeOffset now, out long suppressedBefore)
    {
        lock (_lock)
        {
            var minute = now.ToUnixTimeSeconds() / 60;
            if (minute != _windowStart)
            {
                _windowStart = minute;
                _recorded = 0;
            }
            if (_recorded >= perMinute)
            {
                _suppressed++;
                suppressedBefore = 0;
                return false;
            }
            _recorded++;
            suppressedBefore = _suppressed;
            _suppressed = 0;
            return true;
        }
    }
}

/// <summary>
/// One <see cref="RefusalWindow"/> per reporter (an agent's SPIFFE ID): one noisy agent cannot use up the others' budget.
/// The set of keys is bounded by the attested agents; a key is dropped when the map grows past <see cref="MaxKeys"/>.
/// </summary>
public sealed class RefusalWindows(int perMinute)
{
    public const int MaxKeys = 100_000;

    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, RefusalWindow> _windows = new(StringComparer.Ordinal);

    public int PerMinute => perMinute;

    public bool TryRecord(string key, DateTimeOffset now, out long suppressedBefore)
    {
        ArgumentNullException.ThrowIfNull(key);
        if (_windows.Count >= MaxKeys && !_windows.ContainsKey(key))
        {
            _windows.Clear();   // a fresh minute for everyone; bounded memory matters more than a precise count here
        }
        return _windows.GetOrAdd(key, _ => new RefusalWindow(perMinute)).TryRecord(now, out suppressedBefore);
    }
}
