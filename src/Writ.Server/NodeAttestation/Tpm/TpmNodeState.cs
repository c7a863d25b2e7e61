using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Writ.Protocol.Evidence;

namespace Writ.Server.NodeAttestation.Tpm;

/// <summary>
/// What the tpm attestor keeps about a node for its re-quotes (<see cref="AttestedNode.AttestorState"/>), as compact JSON:
/// the EK hash and issuer key id, the AK public area (TPMT_PUBLIC) every later quote must be signed with, the quoted
/// bank and its current PCR values, the reference sets matched at attestation (M0: the only sets inside which a PCR may
/// change without drift) and the secure boot state from the last event log. Also derives the node's selectors.
/// </summary>
public sealed record TpmNodeState(
    string EkHash,
    string? EkIssuer,
    byte[] AkPublic,
    string Bank,
    IReadOnlyDictionary<int, string> Pcrs,
    IReadOnlyList<string> AttestedSets,
    bool? SecureBoot)
{
    private const int Version = 1;

    /// <summary>The node's selectors for these facts and the reference sets its PCRs satisfy now.</summary>
    public IReadOnlyList<Selector> Selectors(IEnumerable<string> satisfiedSets)
    {
        List<Selector> s = [new("tpm", $"ek_hash:{EkHash}")];
        if (EkIssuer is { Length: > 0 } issuer)
            s.Add(new("tpm", $"ek_issuer:{issuer}"));
        foreach (var (index, hex) in Pcrs.OrderBy(p => p.Key))
            s.Add(new("tpm", $"pcr:{Bank}:{index.ToString(CultureInfo.InvariantCulture)}:{hex}"));
        foreach (var name in satisfiedSets.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal))
            s.Add(new("tpm", $"pcr_set:{name}"));
        if (SecureBoot is { } on)
            s.Add(new("tpm", on ? "secure_boot:on" : "secure_boot:off"));
        return s;
    }

    public byte[] Serialize()
    {
        var pcrs = new JsonObject();
        foreach (var (index, hex) in Pcrs.OrderBy(p => p.Key))
            pcrs[index.ToString(CultureInfo.InvariantCulture)] = hex;
        var o = new JsonObject
        {
            ["v"] = Version,
            ["ek_hash"] = EkHash,
            ["ek_issuer"] = EkIssuer,
            ["ak"] = Convert.ToBase64String(AkPublic),
            ["bank"] = Bank,
            ["pcrs"] = pcrs,
            ["sets"] = new JsonArray([.. AttestedSets.Select(n => (JsonNode)JsonValue.Create(n))]),
            ["secure_boot"] = SecureBoot,
        };
        return JsonSerializer.SerializeToUtf8Bytes(o);
    }

    /// <summary>The state written by <see cref="Serialize"/>; null when <paramref name="bytes"/> is not one.</summary>
    public static TpmNodeState? TryParse(ReadOnlySpan<byte> bytes)
    {
        try
        {
            if (JsonNode.Parse(bytes) is not JsonObject o || o["v"] is not JsonValue v || !v.TryGetValue<int>(out var version) || version != Version)
                return null;
            var pcrs = new Dictionary<int, string>();
            foreach (var (k, hex) in o["pcrs"] as JsonObject ?? throw new FormatException("pcrs"))
                pcrs[int.Parse(k, NumberStyles.None, CultureInfo.InvariantCulture)] = Text(hex, "pcr");
            var sets = (o["sets"] as JsonArray ?? throw new FormatException("sets")).Select(n => Text(n, "set")).ToList();
            bool? secureBoot = o["secure_boot"] is JsonValue sb && sb.TryGetValue<bool>(out var on) ? on : null;
            var issuer = o["ek_issuer"] is null ? null : Text(o["ek_issuer"], "ek_issuer");
            return new TpmNodeState(Text(o["ek_hash"], "ek_hash"), issuer, Convert.FromBase64String(Text(o["ak"], "ak")), Text(o["bank"], "bank"), pcrs, sets, secureBoot);
        }
        catch (Exception e) when (e is JsonException or FormatException or OverflowException)
        {
            return null;
        }
    }

    private static string Text(JsonNode? n, string what) =>
        n is JsonValue v && v.TryGetValue<string>(out var s) ? s : throw new FormatException($"attestor state field {what} is not a string");
}
