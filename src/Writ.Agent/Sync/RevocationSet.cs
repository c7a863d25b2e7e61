using Writ.Spiffe.X509;
using Writ.Protocol.Agent;

namespace Writ.Agent.Sync;

/// <summary>
/// The revoked X.509 serials and JWT ids this agent knows of (pushed by the server over Sync). Thread-safe. An entry is
/// forgotten once the credential it revokes has expired anyway.
/// </summary>
public sealed class RevocationSet
{
    private readonly Lock _lock = new();
    private readonly Dictionary<string, Revocation> _serials = new(StringComparer.OrdinalIgnoreCase);
    private readonly Dictionary<string, Revocation> _jtis = new(StringComparer.Ordinal);
    private long _revision;

    /// <summary>Raised after every change of the set (a revocation learnt, an expired one forgotten).</summary>
    public Writ.Protocol.ChangeSignal Changed { get; } = new();

    /// <summary>Grows with every change of the set (relying parties watching it compare revisions).</summary>
    public long Revision => Interlocked.Read(ref _revision);

    /// <summary>Records the revocations; returns how many were new.</summary>
    public int Add(IEnumerable<Revocation> revocations)
    {
        var added = 0;
        lock (_lock)
        {
            foreach (var r in revocations)
            {
                if (r.SerialHex.Length > 0)
                    added += _serials.TryAdd(NormalizeSerial(r.SerialHex), r) ? 1 : 0;
                else if (r.Jti.Length > 0)
                    added += _jtis.TryAdd(r.Jti, r) ? 1 : 0;
            }
            if (added > 0)
            {
                _revision++;
            }
        }
        if (added > 0)
        {
            Changed.Raise();
        }
        return added;
    }

    public bool IsSerialRevoked(string serialHex) => SerialRevocation(serialHex) is not null;

    /// <summary>The revocation of this serial (with the server's reason), or null.</summary>
    public Revocation? SerialRevocation(string serialHex)
    {
        lock (_lock)
            return _serials.Count > 0 && _serials.TryGetValue(NormalizeSerial(serialHex), out var r) ? r : null;
    }

    /// <summary>The revocation of this JWT id (with the server's reason), or null.</summary>
    public Revocation? JtiRevocation(string jti)
    {
        lock (_lock)
            return _jtis.Count > 0 && _jtis.TryGetValue(jti, out var r) ? r : null;
    }

    /// <summary>The whole set at one revision: normalised serials and JWT ids, each sorted.</summary>
    public (IReadOnlyList<string> Serials, IReadOnlyList<string> Jtis, long Revision) Snapshot()
    {
        lock (_lock)
            return ([.. _serials.Keys.Order(StringComparer.Ordinal)], [.. _jtis.Keys.Order(StringComparer.Ordinal)], _revision);
    }

    /// <summary>Serials compare as numbers: case, leading zeros and ':' separators do not matter (<see cref="X509Serial"/>).</summary>
    public static string NormalizeSerial(string serialHex) => X509Serial.Normalize(serialHex);

    public bool IsJtiRevoked(string jti)
    {
        lock (_lock)
            return _jtis.ContainsKey(jti);
    }

    public int Count
    {
        get
        {
            lock (_lock)
                return _serials.Count + _jtis.Count;
        }
    }

    /// <summary>Forgets revocations of credentials that expired before now.</summary>
    public void Prune(DateTimeOffset now)
    {
        var unix = now.ToUnixTimeSeconds();
        var removed = 0;
        lock (_lock)
        {
            foreach (var k in _serials.Where(p => p.Value.ExpiresAtUnix > 0 && p.Value.ExpiresAtUnix < unix).Select(p => p.Key).ToList())
                removed += _serials.Remove(k) ? 1 : 0;
            foreach (var k in _jtis.Where(p => p.Value.ExpiresAtUnix > 0 && p.Value.ExpiresAtUnix < unix).Select(p => p.Key).ToList())
                removed += _jtis.Remove(k) ? 1 : 0;
            if (removed > 0)
            {
                _revision++;
            }
        }
        if (removed > 0)
        {
            Changed.Raise();
        }
    }
}
