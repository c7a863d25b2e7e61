using Writ.Tpm.Marshalling;

namespace Writ.Tpm.Commands;

/// <summary>A key made by TPM2_Create: its TPMT_PUBLIC and its TPM2B_PRIVATE contents (wrapped by the parent; useless outside that TPM).</summary>
public sealed record TpmKeyBlob(byte[] Public, byte[] Private);

/// <summary>A loaded object: its transient handle, TPMT_PUBLIC and name.</summary>
public sealed record TpmLoadedObject(uint Handle, byte[] Public, byte[] Name);

/// <summary>A TPMS_ATTEST the TPM made (quote, certification) and its TPMT_SIGNATURE, both as marshalled bytes.</summary>
public sealed record TpmSignedAttest(byte[] Attest, byte[] Signature);

/// <summary>One PCR's value in one bank.</summary>
public sealed record TpmPcrValue(ushort Hash, int Index, byte[] Digest);

/// <summary>An NV index's public area (the parts the client uses).</summary>
public sealed record TpmNvPublic(uint Index, ushort NameAlg, uint Attributes, ushort DataSize)
{
    public const uint AuthRead = 0x00040000;
    public const uint OwnerRead = 0x00020000;
}

/// <summary>PCRs of one bank (a TPMS_PCR_SELECTION).</summary>
public sealed record TpmPcrSelection(ushort Hash, IReadOnlyList<int> Indices)
{
    public const int MaxPcr = 23;

    /// <summary>The bank's hash by its name: sha1, sha256, sha384, sha512.</summary>
    public static ushort HashOf(string bank) => bank.ToLowerInvariant() switch
    {
        "sha1" => TpmAlg.Sha1,
        "sha256" => TpmAlg.Sha256,
        "sha384" => TpmAlg.Sha384,
        "sha512" => TpmAlg.Sha512,
        _ => throw new ArgumentException($"unknown PCR bank '{bank}': use sha1, sha256, sha384 or sha512", nameof(bank)),
    };

    public static string BankName(ushort hash) => hash switch
    {
        TpmAlg.Sha1 => "sha1",
        TpmAlg.Sha256 => "sha256",
        TpmAlg.Sha384 => "sha384",
        TpmAlg.Sha512 => "sha512",
        _ => $"0x{hash:x4}",
    };

    /// <summary>Writes a TPML_PCR_SELECTION of the given selections (sizeofSelect 3: PCRs 0–23).</summary>
    public static void Write(TpmWriter w, IReadOnlyList<TpmPcrSelection> selections)
    {
        w.WriteUInt32((uint)selections.Count);
        foreach (var s in selections)
        {
            w.WriteUInt16(s.Hash).WriteUInt8(3);
            var bits = new byte[3];
            foreach (var i in s.Indices)
            {
                if (i is < 0 or > MaxPcr)
                {
                    throw new ArgumentOutOfRangeException(nameof(selections), $"PCR {i} is outside 0..{MaxPcr}");
                }
                bits[i / 8] |= (byte)(1 << (i % 8));
            }
            w.WriteBytes(bits);
        }
    }

    /// <summary>Reads a TPML_PCR_SELECTION (at most 16 banks, each at most 8 select bytes).</summary>
    public static List<TpmPcrSelection> Read(ref TpmReader r)
    {
        var count = r.ReadUInt32();
        if (count > 16)
        {
            throw new TpmFormatException($"a PCR selection list of {count} banks");
        }
        var list = new List<TpmPcrSelection>();
        for (var b = 0; b < count; b++)
        {
            var hash = r.ReadUInt16();
            var size = r.ReadUInt8();
            if (size > 8)
            {
                throw new TpmFormatException($"a PCR selection of {size} bytes");
            }
            var bits = r.ReadBytes(size);
            var indices = new List<int>();
            for (var i = 0; i < size * 8; i++)
            {
                if ((bits[i / 8] & (1 << (i % 8))) != 0)
                {
                    indices.Add(i);
                }
            }
            list.Add(new TpmPcrSelection(hash, indices));
        }
        return list;
    }
}
