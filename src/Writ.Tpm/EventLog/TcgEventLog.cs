using System.Text;
using Writ.Tpm.Marshalling;

namespace Writ.Tpm.EventLog;

/// <summary>One measurement of a TCG event log: the PCR it went into, its type, its digest per bank and its event data.</summary>
/// <param name="Sequence">The event's position in the log (0 = the first event).</param>
public sealed record TcgEvent(int Sequence, int PcrIndex, uint Type, IReadOnlyDictionary<string, byte[]> Digests, byte[] Data)
{
    /// <summary>
    /// For a type whose digest is the hash of its data (<see cref="TcgEventType.DigestCoversData"/>): whether every digest
    /// Writ can compute equals the hash of <see cref="Data"/>. True for other types (their data says nothing checkable).
    /// </summary>
    public bool DataMatchesDigests()
    {
        if (!TcgEventType.DigestCoversData(Type))
            return true;
        foreach (var (bank, digest) in Digests)
        {
            var h = PcrBank.Hash(bank, Data);
            if (h is not null && !h.AsSpan().SequenceEqual(digest))
                return false;
        }
        return true;
    }
}

/// <summary>Which of the two log formats a log was in.</summary>
public enum TcgEventLogFormat
{
    /// <summary>TCG PC Client PFP crypto-agile: a SHA-1-form "Spec ID Event03" header, then TCG_PCR_EVENT2 entries.</summary>
    CryptoAgile,

    /// <summary>The legacy format: every event a TCG_PCR_EVENT with one SHA-1 digest.</summary>
    Sha1,
}

/// <summary>
/// A TCG measured-boot event log (<c>/sys/kernel/security/tpm0/binary_bios_measurements</c>) as TCG PC Client Platform
/// Firmware Profile §10 defines it, parsed from bytes that may come from an attacker: bounded, and anything malformed
/// (truncated, trailing bytes, an algorithm the Spec ID event did not declare, over-large sizes) throws
/// <see cref="TpmFormatException"/>. The log itself proves nothing: it is evidence only once <see cref="Replay"/> gives the
/// PCR values a verified quote shows.
/// </summary>
public sealed class TcgEventLog
{
    /// <summary>Largest log accepted (real firmware logs are tens of kilobytes).</summary>
    public const int MaxLogBytes = 8 * 1024 * 1024;

    /// <summary>Most events accepted.</summary>
    public const int MaxEvents = 20_000;

    /// <summary>Largest event data accepted (a dbx variable is the biggest real event, tens of kilobytes).</summary>
    public const int MaxEventDataBytes = 1024 * 1024;

    /// <summary>PCR indices a PC client TPM has.</summary>
    public const int PcrCount = 24;

    private const int Sha1DigestSize = 20;
    private const int MaxAlgorithms = 16;
    private static ReadOnlySpan<byte> SpecIdSignature => "Spec ID Event03\0"u8;
    private static ReadOnlySpan<byte> StartupLocalitySignature => "StartupLocality\0"u8;

    /// <summary>The EFI global variable GUID 8BE4DF61-93CA-11D2-AA0D-00E098032B8C (SecureBoot, PK, KEK…).</summary>
    public static readonly Guid EfiGlobalVariable = new("8BE4DF61-93CA-11D2-AA0D-00E098032B8C");

    private readonly Dictionary<string, int> _digestSizes;

    private TcgEventLog(TcgEventLogFormat format, Dictionary<string, int> digestSizes, IReadOnlyList<TcgEvent> events, byte? startupLocality)
    {
        Format = format;
        _digestSizes = digestSizes;
        Banks = [.. digestSizes.Keys];
        Events = events;
        StartupLocality = startupLocality;
    }

    public TcgEventLogFormat Format { get; }

    /// <summary>The banks every event carries a digest for (the Spec ID event's algorithm list; sha1 for a legacy log).</summary>
    public IReadOnlyList<string> Banks { get; }

