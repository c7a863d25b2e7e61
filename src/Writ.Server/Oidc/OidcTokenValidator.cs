using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using Writ.Protocol.Errors;

namespace Writ.Server.Oidc;

/// <summary>
/// The one validator of JWTs from external OIDC issuers (<see cref="IOidcTokenValidator"/>). Cheap checks come first and
/// need no network: size (<see cref="MaxTokenChars"/>), three parts, a JSON header whose <c>alg</c> is an allowed
/// asymmetric one (never <c>none</c> or HS*), no <c>crit</c>, and an <c>iss</c> equal to the configured issuer. Then the
/// issuer's keys (<see cref="OidcIssuerKeys"/>: cached, refreshed on an unknown <c>kid</c> at most every 30 s) and
/// Microsoft.IdentityModel's <see cref="JsonWebTokenHandler"/> check the signature, issuer, audience and lifetime
/// (<c>exp</c> required, <see cref="ClockSkew"/>) on the injected clock. Every refusal is a <see cref="WritException"/>
/// with a code of <see cref="OidcErrors"/>.
/// </summary>
public sealed class OidcTokenValidator(TimeProvider time, ILogger log) : IOidcTokenValidator, IDisposable
{
    /// <summary>Longer tokens are refused unread (CI job tokens are 1–3 KiB; Kubernetes ones about 1 KiB).</summary>
    public const int MaxTokenChars = 16 * 1024;

    /// <summary>How far <c>exp</c>, <c>nbf</c> and <c>iat</c> may be off against this server's clock.</summary>
    public static readonly TimeSpan ClockSkew = TimeSpan.FromSeconds(60);

    private readonly ConcurrentDictionary<string, Lazy<OidcIssuerKeys>> _issuers = new(StringComparer.Ordinal);
    private readonly JsonWebTokenHandler _handler = new() { MapInboundClaims = false };

    public async Task<ValidatedToken> ValidateAsync(string token, OidcIssuerConfig issuer, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(issuer);
        try
        {
            return await ValidateCoreAsync(token, issuer, ct).ConfigureAwait(false);
        }
        catch (WritException e)
        {
            OidcLog.TokenRefused(log, issuer.Issuer, e.Code, string.IsNullOrEmpty(token) ? "-" : Sha256Hex(token)[..16]);
            throw;
        }
    }

    /// <summary>
    /// The configured issuer a token claims to come from, read from its unverified <c>iss</c> only to pick the
    /// configuration that <see cref="ValidateAsync"/> then checks everything against. Refuses oversized and malformed
    /// tokens, and one whose issuer is not configured (<see cref="OidcErrors.UnknownIssuer"/>).
    /// </summary>
    public static OidcIssuerConfig FindIssuer(string token, IReadOnlyList<OidcIssuerConfig> issuers)
    {
        ArgumentNullException.ThrowIfNull(issuers);
        var (_, payload) = Parse(token);
        var iss = Issuer(payload);
        return issuers.FirstOrDefault(i => string.Equals(i.Issuer, iss, StringComparison.Ordinal))
            ?? throw OidcErrors.Refused(OidcErrors.UnknownIssuer,
                $"the token's issuer '{Printable(iss)}' is not trusted by this server: use a token of one of the issuers in oidc_issuers ({string.Join(", ", issuers.Select(i => i.Issuer))}), or ask the operator to add it");
    }

