namespace Writ.Spiffe;

/// <summary>
/// A SPIFFE trust domain name (SPIFFE-ID.md §2.1): lowercase letters, digits, '.', '-', '_'; at most 255 bytes.
/// <c>default</c> is the zero value (<see cref="IsZero"/>); every other value is valid.
/// </summary>
[System.Text.Json.Serialization.JsonConverter(typeof(TrustDomainJsonConverter))]
public readonly record struct TrustDomain
{
    private readonly string? _name;

    private TrustDomain(string name) => _name = name;

    /// <summary>The bare name, e.g. <c>example.org</c> ("" for the zero value).</summary>
    public string Name => _name ?? "";

    /// <summary>The trust domain's own ID as text, e.g. <c>spiffe://example.org</c>.</summary>
    public string IdString => SpiffeIdRules.Scheme + Name;

    /// <summary>The trust domain's own ID (<c>spiffe://example.org</c>, no path).</summary>
    public SpiffeId Id => _name is null
        ? throw new InvalidOperationException("the zero TrustDomain has no ID: parse a trust domain first")
        : new SpiffeId(this, "");

    /// <summary>True for <c>default(TrustDomain)</c>.</summary>
    public bool IsZero => _name is null;

    /// <summary>
    /// Parses a bare name (<c>example.org</c>) or a SPIFFE ID (<c>spiffe://example.org/anything</c>, whose trust domain is taken),
    /// like go-spiffe's TrustDomainFromString.
    /// </summary>
    public static bool TryParse(string? text, out TrustDomain td, out string? error)
    {
        td = default;
        if (string.IsNullOrEmpty(text))
        {
            error = SpiffeIdRules.ErrTdMissing;
            return false;
        }
        if (text.Contains(":/", StringComparison.Ordinal))
        {
            if (!SpiffeId.TryParse(text, out var id, out error))
            {
                return false;
            }
            td = id.TrustDomain;
            return true;
        }
        error = SpiffeIdRules.ValidateTrustDomain(text);
        if (error is not null)
        {
            return false;
        }
        td = new TrustDomain(text);
        return true;
    }

    /// <summary>Parses like <see cref="TryParse"/>; throws <see cref="FormatException"/> with the one-line error.</summary>
    public static TrustDomain Parse(string text) =>
        TryParse(text, out var td, out var error) ? td : throw new FormatException(error);

    /// <summary>For names already validated by the ID parser.</summary>
    internal static TrustDomain FromValidated(string name) => new(name);

    public override string ToString() => Name;
}
