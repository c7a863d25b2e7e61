namespace Writ.Workload;

/// <summary>Exponential backoff with jitter: the n-th delay is d/2 + jitter·d/2 with d = min(max, initial·2ⁿ).</summary>
internal sealed class Backoff(TimeSpan initial, TimeSpan max, Func<double> jitter)
{
    private int _attempt;

    public TimeSpan Next()
    {
        var d = initial.TotalMilliseconds * Math.Pow(2, Math.Min(_attempt, 30));
        d = Math.Min(d, max.TotalMilliseconds);
        _attempt++;
        var j = Math.Clamp(jitter(), 0, 1);
        return TimeSpan.FromMilliseconds(d / 2 + j * d / 2);
    }

    public void Reset() => _attempt = 0;
}