    /// <summary>Every event, the header and EV_NO_ACTION events included.</summary>
    public IReadOnlyList<TcgEvent> Events { get; }

    /// <summary>The locality of a "StartupLocality" EV_NO_ACTION event (PCR 0's initial value), if the log has one.</summary>
    public byte? StartupLocality { get; }

    public static TcgEventLog Parse(ReadOnlySpan<byte> log)
    {
        if (log.Length > MaxLogBytes)
            throw new TpmFormatException($"event log of {log.Length} bytes is over the {MaxLogBytes}-byte limit");
        if (log.IsEmpty)
            throw new TpmFormatException("event log is empty");
        var r = new LittleEndianReader(log);
        var first = ReadSha1Event(ref r, 0);
        var events = new List<TcgEvent>();
        byte? locality = null;
        if (first.Type == TcgEventType.NoAction && first.Data.AsSpan().StartsWith(SpecIdSignature))
        {
            if (first.PcrIndex != 0 || first.Digests[PcrBank.Sha1].AsSpan().ContainsAnyExcept((byte)0))
                throw new TpmFormatException("event log Spec ID event must be in PCR 0 with a zero digest");
            var algorithms = ParseSpecId(first.Data);
            events.Add(first);
            while (!r.AtEnd)
            {
                var e = ReadEvent2(ref r, events.Count, algorithms);
                locality = NoteStartupLocality(e, locality);
                events.Add(e);
            }
            return new TcgEventLog(TcgEventLogFormat.CryptoAgile, algorithms.ToDictionary(a => a.Bank, a => a.Size), events, locality);
        }
        locality = NoteStartupLocality(first, locality);
        events.Add(first);
        while (!r.AtEnd)
        {
            var e = ReadSha1Event(ref r, events.Count);
            locality = NoteStartupLocality(e, locality);
            events.Add(e);
        }
        return new TcgEventLog(TcgEventLogFormat.Sha1, new Dictionary<string, int> { [PcrBank.Sha1] = Sha1DigestSize }, events, locality);
    }

    /// <summary>
    /// The PCR values of <paramref name="bank"/> that replaying the log gives: each PCR starts at zeros (PCR 0 at the
    /// StartupLocality locality in its last byte), every event but EV_NO_ACTION is extended into its PCR. Only PCRs the
    /// log measures into (and PCR 0 when it has a StartupLocality) are in the result.
    /// </summary>
    public IReadOnlyDictionary<int, byte[]> Replay(string bank)
    {
        ArgumentNullException.ThrowIfNull(bank);
        if (!_digestSizes.TryGetValue(bank, out var size))
            throw new TpmFormatException($"event log has no {bank} bank (it has {string.Join(", ", Banks)})");
        var pcrs = new SortedDictionary<int, byte[]>();
        if (StartupLocality is { } l)
            pcrs[0] = Initial(size, 0, l);
        foreach (var e in Events)
        {
            if (e.Type == TcgEventType.NoAction)
                continue;
            var current = pcrs.TryGetValue(e.PcrIndex, out var v) ? v : Initial(size, e.PcrIndex, null);
            pcrs[e.PcrIndex] = PcrBank.Extend(bank, current, e.Digests[bank]);
        }
        return pcrs;
    }

