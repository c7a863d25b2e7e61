using System.Text.Json;

namespace Writ.Spiffe.Jwt;

/// <summary>A parsed JWT-SVID. <see cref="Claims"/> is the whole payload (detached from any document).</summary>
public sealed record JwtSvid(SpiffeId Id, IReadOnlyList<string> Audience, DateTimeOffset ExpiresAt, DateTimeOffset? IssuedAt,
    string Kid, string Token, JsonElement Claims);

/// <summary>The outcome of JWT-SVID validation: the SVID when valid, otherwise a one-line reason.</summary>
public sealed record JwtSvidValidation(bool IsValid, JwtSvid? Svid, string? Error)
{
    internal static JwtSvidValidation Fail(string error) => new(false, null, error);
}

/// <summary>Validation knobs. Defaults follow go-spiffe/SPIRE.</summary>
public sealed record JwtSvidValidationOptions
{
    /// <summary>Accept tokens without a kid (then every JWT authority of the trust domain is tried). Off by default.</summary>
    public bool AllowMissingKid { get; init; }

    /// <summary>Clock skew tolerated for exp, iat and nbf. Default 30 s.</summary>
    public TimeSpan Leeway { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Tokens longer than this many characters are refused before any parsing. Default 16 KiB.</summary>
    public int MaxTokenLength { get; init; } = 16 * 1024;
}
