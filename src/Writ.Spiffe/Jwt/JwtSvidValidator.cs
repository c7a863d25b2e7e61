using System.Diagnostics.CodeAnalysis;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Writ.Spiffe.Bundles;
using Writ.Spiffe.Internal;

namespace Writ.Spiffe.Jwt;

/// <summary>
/// Validates JWT-SVIDs (JWT-SVID.md §2–§3): compact JWS only; alg RS/ES/PS 256/384/512 only; typ absent, JWT or JOSE; no header
/// parameters beyond alg/kid/typ; kid required (unless allowed by option) and looked up in the JWT authorities of the subject's
/// trust domain; signature; sub a SPIFFE ID; aud contains an expected audience; exp in the future; iat/nbf not in the future.
/// Never throws on bad input.
/// </summary>
public static class JwtSvidValidator
{
    private static readonly HashSet<string> AllowedAlgs = new(StringComparer.Ordinal)
    {
        "RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512",
    };

    private static readonly HashSet<string> AllowedHeaderParams = new(StringComparer.Ordinal) { "alg", "kid", "typ" };

    public static JwtSvidValidation Validate(string token, IBundleSource bundles, IReadOnlyList<string> audiences, DateTimeOffset now,
        JwtSvidValidationOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(bundles);
        ArgumentNullException.ThrowIfNull(audiences);
        options ??= new JwtSvidValidationOptions();
        if (audiences.Count == 0)
        {
            throw new ArgumentException("no expected audience given: a JWT-SVID validator must check the audience", nameof(audiences));
        }
        if (!TryDecode(token, options.MaxTokenLength, out var parts, out var error))
        {
            return JwtSvidValidation.Fail(error);
        }
        var header = parts.Header;
        var alg = header.GetProperty("alg").GetString()!;
        if (!AllowedAlgs.Contains(alg))
        {
            return JwtSvidValidation.Fail($"JWT alg '{Jwk.Printable(alg)}' is not allowed for JWT-SVIDs: only RS/ES/PS 256/384/512 are accepted (JWT-SVID §2.1)");
        }
        foreach (var p in header.EnumerateObject())
        {
            if (!AllowedHeaderParams.Contains(p.Name))
            {
                return JwtSvidValidation.Fail($"JWT header parameter '{Jwk.Printable(p.Name)}' is not allowed in a JWT-SVID: only alg, kid and typ are (JWT-SVID §2)");
            }
        }
        if (header.TryGetProperty("typ", out var typ) && (typ.ValueKind != JsonValueKind.String || typ.GetString() is not ("JWT" or "JOSE")))
        {
            return JwtSvidValidation.Fail("JWT typ header must be absent, 'JWT' or 'JOSE' (JWT-SVID §2.3)");
        }
        string? kid = null;
        if (header.TryGetProperty("kid", out var kidEl))
        {
            if (kidEl.ValueKind != JsonValueKind.String || string.IsNullOrEmpty(kidEl.GetString()))
            {
                return JwtSvidValidation.Fail("JWT kid header must be a non-empty string");
            }
            kid = kidEl.GetString();
        }
        else if (!options.AllowMissingKid)
        {
            return JwtSvidValidation.Fail("JWT has no kid header: JWT-SVIDs must name their signing key (set AllowMissingKid to accept such tokens)");
        }

        if (!TryReadClaims(parts.Payload, out var id, out var aud, out var exp, out var iat, out var binding, out error))
        {
            return JwtSvidValidation.Fail(error);
        }

        var bundle = bundles.GetBundle(id.TrustDomain);
        if (bundle is null)
        {
            return JwtSvidValidation.Fail($"no trust bundle for trust domain '{id.TrustDomain}': add or federate that trust domain's bundle");
        }
        IEnumerable<AsymmetricAlgorithm> candidates;
        if (kid is not null)
        {
            if (!bundle.JwtAuthorities.TryGetValue(kid, out var k))
            {
                return JwtSvidValidation.Fail($"JWT kid '{Jwk.Printable(kid)}' is not a JWT authority of trust domain '{id.TrustDomain}': the token was not signed by that trust domain");
            }
            candidates = [k];
        }
        else
        {
            candidates = bundle.JwtAuthorities.Values;
        }
        var verified = false;
        foreach (var key in candidates)
        {
            if (VerifySignature(key, alg, parts.SigningInput, parts.Signature))
            {
                verified = true;
                break;
            }
        }
        if (!verified)
        {
            return JwtSvidValidation.Fail("JWT signature does not verify with the trust domain's key: the token was altered or forged");
        }

        if (!aud.Any(a => audiences.Contains(a, StringComparer.Ordinal)))
        {
            return JwtSvidValidation.Fail("JWT aud does not contain any expected audience: the token was issued for another service");
        }
        if (now - options.Leeway >= exp)
        {
            return JwtSvidValidation.Fail($"JWT expired at {exp:O}: fetch a fresh JWT-SVID");
        }
        if (iat is { } issued && issued > now + options.Leeway)
        {
            return JwtSvidValidation.Fail($"JWT iat {issued:O} is in the future: check the issuer's clock");
        }
        if (parts.Payload.TryGetProperty("nbf", out var nbfEl))
        {
            if (!TryNumericDate(nbfEl, out var nbf))
            {
                return JwtSvidValidation.Fail("JWT nbf claim is not a NumericDate");
            }
            if (nbf > now + options.Leeway)
            {
                return JwtSvidValidation.Fail($"JWT is not valid before {nbf:O}: check the clocks");
            }
        }
        return new JwtSvidValidation(true, new JwtSvid(id, aud, exp, iat, kid ?? "", token, parts.Payload.Clone())
        {
            Jti = binding.Jti,
            CnfX5tS256 = binding.X5tS256,
        }, null);
    }