    /// <summary>
    /// Whether UEFI Secure Boot was on, from the EV_EFI_VARIABLE_DRIVER_CONFIG measurement of the global variable
    /// "SecureBoot" into PCR 7 before PCR 7's first separator (where firmware measures it; a later event would come from
    /// software after boot). Null when the log has no such event. Throws <see cref="TpmFormatException"/> when that
    /// event's data does not hash to its digests (a forged log) or is not a UEFI_VARIABLE_DATA.
    /// </summary>
    public bool? SecureBoot
    {
        get
        {
            foreach (var e in Events)
            {
                if (e.PcrIndex != 7)
                    continue;
                if (e.Type == TcgEventType.Separator)
                    return null;
                if (e.Type != TcgEventType.EfiVariableDriverConfig)
                    continue;
                var (guid, name, value) = ParseUefiVariable(e);
                if (guid != EfiGlobalVariable || name != "SecureBoot")
                    continue;
                if (!e.DataMatchesDigests())
                    throw new TpmFormatException($"event log event {e.Sequence} (SecureBoot): its data does not hash to its digest");
                return value.Length switch
                {
                    0 => false,   // the variable does not exist: measured empty (PFP §3.3.4.8)
                    1 when value[0] <= 1 => value[0] == 1,
                    _ => throw new TpmFormatException($"event log event {e.Sequence}: SecureBoot variable is not one byte of 0 or 1"),
                };
            }
            return null;
        }
    }

    /// <summary>
    /// Throws <see cref="TpmFormatException"/> naming the first event whose data does not hash to its digest although its
    /// type says it should (<see cref="TcgEvent.DataMatchesDigests"/>): data changed behind a kept digest.
    /// </summary>
    public void VerifyEventData()
    {
        foreach (var e in Events)
        {
            if (!e.DataMatchesDigests())
                throw new TpmFormatException($"event log event {e.Sequence} (PCR {e.PcrIndex}, type 0x{e.Type:x8}): its data does not hash to its digest");
        }
    }

    /// <summary>Parses an event's data as a UEFI_VARIABLE_DATA (PFP §10.2.6): the vendor GUID, the name and the value.</summary>
    public static (Guid Vendor, string Name, byte[] Value) ParseUefiVariable(TcgEvent e)
    {
        ArgumentNullException.ThrowIfNull(e);
        var r = new LittleEndianReader(e.Data);
        var guid = new Guid(r.ReadBytes(16));
        var nameChars = r.ReadUInt64();
        var dataLength = r.ReadUInt64();
        if (nameChars > (ulong)r.Remaining / 2 || dataLength > (ulong)r.Remaining)
            throw new TpmFormatException($"event log event {e.Sequence}: UEFI variable lengths exceed the event data");
        var name = Encoding.Unicode.GetString(r.ReadBytes((long)nameChars * 2));
        var value = r.ReadBytes((long)dataLength).ToArray();
        if (!r.AtEnd)
            throw new TpmFormatException($"event log event {e.Sequence}: {r.Remaining} trailing bytes after the UEFI variable");
        return (guid, name, value);
    }

    private static byte[] Initial(int size, int pcr, byte? locality)
    {
        var v = new byte[size];
        if (pcr == 0 && locality is { } l && size > 0)
            v[^1] = l;
        return v;
    }

    private static byte? NoteStartupLocality(TcgEvent e, byte? current)
    {
        if (e.Type != TcgEventType.NoAction || !e.Data.AsSpan().StartsWith(StartupLocalitySignature))
            return current;
        if (e.PcrIndex != 0 || e.Data.Length != StartupLocalitySignature.Length + 1)
            throw new TpmFormatException($"event log event {e.Sequence}: a StartupLocality event must be in PCR 0 with one locality byte");
        if (current is not null)
            throw new TpmFormatException($"event log event {e.Sequence}: a second StartupLocality event");
        return e.Data[^1];
    }

    private readonly record struct Algorithm(ushort Id, string Bank, int Size);

