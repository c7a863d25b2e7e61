using System.Buffers.Binary;
using System.Text;

namespace Writ.Tpm.EventLog;

/// <summary>
/// Builds a crypto-agile TCG event log (the format <see cref="TcgEventLog.Parse"/> reads): the "Spec ID Event03" header for
/// the chosen banks (sha256 by default), then one TCG_PCR_EVENT2 per <see cref="Add"/> with its digests computed over the
/// data. For tests, and for operators who make a reference log for a TPM without firmware (swtpm): extend each event's
/// <see cref="TcgEvent.Digests"/> into the TPM (<c>tpm2_pcrextend</c>) and the log replays to its PCRs.
/// </summary>
public sealed class TcgEventLogWriter
{
    private readonly string[] _banks;
    private readonly MemoryStream _events = new();
    private readonly List<TcgEvent> _added = [];

    public TcgEventLogWriter(params string[] banks)
    {
        ArgumentNullException.ThrowIfNull(banks);
        _banks = banks.Length == 0 ? [PcrBank.Sha256] : [.. banks.Distinct()];
        foreach (var b in _banks)
        {
            if (PcrBank.AlgorithmOf(b) is null)
                throw new ArgumentException($"unknown PCR bank '{b}': use sha1, sha256, sha384 or sha512", nameof(banks));
        }
    }

    /// <summary>The events added so far, with their computed digests (what to extend into a TPM).</summary>
    public IReadOnlyList<TcgEvent> Events => _added;

    /// <summary>Adds an event whose digest in every bank is the hash of <paramref name="data"/>.</summary>
    public TcgEventLogWriter Add(int pcrIndex, uint type, ReadOnlySpan<byte> data)
    {
        var digests = new Dictionary<string, byte[]>();
        foreach (var b in _banks)
            digests[b] = type == TcgEventType.NoAction ? new byte[PcrBank.DigestSize(b)!.Value] : PcrBank.Hash(b, data)!;
        return AddWithDigests(pcrIndex, type, digests, data);
    }

    /// <summary>Adds an event with the given digests (e.g. a measured image's hash, which is not the hash of the event data).</summary>
    public TcgEventLogWriter AddWithDigests(int pcrIndex, uint type, IReadOnlyDictionary<string, byte[]> digests, ReadOnlySpan<byte> data)
    {
        ArgumentNullException.ThrowIfNull(digests);
        ArgumentOutOfRangeException.ThrowIfNegative(pcrIndex);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(pcrIndex, TcgEventLog.PcrCount);
        Span<byte> u32 = stackalloc byte[4];
        Span<byte> u16 = stackalloc byte[2];
        BinaryPrimitives.WriteUInt32LittleEndian(u32, (uint)pcrIndex);
        _events.Write(u32);
        BinaryPrimitives.WriteUInt32LittleEndian(u32, type);
        _events.Write(u32);
        BinaryPrimitives.WriteUInt32LittleEndian(u32, (uint)_banks.Length);
        _events.Write(u32);
        var copy = new Dictionary<string, byte[]>();
        foreach (var b in _banks)
        {
            if (!digests.TryGetValue(b, out var d) || d.Length != PcrBank.DigestSize(b))
                throw new ArgumentException($"a {PcrBank.DigestSize(b)}-byte {b} digest is required", nameof(digests));
            BinaryPrimitives.WriteUInt16LittleEndian(u16, PcrBank.AlgorithmOf(b)!.Value);
            _events.Write(u16);
            _events.Write(d);
            copy[b] = [.. d];
        }
        BinaryPrimitives.WriteUInt32LittleEndian(u32, (uint)data.Length);
        _events.Write(u32);
        _events.Write(data);
        _added.Add(new TcgEvent(_added.Count + 1, pcrIndex, type, copy, data.ToArray()));
        return this;
    }

    /// <summary>The "StartupLocality" EV_NO_ACTION event (PCR 0 then starts at <paramref name="locality"/>); add it first.</summary>
    public TcgEventLogWriter AddStartupLocality(byte locality) =>
        Add(0, TcgEventType.NoAction, [.. "StartupLocality\0"u8, locality]);

    /// <summary>An EV_SEPARATOR (four zero bytes) into <paramref name="pcrIndex"/>: the end of the pre-OS measurements.</summary>
    public TcgEventLogWriter AddSeparator(int pcrIndex) => Add(pcrIndex, TcgEventType.Separator, [0, 0, 0, 0]);

    /// <summary>The EV_EFI_VARIABLE_DRIVER_CONFIG measurement of the SecureBoot variable into PCR 7.</summary>
    public TcgEventLogWriter AddSecureBoot(bool enabled) =>
        Add(7, TcgEventType.EfiVariableDriverConfig, UefiVariable(TcgEventLog.EfiGlobalVariable, "SecureBoot", [enabled ? (byte)1 : (byte)0]));

    /// <summary>A UEFI_VARIABLE_DATA (PFP §10.2.6): vendor GUID, name length in characters, data length, UTF-16LE name, data.</summary>
    public static byte[] UefiVariable(Guid vendor, string name, ReadOnlySpan<byte> value)
    {
        ArgumentNullException.ThrowIfNull(name);
        var nameBytes = Encoding.Unicode.GetBytes(name);
        var result = new byte[16 + 8 + 8 + nameBytes.Length + value.Length];
        vendor.TryWriteBytes(result);
        BinaryPrimitives.WriteUInt64LittleEndian(result.AsSpan(16), (ulong)name.Length);
        BinaryPrimitives.WriteUInt64LittleEndian(result.AsSpan(24), (ulong)value.Length);
        nameBytes.CopyTo(result, 32);
        value.CopyTo(result.AsSpan(32 + nameBytes.Length));
        return result;
    }

    /// <summary>The log: the Spec ID header then every event added.</summary>
    public byte[] ToArray()
    {
        var spec = new MemoryStream();
        Span<byte> u32 = stackalloc byte[4];
        Span<byte> u16 = stackalloc byte[2];
        spec.Write("Spec ID Event03\0"u8);
        BinaryPrimitives.WriteUInt32LittleEndian(u32, 0);       // platformClass: client
        spec.Write(u32);
        spec.Write([0, 2, 0, 2]);                               // spec version 2.0 errata 0, uintnSize 2 (UINT64)
        BinaryPrimitives.WriteUInt32LittleEndian(u32, (uint)_banks.Length);
        spec.Write(u32);
        foreach (var b in _banks)
        {
            BinaryPrimitives.WriteUInt16LittleEndian(u16, PcrBank.AlgorithmOf(b)!.Value);
            spec.Write(u16);
            BinaryPrimitives.WriteUInt16LittleEndian(u16, (ushort)PcrBank.DigestSize(b)!.Value);
            spec.Write(u16);
        }
        spec.WriteByte(0);                                      // vendorInfoSize
        var log = new MemoryStream();
        BinaryPrimitives.WriteUInt32LittleEndian(u32, 0);       // PCR 0
        log.Write(u32);
        BinaryPrimitives.WriteUInt32LittleEndian(u32, TcgEventType.NoAction);
        log.Write(u32);
        log.Write(new byte[20]);                                // SHA-1-form zero digest
        BinaryPrimitives.WriteUInt32LittleEndian(u32, (uint)spec.Length);
        log.Write(u32);
        spec.WriteTo(log);
        _events.WriteTo(log);
        return log.ToArray();
    }
}
