using System.Text.Json;
using System.Text.Json.Serialization;

namespace Writ.Server.Ca;

/// <summary>Where an authority is in its life: prepared (published, not yet signing), active (signing), old (published until expiry).</summary>
public enum AuthorityStatus
{
    Prepared,
    Active,
    Old,
}

/// <summary>One X.509 CA authority as recorded in the CA journal. Private keys stay in the key manager under KeyId.</summary>
public sealed record X509AuthorityRecord(
    string KeyId,
    IReadOnlyList<string> ChainDerBase64,
    AuthorityStatus Status,
    DateTimeOffset NotBefore,
    DateTimeOffset NotAfter);

/// <summary>One JWT signing authority: its kid, the public key (SPKI) and lifetime.</summary>
public sealed record JwtAuthorityRecord(
    string KeyId,
    string Kid,
    string PublicKeySpkiBase64,
    AuthorityStatus Status,
    DateTimeOffset NotBefore,
    DateTimeOffset NotAfter);

public sealed record CaJournalDocument(
    IReadOnlyList<X509AuthorityRecord> X509,
    IReadOnlyList<JwtAuthorityRecord> Jwt)
{
    public static CaJournalDocument Empty { get; } = new([], []);
}

[JsonSourceGenerationOptions(JsonSerializerDefaults.Web, UseStringEnumConverter = true)]
[JsonSerializable(typeof(CaJournalDocument))]
internal sealed partial class CaJournalJsonContext : JsonSerializerContext;