    /// <summary>Parses a token without verifying anything but its shape (for display). Never throws.</summary>
    public static bool TryReadUnverified(string token, [NotNullWhen(true)] out JwtSvid? svid, [NotNullWhen(false)] out string? error)
    {
        svid = null;
        if (!TryDecode(token, new JwtSvidValidationOptions().MaxTokenLength, out var parts, out error))
        {
            return false;
        }
        if (!TryReadClaims(parts.Payload, out var id, out var aud, out var exp, out var iat, out var binding, out error))
        {
            return false;
        }
        var kid = parts.Header.TryGetProperty("kid", out var k) && k.ValueKind == JsonValueKind.String ? k.GetString() ?? "" : "";
        svid = new JwtSvid(id, aud, exp, iat, kid, token, parts.Payload.Clone()) { Jti = binding.Jti, CnfX5tS256 = binding.X5tS256 };
        return true;
    }

    private sealed record Parts(JsonElement Header, JsonElement Payload, byte[] SigningInput, byte[] Signature);

    private static bool TryDecode(string? token, int maxLength, [NotNullWhen(true)] out Parts? parts, [NotNullWhen(false)] out string? error)
    {
        parts = null;
        if (string.IsNullOrEmpty(token))
        {
            error = "JWT is empty: send a JWT-SVID in compact serialization";
            return false;
        }
        if (token.Length > maxLength)
        {
            error = $"JWT is longer than {maxLength} characters: refused before parsing";
            return false;
        }
        var segs = token.Split('.');
        if (segs.Length != 3)
        {
            error = "JWT is not in JWS compact serialization (three base64url parts separated by dots; JWT-SVID §1)";
            return false;
        }
        if (segs[0].Length == 0 || segs[1].Length == 0 || segs[2].Length == 0)
        {
            error = "JWT has an empty header, payload or signature part: unsigned tokens are refused";
            return false;
        }
        var headerBytes = B64Url.TryDecode(segs[0]);
        var payloadBytes = B64Url.TryDecode(segs[1]);
        var sig = B64Url.TryDecode(segs[2]);
        if (headerBytes is null || payloadBytes is null || sig is null)
        {
            error = "JWT part is not valid unpadded base64url: the token is corrupted";
            return false;
        }
        JsonElement header, payload;
        try
        {
            using var h = JsonDocument.Parse(headerBytes, Jwk.StrictJson);
            using var p = JsonDocument.Parse(payloadBytes, Jwk.StrictJson);
            header = h.RootElement.Clone();
            payload = p.RootElement.Clone();
        }
        catch (JsonException)
        {
            error = "JWT header or payload is not valid JSON (or repeats a member name): the token is corrupted";
            return false;
        }
        if (header.ValueKind != JsonValueKind.Object || payload.ValueKind != JsonValueKind.Object)
        {
            error = "JWT header and payload must be JSON objects";
            return false;
        }
        if (!header.TryGetProperty("alg", out var alg) || alg.ValueKind != JsonValueKind.String)
        {
            error = "JWT header has no alg: JWT-SVIDs must be signed (JWT-SVID §2.1)";
            return false;
        }
        parts = new Parts(header, payload, Encoding.ASCII.GetBytes(token[..(segs[0].Length + 1 + segs[1].Length)]), sig);
        error = null;
        return true;
    }

