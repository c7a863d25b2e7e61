using System.Buffers.Binary;

namespace Writ.Tpm.Marshalling;

/// <summary>
/// Big-endian TPM 2.0 marshalling (Part 2 of the library spec): integers, TPM2B sized buffers and nested sized
/// structures. One writer per command or structure; <see cref="ToArray"/> gives the bytes.
/// </summary>
public sealed class TpmWriter
{
    private byte[] _buffer = new byte[256];
    private int _length;

    public int Length => _length;

    public TpmWriter WriteUInt8(byte value)
    {
        Ensure(1)[0] = value;
        _length += 1;
        return this;
    }

    public TpmWriter WriteUInt16(ushort value)
    {
        BinaryPrimitives.WriteUInt16BigEndian(Ensure(2), value);
        _length += 2;
        return this;
    }

    public TpmWriter WriteUInt32(uint value)
    {
        BinaryPrimitives.WriteUInt32BigEndian(Ensure(4), value);
        _length += 4;
        return this;
    }

    public TpmWriter WriteUInt64(ulong value)
    {
        BinaryPrimitives.WriteUInt64BigEndian(Ensure(8), value);
        _length += 8;
        return this;
    }

    /// <summary>Raw bytes, no size prefix.</summary>
    public TpmWriter WriteBytes(ReadOnlySpan<byte> value)
    {
        value.CopyTo(Ensure(value.Length));
        _length += value.Length;
        return this;
    }

    /// <summary>A TPM2B: a UINT16 size, then the bytes.</summary>
    public TpmWriter WriteSized(ReadOnlySpan<byte> value)
    {
        if (value.Length > ushort.MaxValue)
            throw new ArgumentOutOfRangeException(nameof(value), $"a TPM2B holds at most {ushort.MaxValue} bytes, not {value.Length}");
        return WriteUInt16((ushort)value.Length).WriteBytes(value);
    }

    /// <summary>A TPM2B around a nested structure (e.g. TPM2B_PUBLIC around TPMT_PUBLIC) that <paramref name="body"/> writes.</summary>
    public TpmWriter WriteSized(Action<TpmWriter> body)
    {
        ArgumentNullException.ThrowIfNull(body);
        var inner = new TpmWriter();
        body(inner);
        return WriteSized(inner.AsSpan());
    }

    /// <summary>Overwrites a UINT32 already written at <paramref name="offset"/> (a command's size field).</summary>
    public void PatchUInt32(int offset, uint value)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan(offset + 4, _length);
        BinaryPrimitives.WriteUInt32BigEndian(_buffer.AsSpan(offset, 4), value);
    }

    public ReadOnlySpan<byte> AsSpan() => _buffer.AsSpan(0, _length);

    public byte[] ToArray() => _buffer.AsSpan(0, _length).ToArray();

    private Span<byte> Ensure(int count)
    {
        if (_length + count > _buffer.Length)
            Array.Resize(ref _buffer, Math.Max(_buffer.Length * 2, _length + count));
        return _buffer.AsSpan(_length, count);
    }
}
