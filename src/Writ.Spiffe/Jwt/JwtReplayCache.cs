using System.Security.Cryptography;
using System.Text;

namespace Writ.Spiffe.Jwt;

/// <summary>What <see cref="JwtReplayCache.Record"/> found.</summary>
public enum JwtReplayOutcome
{
    /// <summary>The token was not seen before: it is now recorded for this peer.</summary>
    FirstUse,

    /// <summary>The token was seen before, from the same peer: a retry or a reused connection, not a replay.</summary>
    SamePeer,

    /// <summary>The token was first presented by another peer: a replay.</summary>
    Replayed,
}

/// <summary>The outcome of one <see cref="JwtReplayCache.Record"/>, with the peer the token was first seen from.</summary>
public readonly record struct JwtReplayCheck(JwtReplayOutcome Outcome, string FirstPeer)
{
    public bool IsReplay => Outcome == JwtReplayOutcome.Replayed;
}

/// <summary>
/// Which peer first presented each token: token key → (first peer, when to forget). Thread-safe and bounded. An entry is
/// forgotten once the token has expired (it cannot be presented any more), so the cache holds at most the tokens live
/// at one time. When it is full of live tokens, the one expiring soonest is evicted (counted in <see cref="Evictions"/>):
/// size it above the number of distinct live tokens a service sees in one token lifetime.
/// </summary>
public sealed class JwtReplayCache
{
    private readonly Lock _lock = new();
    private readonly Dictionary<string, (string Peer, DateTimeOffset ForgetAt)> _seen = new(StringComparer.Ordinal);
    private readonly PriorityQueue<string, DateTimeOffset> _byExpiry = new();
    private long _evictions;

    public JwtReplayCache(int capacity = 100_000)
    {
        if (capacity < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(capacity), capacity, "the replay cache must hold at least one token");
        }
        Capacity = capacity;
    }

    public int Capacity { get; }

    public int Count
    {
        get
        {
            lock (_lock)
            {
                return _seen.Count;
            }
        }
    }

    /// <summary>How many live tokens were forgotten early because the cache was full.</summary>
    public long Evictions => Interlocked.Read(ref _evictions);

    /// <summary>
    /// The replay key of a token: its trust domain and <c>jti</c> (a jti is unique only per issuer), or, for a token without
    /// a jti, the SHA-256 of the token itself (so replays of foreign tokens are still noticed).
    /// </summary>
    public static string KeyOf(JwtSvid svid)
    {
        ArgumentNullException.ThrowIfNull(svid);
        return svid.Jti is { } jti
            ? $"{svid.Id.TrustDomain.Name} jti:{jti}"
            // The signed part only: an ECDSA signature has a twin (r, n - s) that verifies too, so the text of the
            // signature must not make a replayed token look new.
            : $"{svid.Id.TrustDomain.Name} sha256:{Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(svid.Token[..svid.Token.LastIndexOf('.')])))}";
    }

    /// <summary>
    /// Records that <paramref name="peer"/> presented the token <paramref name="key"/> (live until <paramref name="forgetAt"/>)
    /// and says whether another peer presented it first. A replay leaves the first peer recorded.
    /// </summary>
    public JwtReplayCheck Record(string key, string peer, DateTimeOffset forgetAt, DateTimeOffset now)
    {
        ArgumentException.ThrowIfNullOrEmpty(key);
        ArgumentNullException.ThrowIfNull(peer);
        lock (_lock)
        {
            Prune(now);
            if (_seen.TryGetValue(key, out var first))
            {
                return string.Equals(first.Peer, peer, StringComparison.Ordinal)
                    ? new JwtReplayCheck(JwtReplayOutcome.SamePeer, first.Peer)
                    : new JwtReplayCheck(JwtReplayOutcome.Replayed, first.Peer);
            }
            if (forgetAt <= now)
            {
                return new JwtReplayCheck(JwtReplayOutcome.FirstUse, peer);   // already dead: nothing to remember
            }
            while (_seen.Count >= Capacity && _byExpiry.TryDequeue(out var victim, out _))
            {
                _seen.Remove(victim);
                Interlocked.Increment(ref _evictions);
            }
            _seen[key] = (peer, forgetAt);
            _byExpiry.Enqueue(key, forgetAt);
            return new JwtReplayCheck(JwtReplayOutcome.FirstUse, peer);
        }
    }

    /// <summary>Forgets every token whose time has come (also done by each <see cref="Record"/>).</summary>
    public void Prune(DateTimeOffset now)
    {
        lock (_lock)
        {
            while (_byExpiry.TryPeek(out var key, out var at) && at <= now)
            {
                _byExpiry.Dequeue();
                _seen.Remove(key);
            }
        }
    }
}