    /// <summary>The longest jti accepted (it is a key of replay caches and deny lists). Writ's are 22 characters.</summary>
    public const int MaxJtiLength = 256;

    private readonly record struct IdAndBinding(string? Jti, string? X5tS256);

    private static bool TryReadClaims(JsonElement payload, [NotNullWhen(true)] out SpiffeId? id, [NotNullWhen(true)] out IReadOnlyList<string>? aud,
        out DateTimeOffset exp, out DateTimeOffset? iat, out IdAndBinding binding, [NotNullWhen(false)] out string? error)
    {
        binding = default;
        id = null;
        aud = null;
        exp = default;
        iat = null;
        if (!payload.TryGetProperty("sub", out var sub) || sub.ValueKind != JsonValueKind.String)
        {
            error = "JWT has no sub claim: a JWT-SVID's subject is its SPIFFE ID (JWT-SVID §3.1)";
            return false;
        }
        if (!SpiffeId.TryParse(sub.GetString(), out id, out var idError))
        {
            error = $"JWT sub claim is not a valid SPIFFE ID: {idError}";
            return false;
        }
        if (!payload.TryGetProperty("aud", out var audEl))
        {
            error = "JWT has no aud claim: a JWT-SVID must name its audience (JWT-SVID §3.2)";
            return false;
        }
        var list = new List<string>();
        if (audEl.ValueKind == JsonValueKind.String)
        {
            list.Add(audEl.GetString()!);
        }
        else if (audEl.ValueKind == JsonValueKind.Array)
        {
            foreach (var a in audEl.EnumerateArray())
            {
                if (a.ValueKind != JsonValueKind.String)
                {
                    error = "JWT aud claim has a value that is not a string";
                    return false;
                }
                list.Add(a.GetString()!);
            }
        }
        else
        {
            error = "JWT aud claim must be a string or an array of strings";
            return false;
        }
        if (list.Count == 0 || list.Any(string.IsNullOrEmpty))
        {
            error = "JWT aud claim is empty: a JWT-SVID must name at least one audience (JWT-SVID §3.2)";
            return false;
        }
        aud = list;
        if (!payload.TryGetProperty("exp", out var expEl))
        {
            error = "JWT has no exp claim: JWT-SVIDs must expire (JWT-SVID §3.3)";
            return false;
        }
        if (!TryNumericDate(expEl, out exp))
        {
            error = "JWT exp claim is not a NumericDate (seconds since the epoch)";
            return false;
        }
        if (payload.TryGetProperty("iat", out var iatEl))
        {
            if (!TryNumericDate(iatEl, out var issued))
            {
                error = "JWT iat claim is not a NumericDate (seconds since the epoch)";
                return false;
            }
            iat = issued;
        }
        if (!TryReadJti(payload, out var jti, out error) || !TryReadCnf(payload, out var x5t, out error))
        {
            return false;
        }
        binding = new IdAndBinding(jti, x5t);
        error = null;
        return true;
    }

    private static bool TryReadJti(JsonElement payload, out string? jti, [NotNullWhen(false)] out string? error)
    {
        jti = null;
        error = null;
        if (!payload.TryGetProperty("jti", out var el))
        {
            return true;
        }
        if (el.ValueKind != JsonValueKind.String || el.GetString() is not { Length: > 0 and <= MaxJtiLength } value || value.Any(char.IsControl))
        {
            error = $"JWT jti claim must be a non-empty string of at most {MaxJtiLength} printable characters (RFC 7519 §4.1.7): the token is malformed";
            return false;
        }
        jti = value;
        return true;
    }

