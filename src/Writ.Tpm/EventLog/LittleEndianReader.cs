using System.Buffers.Binary;
using Writ.Tpm.Marshalling;

namespace Writ.Tpm.EventLog;

/// <summary>
/// Little-endian reads over an event log (the log is in the platform's byte order, unlike TPM structures): every read is
/// bounds-checked and a short input throws <see cref="TpmFormatException"/>.
/// </summary>
internal ref struct LittleEndianReader(ReadOnlySpan<byte> data)
{
    private readonly ReadOnlySpan<byte> _data = data;
    private int _offset;

    public readonly int Offset => _offset;

    public readonly int Remaining => _data.Length - _offset;

    public readonly bool AtEnd => _offset == _data.Length;

    public byte ReadUInt8() => Take(1)[0];

    public ushort ReadUInt16() => BinaryPrimitives.ReadUInt16LittleEndian(Take(2));

    public uint ReadUInt32() => BinaryPrimitives.ReadUInt32LittleEndian(Take(4));

    public ulong ReadUInt64() => BinaryPrimitives.ReadUInt64LittleEndian(Take(8));

    public ReadOnlySpan<byte> ReadBytes(long count)
    {
        if (count < 0 || count > Remaining)
            throw new TpmFormatException($"truncated event log: needed {count} bytes at offset {_offset}, {Remaining} left");
        return Take((int)count);
    }

    private ReadOnlySpan<byte> Take(int count)
    {
        if (count > Remaining)
            throw new TpmFormatException($"truncated event log: needed {count} bytes at offset {_offset}, {Remaining} left");
        var s = _data.Slice(_offset, count);
        _offset += count;
        return s;
    }
}