    private async Task<ValidatedToken> ValidateCoreAsync(string token, OidcIssuerConfig issuer, CancellationToken ct)
    {
        var (header, payload) = Parse(token);
        var algorithms = Allowed(issuer);
        var alg = header.TryGetProperty("alg", out var a) && a.ValueKind == JsonValueKind.String ? a.GetString()! : null;
        if (alg is null)
        {
            throw Malformed("its header has no 'alg'");
        }
        if (alg.Equals("none", StringComparison.OrdinalIgnoreCase) || alg.StartsWith("HS", StringComparison.OrdinalIgnoreCase))
        {
            throw OidcErrors.Refused(OidcErrors.AlgRefused, $"the token is {(alg.StartsWith('H') || alg.StartsWith('h') ? "HMAC-signed" : "unsigned")} (alg {Printable(alg)}): only tokens signed with the issuer's published keys are accepted");
        }
        if (!algorithms.Contains(alg, StringComparer.Ordinal))
        {
            throw OidcErrors.Refused(OidcErrors.AlgRefused, $"the token's algorithm {Printable(alg)} is not accepted for {issuer.Issuer} (accepted: {string.Join(", ", algorithms)}): use a token of the CI platform, or ask the operator to list the algorithm in oidc_issuers");
        }
        if (header.TryGetProperty("crit", out _))
        {
            throw Malformed("its header has critical extensions ('crit'), which this server does not understand");
        }
        var iss = Issuer(payload);
        if (!string.Equals(iss, issuer.Issuer, StringComparison.Ordinal))
        {
            throw OidcErrors.Refused(OidcErrors.WrongIssuer, $"the token's issuer '{Printable(iss)}' is not '{issuer.Issuer}': use a token of that issuer");
        }
        string? kid = null;
        if (header.TryGetProperty("kid", out var k))
        {
            kid = k.ValueKind == JsonValueKind.String ? k.GetString() : throw Malformed("its header's 'kid' is not a string");
        }

        var source = _issuers.GetOrAdd(KeyOf(issuer), _ => new Lazy<OidcIssuerKeys>(() => new OidcIssuerKeys(issuer, time, log))).Value;
        var candidates = Candidates(await source.GetAsync(unknownKid: false, ct).ConfigureAwait(false), kid);
        if (candidates.Count == 0)
        {
            candidates = Candidates(await source.GetAsync(unknownKid: true, ct).ConfigureAwait(false), kid);
        }
        if (candidates.Count == 0)
        {
            throw OidcErrors.Refused(OidcErrors.UnknownKey, $"the token names key '{Printable(kid)}', which {issuer.Issuer} does not publish: get a fresh token (if the issuer just rotated its keys, retry in 30 s)");
        }
        var usable = candidates.Where(c => c.Alg is null || c.Alg == alg).Select(c => c.Key).ToList();
        if (usable.Count == 0)
        {
            throw OidcErrors.Refused(OidcErrors.AlgRefused, $"the token's algorithm {Printable(alg)} is not the one {issuer.Issuer} publishes its key '{Printable(kid)}' for: get a fresh token from the CI platform");
        }

        var result = await _handler.ValidateTokenAsync(token, new TokenValidationParameters
        {
            ValidIssuer = issuer.Issuer,
            ValidateIssuer = true,
            ValidAudiences = issuer.Audiences,
            ValidateAudience = true,
            ValidAlgorithms = algorithms,
            IssuerSigningKeys = usable,
            TryAllIssuerSigningKeys = true,
            RequireSignedTokens = true,
            RequireExpirationTime = true,
            RequireAudience = true,
            ValidateLifetime = true,
            ClockSkew = ClockSkew,
            // TokenValidationParameters.TimeProvider is not public in 8.23: the lifetime is checked here on the injected
            // clock, with the library's own exceptions (so the mapping below is the same) and RequireExpirationTime's rule.
            LifetimeValidator = CheckLifetime,
        }).ConfigureAwait(false);
        if (!result.IsValid)
        {
            throw Map(result.Exception, issuer);
        }
        var jwt = (JsonWebToken)result.SecurityToken;

        var claims = payload.Clone();
        var sub = claims.TryGetProperty("sub", out var s) && s.ValueKind == JsonValueKind.String ? s.GetString() : null;
        if (string.IsNullOrEmpty(sub))
        {
            throw Malformed("it has no 'sub' claim");
        }
        var issuedAt = Time(claims, "iat");
        if (issuedAt > time.GetUtcNow() + ClockSkew)
        {
            throw OidcErrors.Refused(OidcErrors.NotYetValid, $"the token was issued in the future ({issuedAt:u}): check the clocks of this server and the issuer");
        }
        var notBefore = Time(claims, "nbf");
        return new ValidatedToken
        {
            Issuer = iss!,
            Subject = sub,
            Jti = claims.TryGetProperty("jti", out var jti) && jti.ValueKind == JsonValueKind.String ? jti.GetString() : null,
            Audiences = [.. jwt.Audiences],
            IssuedAt = issuedAt,
            NotBefore = notBefore,
            ExpiresAt = new DateTimeOffset(jwt.ValidTo, TimeSpan.Zero),
            Claims = claims,
            TokenSha256 = Sha256Hex(token),
            Algorithm = alg,
            KeyId = kid,
        };
    }

