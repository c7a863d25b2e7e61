using System.Buffers.Binary;
using System.Security.Cryptography;
using Writ.Spiffe.Bundles;

namespace Writ.Agent.Authz;

/// <summary>A caller certificate that verified against the trust bundle: what a decision needs of it.</summary>
/// <param name="Bundle">the bundle it verified against (a new bundle means verifying again)</param>
public sealed record VerifiedLeaf(string SpiffeId, string SerialHex, IReadOnlyList<string> DnsNames, DateTimeOffset NotBefore, DateTimeOffset NotAfter, TrustBundle Bundle);

/// <summary>
/// Chain verifications of caller certificates, by the leaf's SHA-256: a bounded LRU, so a flood of distinct certificates
/// costs verifications but never memory. Only the verification is cached: validity times, revocation and live state are
/// checked on every request by <see cref="CallDecider"/>.
/// </summary>
public sealed class VerifiedLeafCache(int capacity = VerifiedLeafCache.DefaultCapacity)
{
    public const int DefaultCapacity = 4096;

    private readonly Lock _lock = new();
    private readonly Dictionary<LeafHash, LinkedListNode<(LeafHash Key, VerifiedLeaf Leaf)>> _map = [];
    private readonly LinkedList<(LeafHash Key, VerifiedLeaf Leaf)> _order = new();

    /// <summary>SHA-256 of a DER certificate, as a value (no allocation).</summary>
    public readonly record struct LeafHash(ulong A, ulong B, ulong C, ulong D)
    {
        public static LeafHash Of(ReadOnlySpan<byte> der)
        {
            Span<byte> h = stackalloc byte[32];
            SHA256.HashData(der, h);
            return new(BinaryPrimitives.ReadUInt64LittleEndian(h), BinaryPrimitives.ReadUInt64LittleEndian(h[8..]),
                BinaryPrimitives.ReadUInt64LittleEndian(h[16..]), BinaryPrimitives.ReadUInt64LittleEndian(h[24..]));
        }
    }

    public int Count
    {
        get
        {
            lock (_lock)
            {
                return _map.Count;
            }
        }
    }

    /// <summary>The verification of this leaf against <paramref name="bundle"/>, if cached.</summary>
    public VerifiedLeaf? Get(LeafHash key, TrustBundle bundle)
    {
        lock (_lock)
        {
            if (!_map.TryGetValue(key, out var node))
            {
                return null;
            }
            if (!ReferenceEquals(node.Value.Leaf.Bundle, bundle))
            {
                _order.Remove(node);
                _map.Remove(key);
                return null;
            }
            _order.Remove(node);
            _order.AddFirst(node);
            return node.Value.Leaf;
        }
    }

    public void Put(LeafHash key, VerifiedLeaf leaf)
    {
        lock (_lock)
        {
            if (_map.TryGetValue(key, out var old))
            {
                _order.Remove(old);
            }
            else if (_map.Count >= capacity && _order.Last is { } last)
            {
                _order.RemoveLast();
                _map.Remove(last.Value.Key);
            }
            _map[key] = _order.AddFirst((key, leaf));
        }
    }
}
