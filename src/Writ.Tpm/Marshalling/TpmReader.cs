using System.Buffers.Binary;

namespace Writ.Tpm.Marshalling;

/// <summary>
/// Big-endian TPM 2.0 unmarshalling over bytes that may come from an attacker (an agent's evidence) or a TPM: every read
/// is bounds-checked and a short or oversized input throws <see cref="TpmFormatException"/>, never an index error.
/// </summary>
public ref struct TpmReader
{
    private readonly ReadOnlySpan<byte> _data;
    private int _offset;

    public TpmReader(ReadOnlySpan<byte> data)
    {
        _data = data;
        _offset = 0;
    }

    public readonly int Offset => _offset;

    public readonly int Remaining => _data.Length - _offset;

    public readonly bool AtEnd => _offset == _data.Length;

    public byte ReadUInt8() => Take(1)[0];

    public ushort ReadUInt16() => BinaryPrimitives.ReadUInt16BigEndian(Take(2));

    public uint ReadUInt32() => BinaryPrimitives.ReadUInt32BigEndian(Take(4));

    public ulong ReadUInt64() => BinaryPrimitives.ReadUInt64BigEndian(Take(8));

    public ReadOnlySpan<byte> ReadBytes(int count) => Take(count);

    /// <summary>A TPM2B: a UINT16 size, then that many bytes.</summary>
    public ReadOnlySpan<byte> ReadSized() => Take(ReadUInt16());

    /// <summary>Throws unless every byte was read: trailing bytes in evidence are refused, not ignored.</summary>
    public readonly void ExpectEnd(string what)
    {
        if (!AtEnd)
            throw new TpmFormatException($"{what} has {Remaining} unexpected trailing bytes");
    }

    private ReadOnlySpan<byte> Take(int count)
    {
        if (count < 0 || count > Remaining)
            throw new TpmFormatException($"truncated TPM structure: needed {count} bytes at offset {_offset}, {Remaining} left");
        var s = _data.Slice(_offset, count);
        _offset += count;
        return s;
    }
}

/// <summary>Bytes that are not the TPM structure they claim to be (truncated, trailing data, an unknown tag).</summary>
public sealed class TpmFormatException(string message) : Exception(message);
