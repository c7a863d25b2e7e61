using Writ.Tpm.Marshalling;

namespace Writ.Tpm.Structures;

/// <summary>
/// One TPMS_PCR_SELECTION: a PCR bank (its hash algorithm) and the PCR indices selected in it, ascending. Equal when
/// the bank and the indices are. <see cref="Read"/> / <see cref="WriteList"/> do the TPML_PCR_SELECTION wire form.
/// </summary>
public sealed class TpmPcrSelection : IEquatable<TpmPcrSelection>
{
    /// <summary>The PCRs a TPM 2.0 PC client has (0–23): what a selection may name.</summary>
    public const int MaxPcrs = 24;

    private readonly int[] _indices;

    /// <summary>A selection of <paramref name="indices"/> (any order, no duplicates, 0–23) in the bank of <paramref name="hashAlg"/>.</summary>
    public TpmPcrSelection(ushort hashAlg, IEnumerable<int> indices)
    {
        ArgumentNullException.ThrowIfNull(indices);
        if (!TpmHash.IsSupported(hashAlg))
            throw new ArgumentException($"PCR bank 0x{hashAlg:x4} is not supported (sha1, sha256, sha384, sha512 are)", nameof(hashAlg));
        var sorted = indices.Order().ToArray();
        for (var i = 0; i < sorted.Length; i++)
        {
            if (sorted[i] is < 0 or >= MaxPcrs)
                throw new ArgumentOutOfRangeException(nameof(indices), $"PCR index {sorted[i]} is outside 0–{MaxPcrs - 1}");
            if (i > 0 && sorted[i] == sorted[i - 1])
                throw new ArgumentException($"PCR index {sorted[i]} is selected twice", nameof(indices));
        }
        HashAlg = hashAlg;
        _indices = sorted;
    }

    /// <summary>The bank's hash algorithm (TPM_ALG_ID).</summary>
    public ushort HashAlg { get; }

    /// <summary>The bank's name, e.g. <c>sha256</c>.</summary>
    public string Bank => TpmHash.BankName(HashAlg);

    /// <summary>The selected PCR indices, ascending.</summary>
    public IReadOnlyList<int> Indices => _indices;

    /// <summary>Writ's default: sha256 PCRs 0–7 and 14.</summary>
    public static TpmPcrSelection Default { get; } = new(TpmAlg.Sha256, [0, 1, 2, 3, 4, 5, 6, 7, 14]);

    /// <summary>Reads a TPML_PCR_SELECTION (count, then each bank's hash, sizeofSelect and bitmap). Empty banks are kept out.</summary>
    public static IReadOnlyList<TpmPcrSelection> Read(ref TpmReader r)
    {
        var count = r.ReadUInt32();
        if (count > 16)
            throw new TpmFormatException($"PCR selection list has {count} banks; at most 16 expected");
        var list = new List<TpmPcrSelection>((int)count);
        for (var i = 0; i < count; i++)
        {
            var hash = r.ReadUInt16();
            if (!TpmHash.IsSupported(hash))
                throw new TpmFormatException($"PCR selection names bank 0x{hash:x4}; sha1, sha256, sha384, sha512 are supported");
            var size = r.ReadUInt8();
            if (size > 8)
                throw new TpmFormatException($"PCR selection bitmap is {size} bytes; at most 8 expected");
            var bitmap = r.ReadBytes(size);
            var indices = new List<int>();
            for (var pcr = 0; pcr < size * 8; pcr++)
            {
                if ((bitmap[pcr / 8] & (1 << (pcr % 8))) == 0)
                    continue;
                if (pcr >= MaxPcrs)
                    throw new TpmFormatException($"PCR selection names PCR {pcr}; a TPM has PCRs 0–{MaxPcrs - 1}");
                indices.Add(pcr);
            }
            if (list.Any(s => s.HashAlg == hash))
                throw new TpmFormatException($"PCR selection names bank {TpmHash.BankName(hash)} twice");
            if (indices.Count > 0)
                list.Add(new TpmPcrSelection(hash, indices));
        }
        return list;
    }

    /// <summary>Writes <paramref name="selections"/> as a TPML_PCR_SELECTION with 3-byte bitmaps (what TPM2_Quote and TPM2_PCR_Read take).</summary>
    public static void WriteList(TpmWriter w, IReadOnlyList<TpmPcrSelection> selections)
    {
        ArgumentNullException.ThrowIfNull(w);
        ArgumentNullException.ThrowIfNull(selections);
        w.WriteUInt32((uint)selections.Count);
        Span<byte> bitmap = stackalloc byte[3];
        foreach (var s in selections)
        {
            bitmap.Clear();
            foreach (var i in s._indices)
                bitmap[i / 8] |= (byte)(1 << (i % 8));
            w.WriteUInt16(s.HashAlg).WriteUInt8(3).WriteBytes(bitmap);
        }
    }

    public bool Equals(TpmPcrSelection? other) => other is not null && other.HashAlg == HashAlg && other._indices.AsSpan().SequenceEqual(_indices);

    public override bool Equals(object? obj) => Equals(obj as TpmPcrSelection);

    public override int GetHashCode()
    {
        var h = new HashCode();
        h.Add(HashAlg);
        foreach (var i in _indices)
            h.Add(i);
        return h.ToHashCode();
    }

    /// <summary>E.g. <c>sha256:0,1,2,7</c> (tpm2-tools' notation).</summary>
    public override string ToString() => $"{Bank}:{string.Join(',', _indices)}";
}

/// <summary>One PCR's value as the node reported it (TPM2_PCR_Read): bank, index and digest.</summary>
/// <param name="HashAlg">The bank's hash algorithm (TPM_ALG_ID).</param>
/// <param name="Index">The PCR index, 0–23.</param>
/// <param name="Digest">The PCR value: exactly the bank's digest size.</param>
public sealed record TpmPcrValue(ushort HashAlg, int Index, ReadOnlyMemory<byte> Digest);
