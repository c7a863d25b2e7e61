using System.Text.Json;
using System.Text.Json.Serialization;

namespace Writ.Spiffe;

/// <summary>Serializes a <see cref="SpiffeId"/> as its text; reading refuses invalid IDs with the parse error.</summary>
public sealed class SpiffeIdJsonConverter : JsonConverter<SpiffeId>
{
    public override SpiffeId? Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        if (reader.TokenType != JsonTokenType.String)
        {
            throw new JsonException("a SPIFFE ID must be a JSON string such as \"spiffe://example.org/workload\"");
        }
        return SpiffeId.TryParse(reader.GetString(), out var id, out var error) ? id : throw new JsonException(error);
    }

    public override void Write(Utf8JsonWriter writer, SpiffeId value, JsonSerializerOptions options)
    {
        ArgumentNullException.ThrowIfNull(writer);
        ArgumentNullException.ThrowIfNull(value);
        writer.WriteStringValue(value.ToString());
    }
}

/// <summary>Serializes a <see cref="TrustDomain"/> as its name ("" for the zero value, as go-spiffe does).</summary>
public sealed class TrustDomainJsonConverter : JsonConverter<TrustDomain>
{
    public override TrustDomain Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        if (reader.TokenType != JsonTokenType.String)
        {
            throw new JsonException("a trust domain must be a JSON string such as \"example.org\"");
        }
        var text = reader.GetString();
        if (string.IsNullOrEmpty(text))
        {
            return default;
        }
        return TrustDomain.TryParse(text, out var td, out var error) ? td : throw new JsonException(error);
    }

    public override void Write(Utf8JsonWriter writer, TrustDomain value, JsonSerializerOptions options)
    {
        ArgumentNullException.ThrowIfNull(writer);
        writer.WriteStringValue(value.Name);
    }
}
