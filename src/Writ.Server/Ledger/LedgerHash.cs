using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using Writ.Server.Storage;

namespace Writ.Server.Ledger;

/// <summary>
/// The ledger's hash chain. Each record's hash is SHA-256 over a domain tag, the previous record's hash and the
/// canonical encoding of the record: seq and time as 8-byte big-endian integers, then kind, actor, subject, decision id
/// and data, each as a 4-byte big-endian length and its UTF-8 bytes (a missing decision id is length 0xFFFFFFFF, so it
/// differs from an empty one). Nothing is left to a serializer's choices, so any implementation can recompute it.
/// The first record's previous hash is 32 zero bytes.
/// </summary>
public static class LedgerHash
{
    public const int Size = 32;
    private static readonly byte[] Domain = "writ-ledger-v1\n"u8.ToArray();

    public static byte[] Genesis => new byte[Size];

    public static byte[] Compute(ReadOnlySpan<byte> prevHash, long seq, long atMicros, string kind, string actor, string subject, string? decisionId, string data)
    {
        if (prevHash.Length != Size)
            throw new ArgumentException($"a ledger hash is {Size} bytes, got {prevHash.Length}", nameof(prevHash));
        using var h = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        h.AppendData(Domain);
        h.AppendData(prevHash);
        Span<byte> num = stackalloc byte[8];
        BinaryPrimitives.WriteInt64BigEndian(num, seq);
        h.AppendData(num);
        BinaryPrimitives.WriteInt64BigEndian(num, atMicros);
        h.AppendData(num);
        AppendString(h, kind);
        AppendString(h, actor);
        AppendString(h, subject);
        AppendString(h, decisionId);
        AppendString(h, data);
        return h.GetHashAndReset();
    }

    /// <summary>The hash an event must have given its stored fields (At is taken at microsecond precision).</summary>
    public static byte[] Compute(LedgerEvent e, ReadOnlySpan<byte> prevHash) =>
        Compute(prevHash, e.Seq, ToMicros(e.At), e.Kind, e.Actor, e.Subject, e.DecisionId, e.DataJson);

    public static long ToMicros(DateTimeOffset t) => (t.UtcTicks - DateTimeOffset.UnixEpoch.UtcTicks) / 10;

    private static void AppendString(IncrementalHash h, string? s)
    {
        Span<byte> len = stackalloc byte[4];
        if (s is null)
        {
            BinaryPrimitives.WriteUInt32BigEndian(len, uint.MaxValue);
            h.AppendData(len);
            return;
        }
        var bytes = Encoding.UTF8.GetBytes(s);
        BinaryPrimitives.WriteUInt32BigEndian(len, (uint)bytes.Length);
        h.AppendData(len);
        h.AppendData(bytes);
    }
}