    /// <summary>
    /// <c>cnf</c> (RFC 7800 §3.1): absent for a bearer token; otherwise an object with exactly one confirmation method, which
    /// must be <c>x5t#S256</c> (RFC 8705 §3.1) — a binding this library cannot check is refused, never ignored.
    /// </summary>
    private static bool TryReadCnf(JsonElement payload, out string? x5t, [NotNullWhen(false)] out string? error)
    {
        x5t = null;
        error = null;
        if (!payload.TryGetProperty("cnf", out var cnf))
        {
            return true;
        }
        if (cnf.ValueKind != JsonValueKind.Object)
        {
            error = "JWT cnf claim must be a JSON object holding x5t#S256 (RFC 7800 §3.1, RFC 8705 §3.1): the token is malformed";
            return false;
        }
        var members = 0;
        JsonElement value = default;
        foreach (var m in cnf.EnumerateObject())
        {
            members++;
            if (m.NameEquals("x5t#S256"))
            {
                value = m.Value;
            }
        }
        if (value.ValueKind == JsonValueKind.Undefined)
        {
            error = "JWT cnf claim has no x5t#S256 member: only certificate-bound tokens (RFC 8705 §3.1) can be checked, so the token is refused";
            return false;
        }
        if (members != 1)
        {
            error = "JWT cnf claim holds more than one confirmation method: RFC 7800 §3.1 allows exactly one, so the token is refused";
            return false;
        }
        if (value.ValueKind != JsonValueKind.String || CertificateBinding.TryDecode(value.GetString()) is null)
        {
            error = "JWT cnf x5t#S256 is not the unpadded base64url SHA-256 of a certificate (43 characters): the token is malformed";
            return false;
        }
        x5t = value.GetString();
        return true;
    }

    private static bool TryNumericDate(JsonElement e, out DateTimeOffset value)
    {
        value = default;
        if (e.ValueKind != JsonValueKind.Number)
        {
            return false;
        }
        long seconds;
        if (e.TryGetInt64(out var l))
        {
            seconds = l;
        }
        else if (e.TryGetDouble(out var d) && double.IsFinite(d) && d > -62135596800 && d < 253402300799)
        {
            seconds = (long)Math.Floor(d);
        }
        else
        {
            return false;
        }
        if (seconds is < -62135596800 or > 253402300799)
        {
            return false;
        }
        value = DateTimeOffset.FromUnixTimeSeconds(seconds);
        return true;
    }

    private static bool VerifySignature(AsymmetricAlgorithm key, string alg, byte[] data, byte[] sig)
    {
        // Bundle keys are shared between concurrent validations; .NET does not promise key objects are thread-safe.
        lock (key)
        {
            return VerifyUnlocked(key, alg, data, sig);
        }
    }

    private static bool VerifyUnlocked(AsymmetricAlgorithm key, string alg, byte[] data, byte[] sig)
    {
        try
        {
            var hash = JwtSvidMinter.HashOf(alg);
            switch (alg[0], key)
            {
                case ('E', ECDsa ec):
                    var size = alg switch { "ES256" => 256, "ES384" => 384, _ => 521 };
                    var coord = (size + 7) / 8;
                    if (ec.KeySize != size || sig.Length != 2 * coord)
                    {
                        return false; // alg must match the key's curve (no ES256 with a P-384 key).
                    }
                    return ec.VerifyData(data, sig, hash, DSASignatureFormat.IeeeP1363FixedFieldConcatenation);
                case ('R', RSA rsa):
                    return rsa.VerifyData(data, sig, hash, RSASignaturePadding.Pkcs1);
                case ('P', RSA rsa):
                    return rsa.VerifyData(data, sig, hash, RSASignaturePadding.Pss);
                default:
                    return false;
            }
        }
        catch (CryptographicException)
        {
            return false;
        }
    }
}
