using System.Text.Json;
using System.Text.Json.Serialization;

namespace Writ.Server.Ca;

/// <summary>
/// Where an authority is in its life (<see cref="Rotation.AuthorityRotation{T}"/> moves it): prepared (published, not yet
/// signing), active (signing), old (retired: published until it is pruned, its SVIDs valid until they expire).
/// </summary>
public enum AuthorityStatus
{
    Prepared,
    Active,
    Old,
}

/// <summary>What the rotation state machine reads of an authority of any kind, and the one change it makes: the status.</summary>
public interface IAuthorityRecord<out TSelf>
{
    /// <summary>The id of its private key in the key manager.</summary>
    string KeyId { get; }
    AuthorityStatus Status { get; }
    DateTimeOffset NotBefore { get; }
    DateTimeOffset NotAfter { get; }

    /// <summary>The same authority in another status.</summary>
    TSelf WithStatus(AuthorityStatus status);
}

/// <summary>One X.509 CA authority as recorded in the CA journal. Private keys stay in the key manager under KeyId.</summary>
public sealed record X509AuthorityRecord(
    string KeyId,
    IReadOnlyList<string> ChainDerBase64,
    AuthorityStatus Status,
    DateTimeOffset NotBefore,
    DateTimeOffset NotAfter) : IAuthorityRecord<X509AuthorityRecord>
{
    public X509AuthorityRecord WithStatus(AuthorityStatus status) => this with { Status = status };
}

/// <summary>One JWT signing authority: its kid, the public key (SPKI) and lifetime.</summary>
public sealed record JwtAuthorityRecord(
    string KeyId,
    string Kid,
    string PublicKeySpkiBase64,
    AuthorityStatus Status,
    DateTimeOffset NotBefore,
    DateTimeOffset NotAfter) : IAuthorityRecord<JwtAuthorityRecord>
{
    public JwtAuthorityRecord WithStatus(AuthorityStatus status) => this with { Status = status };
}

/// <summary>The CA journal: every authority of both kinds the CA holds, as stored (see <see cref="Journal.CaJournalStore"/>).</summary>
public sealed record CaJournalDocument(
    IReadOnlyList<X509AuthorityRecord> X509,
    IReadOnlyList<JwtAuthorityRecord> Jwt)
{
    public static CaJournalDocument Empty { get; } = new([], []);
}

[JsonSourceGenerationOptions(JsonSerializerDefaults.Web, UseStringEnumConverter = true)]
[JsonSerializable(typeof(CaJournalDocument))]
internal sealed partial class CaJournalJsonContext : JsonSerializerContext;
