using System.Security.Cryptography;
using Google.Protobuf;
using Writ.Protocol.Agent;

namespace Writ.Agent.Sync;

/// <summary>
/// The CRLs the server pushed with its bundle (Sync's <c>Bundle.crl_der</c>, then each <c>retired_crl_der</c> and <c>other_server_crl_der</c>): DER, the
/// active authority's first, as the Workload API's <c>crl</c> fields carry them. <see cref="Hash"/> tells one set from
/// another (response fingerprints). Immutable; <see cref="Empty"/> until the first bundle arrives.
/// </summary>
public sealed class CrlSet
{
    private CrlSet(IReadOnlyList<ByteString> der, string hash)
    {
        Der = der;
        Hash = hash;
    }

    public static CrlSet Empty { get; } = new([], "");

    /// <summary>DER-encoded CRLs, current authority first.</summary>
    public IReadOnlyList<ByteString> Der { get; }

    /// <summary>SHA-256 (hex) over the CRLs in order; "" when there are none.</summary>
    public string Hash { get; }

    /// <summary>The CRLs a pushed bundle carries (empty ones skipped).</summary>
    public static CrlSet From(Bundle bundle)
    {
        ArgumentNullException.ThrowIfNull(bundle);
        var der = new List<ByteString>(1 + bundle.RetiredCrlDer.Count + bundle.OtherServerCrlDer.Count);
        if (!bundle.CrlDer.IsEmpty)
        {
            der.Add(bundle.CrlDer);
        }
        der.AddRange(bundle.RetiredCrlDer.Where(c => !c.IsEmpty));
        der.AddRange(bundle.OtherServerCrlDer.Where(c => !c.IsEmpty));   // issue #16: the other servers' CRLs, for the SVIDs they issued
        if (der.Count == 0)
        {
            return Empty;
        }
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        Span<byte> length = stackalloc byte[4];
        foreach (var c in der)
        {
            System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(length, c.Length);   // no two lists hash alike by concatenation
            hash.AppendData(length);
            hash.AppendData(c.Span);
        }
        return new CrlSet(der, Convert.ToHexStringLower(hash.GetHashAndReset()));
    }
}
