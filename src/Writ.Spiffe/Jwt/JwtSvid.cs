using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;

namespace Writ.Spiffe.Jwt;

/// <summary>A parsed JWT-SVID. <see cref="Claims"/> is the whole payload (detached from any document).</summary>
public sealed record JwtSvid(SpiffeId Id, IReadOnlyList<string> Audience, DateTimeOffset ExpiresAt, DateTimeOffset? IssuedAt,
    string Kid, string Token, JsonElement Claims)
{
    private readonly byte[]? _x5tS256;

    /// <summary>The <c>jti</c> claim (a unique token id; every token Writ mints has one), or null when absent.</summary>
    public string? Jti { get; init; }

    /// <summary>
    /// The certificate the token is bound to: <c>cnf</c> <c>x5t#S256</c> (RFC 8705 §3.1), the unpadded base64url SHA-256 of
    /// the DER of the presenter's X.509 leaf; null for a bearer token.
    /// </summary>
    public string? CnfX5tS256
    {
        get => _x5tS256 is null ? null : CertificateBinding.Encode(_x5tS256);
        init
        {
            if (value is null)
            {
                _x5tS256 = null;
                return;
            }
            _x5tS256 = CertificateBinding.TryDecode(value)
                ?? throw new ArgumentException("cnf x5t#S256 must be the unpadded base64url SHA-256 of a certificate (43 characters)", nameof(value));
        }
    }

    /// <summary>True when the token carries a <c>cnf</c> <c>x5t#S256</c> binding; false for a bearer token.</summary>
    public bool IsBound => _x5tS256 is not null;

    /// <summary>
    /// True when the token is bound to the certificate with this DER encoding. SHA-256 of the DER compared in constant time;
    /// false for a bearer token.
    /// </summary>
    public bool IsBoundTo(ReadOnlySpan<byte> certificateDer) =>
        _x5tS256 is not null && CertificateBinding.FixedTimeMatches(_x5tS256, SHA256.HashData(certificateDer));

    /// <summary>True when the token is bound to <paramref name="certificate"/> (see <see cref="IsBoundTo(ReadOnlySpan{byte})"/>).</summary>
    public bool IsBoundTo(X509Certificate2 certificate)
    {
        ArgumentNullException.ThrowIfNull(certificate);
        return IsBoundTo(certificate.RawData);
    }

    /// <summary>True when the token is bound to the certificate <paramref name="peer"/> presented (constant-time compare).</summary>
    public bool IsBoundTo(JwtPeer peer)
    {
        ArgumentNullException.ThrowIfNull(peer);
        return _x5tS256 is not null && peer.HasCertificate && CertificateBinding.FixedTimeMatches(_x5tS256, peer.CertificateSha256);
    }
}

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
