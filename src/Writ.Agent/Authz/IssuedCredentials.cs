using System.Collections.Concurrent;
using Writ.Agent.Instances;
using Writ.Agent.Sync;

namespace Writ.Agent.Authz;

/// <summary>
/// Which local workload instance, and under which epoch, each X.509 serial and JWT id this agent obtained was issued to —
/// kept until the credential expires, also after the instance exited (the tracker forgets it, this index does not), so
/// a request-time decision can refuse the credential of a process that is gone or changed on its very next request.
/// Bounded: beyond <see cref="MaxEntries"/> the expired ones are dropped, then the oldest.
/// </summary>
public sealed class IssuedCredentials
{
    public const int MaxEntries = 100_000;

    private readonly ConcurrentDictionary<string, Issued> _serials = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, Issued> _jtis = new(StringComparer.Ordinal);

    /// <summary>An issued credential: its instance (the live object), the epoch it was issued under, its expiry.</summary>
    public sealed record Issued(WorkloadInstance Instance, long Epoch, DateTimeOffset ExpiresAt);

    public int Count => _serials.Count + _jtis.Count;

    public void RecordSerial(string serialHex, WorkloadInstance instance, long epoch, DateTimeOffset expiresAt, DateTimeOffset now) =>
        Record(_serials, RevocationSet.NormalizeSerial(serialHex), new Issued(instance, epoch, expiresAt), now);

    public void RecordJti(string jti, WorkloadInstance instance, long epoch, DateTimeOffset expiresAt, DateTimeOffset now)
    {
        if (jti.Length > 0)
        {
            Record(_jtis, jti, new Issued(instance, epoch, expiresAt), now);
        }
    }

    public Issued? BySerial(string serialHex) => _serials.TryGetValue(RevocationSet.NormalizeSerial(serialHex), out var i) ? i : null;

    public Issued? ByJti(string jti) => _jtis.TryGetValue(jti, out var i) ? i : null;

    private static void Record(ConcurrentDictionary<string, Issued> map, string key, Issued issued, DateTimeOffset now)
    {
        if (map.Count >= MaxEntries)
        {
            foreach (var (k, v) in map)
            {
                if (v.ExpiresAt <= now)
                {
                    map.TryRemove(k, out _);
                }
            }
            if (map.Count >= MaxEntries)
            {
                foreach (var k in map.OrderBy(p => p.Value.ExpiresAt).Take(MaxEntries / 10).Select(p => p.Key).ToList())
                {
                    map.TryRemove(k, out _);
                }
            }
        }
        map[key] = issued;
    }
}