    private bool CheckLifetime(DateTime? notBefore, DateTime? expires, SecurityToken token, TokenValidationParameters parameters)
    {
        var now = time.GetUtcNow().UtcDateTime;
        if (expires is not { } exp)
        {
            throw new SecurityTokenNoExpirationException("the token has no exp");
        }
        if (notBefore is { } nbf && nbf > exp)
        {
            throw new SecurityTokenInvalidLifetimeException("nbf is after exp") { NotBefore = nbf, Expires = exp };
        }
        if (notBefore is { } early && early > now + ClockSkew)
        {
            throw new SecurityTokenNotYetValidException("the token is not valid yet") { NotBefore = early };
        }
        if (exp < now - ClockSkew)
        {
            throw new SecurityTokenExpiredException("the token expired") { Expires = exp };
        }
        return true;
    }

    /// <summary>A NumericDate claim (seconds since 1970, fractions allowed), null when absent; anything else is malformed.</summary>
    private static DateTimeOffset? Time(JsonElement claims, string name)
    {
        if (!claims.TryGetProperty(name, out var v))
        {
            return null;
        }
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetDouble(out var seconds) || seconds < 0 || seconds > 253402300799)
        {
            throw Malformed($"its '{name}' is not a time (seconds since 1970)");
        }
        return DateTimeOffset.FromUnixTimeSeconds((long)seconds);
    }

    /// <summary>The decoded header and payload (JSON objects) of a compact JWS, or a refusal saying what is wrong.</summary>
    private static (JsonElement Header, JsonElement Payload) Parse(string? token)
    {
        if (string.IsNullOrEmpty(token))
        {
            throw Malformed("none was given");
        }
        if (token.Length > MaxTokenChars)
        {
            throw OidcErrors.Refused(OidcErrors.TooLarge, $"the token is longer than {MaxTokenChars / 1024} KiB: pass the CI platform's job token itself");
        }
        var parts = token.Split('.');
        if (parts.Length != 3)
        {
            throw Malformed($"it has {parts.Length} dot-separated parts, not 3 (encrypted tokens are not accepted)");
        }
        if (parts[0].Length == 0 || parts[1].Length == 0 || !parts.All(IsBase64Url))
        {
            throw Malformed("its parts are not base64url");
        }
        return (Object(parts[0], "header"), Object(parts[1], "payload"));
    }

    private static JsonElement Object(string part, string what)
    {
        try
        {
            // Duplicate member names are refused: two "iss" or "sub" members could be read one way here and another way by
            // whoever reads the claims next.
            using var doc = JsonDocument.Parse(Base64UrlEncoder.DecodeBytes(part), new JsonDocumentOptions { AllowDuplicateProperties = false, MaxDepth = 32 });
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
            {
                throw Malformed($"its {what} is not a JSON object");
            }
            return doc.RootElement.Clone();
        }
        catch (Exception e) when (e is JsonException or FormatException or ArgumentException)
        {
            throw Malformed($"its {what} is not base64url JSON (one object, each member name once)");
        }
    }

    private static string? Issuer(JsonElement payload) =>
        payload.TryGetProperty("iss", out var iss) && iss.ValueKind == JsonValueKind.String ? iss.GetString() : null;

    private static bool IsBase64Url(string s) => s.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_');

    /// <summary>The issuer's allowed algorithms, never beyond <see cref="OidcOptions.SupportedAlgorithms"/> whoever built the config.</summary>
    private static List<string> Allowed(OidcIssuerConfig issuer) =>
        issuer.Algorithms.Count == 0
            ? [.. OidcOptions.SupportedAlgorithms]
            : [.. issuer.Algorithms.Where(a => OidcOptions.SupportedAlgorithms.Contains(a, StringComparer.Ordinal))];

    /// <summary>The keys a token may be checked with: the one named by its kid, or every key when it names none.</summary>
    private static List<OidcSigningKey> Candidates(IReadOnlyList<OidcSigningKey> keys, string? kid) =>
        kid is null ? [.. keys] : [.. keys.Where(k => string.Equals(k.Key.KeyId, kid, StringComparison.Ordinal))];

    private static string KeyOf(OidcIssuerConfig issuer) => $"{issuer.Issuer}\n{issuer.JwksUri}\n{issuer.CaFile}";

    private static WritException Map(Exception? e, OidcIssuerConfig issuer) => e switch
    {
        SecurityTokenExpiredException x => OidcErrors.Refused(OidcErrors.Expired, $"the token expired at {x.Expires:u}: get a fresh token from the CI platform and retry at once (job tokens live minutes)"),
        SecurityTokenNotYetValidException x => OidcErrors.Refused(OidcErrors.NotYetValid, $"the token is not valid before {x.NotBefore:u}: check the clocks of this server and the issuer"),
        SecurityTokenNoExpirationException => OidcErrors.Refused(OidcErrors.NoExpiry, "the token has no 'exp' claim: tokens that never expire are refused; use the CI platform's job token"),
        SecurityTokenInvalidAudienceException => OidcErrors.Refused(OidcErrors.WrongAudience, $"the token's audience is not one this server accepts for {issuer.Issuer}: request the token with audience {string.Join(" or ", issuer.Audiences)}"),
        SecurityTokenInvalidIssuerException => OidcErrors.Refused(OidcErrors.WrongIssuer, $"the token's issuer is not '{issuer.Issuer}': use a token of that issuer"),
        SecurityTokenInvalidAlgorithmException => OidcErrors.Refused(OidcErrors.AlgRefused, $"the token's algorithm is not accepted for {issuer.Issuer}"),
        // The keys given to the handler are the ones the kid names (or all, without a kid): "key not found" there means
        // none of them verifies the signature. An unknown kid is refused before, as UnknownKey.
        SecurityTokenInvalidSignatureException => OidcErrors.Refused(OidcErrors.BadSignature, $"the token's signature does not verify with the key {issuer.Issuer} publishes: the token was altered or signed by someone else; get a fresh token"),
        SecurityTokenInvalidLifetimeException => Malformed("its 'nbf' is after its 'exp'"),
        _ => Malformed($"it was refused by the JWT checks ({e?.GetType().Name ?? "unknown"})"),
    };

    private static WritException Malformed(string why) =>
        OidcErrors.Refused(OidcErrors.Malformed, $"the OIDC token is not a usable JWT: {why}; pass the CI platform's job token unchanged");

    internal static string Sha256Hex(string token) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(token)));

    /// <summary>
    /// Lower-case hex SHA-256 of what the issuer signed (<c>header.payload</c>, without the signature): the key to recognise
    /// one token again. The whole token's hash is not: an ECDSA signature has a second valid encoding (s → n−s), so a copy
    /// with a re-encoded signature is another text but the same token.
    /// </summary>
    public static string SignedPartSha256(string token)
    {
        ArgumentNullException.ThrowIfNull(token);
        var signed = token.LastIndexOf('.') is var dot and > 0 ? token[..dot] : token;
        return Sha256Hex(signed);
    }

    private static string Printable(string? s)
    {
        s ??= "(none)";
        var clean = new string([.. s.Take(100).Select(ch => char.IsControl(ch) || char.IsWhiteSpace(ch) ? '?' : ch)]);
        return s.Length > 100 ? clean + "…" : clean;
    }

    public void Dispose()
    {
        foreach (var source in _issuers.Values)
        {
            if (source.IsValueCreated)
            {
                source.Value.Dispose();
            }
        }
    }
}

/// <summary>Validation against a list of trusted issuers (<c>oidc_issuers</c>).</summary>
public static class OidcTokenValidatorExtensions
{
    /// <summary>
    /// Picks the issuer configuration by the token's unverified <c>iss</c> (<see cref="OidcTokenValidator.FindIssuer"/>:
    /// <see cref="OidcErrors.UnknownIssuer"/> when none) and validates the token against it; returns both, since the
    /// configuration decides the selectors (<see cref="OidcSelectors.From"/>).
    /// </summary>
    public static async Task<(ValidatedToken Token, OidcIssuerConfig Issuer)> ValidateAnyAsync(this IOidcTokenValidator validator, string token, IReadOnlyList<OidcIssuerConfig> issuers, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(validator);
        var issuer = OidcTokenValidator.FindIssuer(token, issuers);
        return (await validator.ValidateAsync(token, issuer, ct).ConfigureAwait(false), issuer);
    }
}