    /// <summary>TCG_EfiSpecIDEventStruct (PFP §10.4.5.1): signature, platform class, versions, uintnSize, algorithms, vendor info.</summary>
    private static Algorithm[] ParseSpecId(byte[] data)
    {
        var r = new LittleEndianReader(data);
        r.ReadBytes(SpecIdSignature.Length);
        r.ReadUInt32();                       // platformClass
        r.ReadUInt8();                        // specVersionMinor
        var major = r.ReadUInt8();
        r.ReadUInt8();                        // specErrata
        var uintnSize = r.ReadUInt8();
        if (major != 2 || uintnSize is not (1 or 2))
            throw new TpmFormatException($"event log Spec ID event: version {major} / uintnSize {uintnSize} is not a TCG PC Client 2.0 log");
        var count = r.ReadUInt32();
        if (count is 0 or > MaxAlgorithms)
            throw new TpmFormatException($"event log Spec ID event declares {count} algorithms (1 to {MaxAlgorithms} allowed)");
        var algorithms = new Algorithm[count];
        for (var i = 0; i < count; i++)
        {
            var id = r.ReadUInt16();
            var size = r.ReadUInt16();
            var bank = PcrBank.NameOf(id);
            var known = PcrBank.DigestSize(bank);
            if (size is 0 or > 64 || (known is not null && known != size))
                throw new TpmFormatException($"event log Spec ID event: {bank} digest size {size} is wrong");
            if (algorithms.Take(i).Any(a => a.Id == id))
                throw new TpmFormatException($"event log Spec ID event declares {bank} twice");
            algorithms[i] = new Algorithm(id, bank, size);
        }
        var vendorSize = r.ReadUInt8();
        r.ReadBytes(vendorSize);
        if (!r.AtEnd)
            throw new TpmFormatException($"event log Spec ID event has {r.Remaining} trailing bytes");
        return algorithms;
    }

    /// <summary>TCG_PCR_EVENT: pcrIndex, eventType, a SHA-1 digest, eventSize, event.</summary>
    private static TcgEvent ReadSha1Event(ref LittleEndianReader r, int sequence)
    {
        var (pcr, type) = ReadHeader(ref r, sequence);
        var digest = r.ReadBytes(Sha1DigestSize).ToArray();
        var data = ReadData(ref r, sequence);
        return new TcgEvent(sequence, pcr, type, new Dictionary<string, byte[]> { [PcrBank.Sha1] = digest }, data);
    }

    /// <summary>TCG_PCR_EVENT2: pcrIndex, eventType, TPML_DIGEST_VALUES (one digest per declared algorithm), eventSize, event.</summary>
    private static TcgEvent ReadEvent2(ref LittleEndianReader r, int sequence, Algorithm[] algorithms)
    {
        var (pcr, type) = ReadHeader(ref r, sequence);
        var count = r.ReadUInt32();
        if (count != algorithms.Length)
            throw new TpmFormatException($"event log event {sequence} has {count} digests, the Spec ID event declares {algorithms.Length} algorithms");
        var digests = new Dictionary<string, byte[]>(algorithms.Length);
        for (var i = 0; i < count; i++)
        {
            var id = r.ReadUInt16();
            var alg = Array.FindIndex(algorithms, a => a.Id == id);
            if (alg < 0)
                throw new TpmFormatException($"event log event {sequence} has a digest of algorithm 0x{id:x4} the Spec ID event did not declare");
            var a = algorithms[alg];
            if (!digests.TryAdd(a.Bank, r.ReadBytes(a.Size).ToArray()))
                throw new TpmFormatException($"event log event {sequence} has two {a.Bank} digests");
        }
        return new TcgEvent(sequence, pcr, type, digests, ReadData(ref r, sequence));
    }

    private static (int Pcr, uint Type) ReadHeader(ref LittleEndianReader r, int sequence)
    {
        if (sequence >= MaxEvents)
            throw new TpmFormatException($"event log has more than {MaxEvents} events");
        var pcr = r.ReadUInt32();
        var type = r.ReadUInt32();
        if (pcr >= PcrCount)
            throw new TpmFormatException($"event log event {sequence} is for PCR {pcr} (0 to {PcrCount - 1} exist)");
        return ((int)pcr, type);
    }

    private static byte[] ReadData(ref LittleEndianReader r, int sequence)
    {
        var size = r.ReadUInt32();
        if (size > MaxEventDataBytes)
            throw new TpmFormatException($"event log event {sequence} has {size} bytes of data (at most {MaxEventDataBytes})");
        return r.ReadBytes(size).ToArray();
    }
}
