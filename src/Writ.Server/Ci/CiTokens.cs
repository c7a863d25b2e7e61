using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Writ.Protocol.Errors;
using Writ.Protocol.Evidence;
using Writ.Server.Oidc;

namespace Writ.Server.Ci;

/// <summary>What a CI login makes of a validated job token: the issuer config to validate it with, its replay key, its evidence.</summary>
public static class CiTokens
{
    /// <summary>
    /// The configured issuer whose <c>iss</c> the token names (read unverified only to pick the config: validation then
    /// checks everything), or WRIT-OIDC-UNKNOWN-ISSUER.
    /// </summary>
    public static OidcIssuerConfig IssuerFor(string token, IReadOnlyList<OidcIssuerConfig> issuers)
    {
        ArgumentNullException.ThrowIfNull(token);
        ArgumentNullException.ThrowIfNull(issuers);
        var iss = UnverifiedIssuer(token);
        if (iss is null)
            throw new WritException(CiLoginErrors.Malformed, WritErrorKind.Unauthenticated, "the token is not a JWT with an iss claim: pass the CI platform's OIDC ID token, not another credential");
        return issuers.FirstOrDefault(i => string.Equals(i.Issuer, iss, StringComparison.Ordinal))
            ?? throw new WritException(CiLoginErrors.UnknownIssuer, WritErrorKind.Unauthenticated,
                $"the token's issuer '{Printable(iss)}' is not in oidc_issuers: add it to the server's oidc_issuers, or use a token of a configured issuer");
    }

    /// <summary>The <c>iss</c> of a compact JWS as it claims it (not verified), or null when it is not one.</summary>
    public static string? UnverifiedIssuer(string token)
    {
        if (token.Length > CiLogins.MaxTokenBytes)
            return null;
        var parts = token.Split('.');
        if (parts.Length != 3)
            return null;
        try
        {
            var payload = Base64UrlDecode(parts[1]);
            using var doc = JsonDocument.Parse(payload);
            return doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("iss", out var iss) && iss.ValueKind == JsonValueKind.String
                ? iss.GetString()
                : null;
        }
        catch (Exception e) when (e is FormatException or JsonException)
        {
            return null;
        }
    }

    /// <summary>The replay key: the issuer's jti (hashed with the issuer), else the token's SHA-256.</summary>
    public static string ReplayKey(ValidatedToken t)
    {
        ArgumentNullException.ThrowIfNull(t);
        if (string.IsNullOrEmpty(t.Jti))
            return "sha256:" + t.TokenSha256;
        return "jti:" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(t.Issuer + "\n" + t.Jti)));
    }

    /// <summary>
    /// The login's evidence: the <c>oidc:</c> selectors (<c>oidc:iss:</c>, <c>oidc:sub:</c>, <c>oidc:claim:&lt;name&gt;:&lt;value&gt;</c> for the
    /// issuer's configured claims) and facts <c>oidc.iss</c>, <c>oidc.sub</c>, <c>oidc.claim.&lt;name&gt;</c>.
    /// </summary>
    public static WorkloadEvidence Evidence(ValidatedToken t, OidcIssuerConfig issuer, string instanceId)
    {
        ArgumentNullException.ThrowIfNull(t);
        ArgumentNullException.ThrowIfNull(issuer);
        var selectors = Selectors(t, issuer);
        var facts = new List<KeyValuePair<string, string>> { new("oidc.iss", t.Issuer), new("oidc.sub", Printable(t.Subject)) };
        foreach (var name in issuer.Claims.Distinct(StringComparer.Ordinal))
        {
            var values = ClaimValues(t.Claims, name);
            if (values.Count > 0 && name.Length <= 100 && !name.Any(char.IsControl))
                facts.Add(new("oidc.claim." + name, Printable(string.Join(",", values))));
        }
        return WorkloadEvidence.TryCreate(selectors.Select(s => (s.Type, s.Value)), facts, instanceId, out var ev, out var error)
            ? ev
            : throw new WritException(CiLoginErrors.Malformed, WritErrorKind.Unauthenticated, "the token's claims cannot be evidence: " + error);
    }

    private static List<Selector> Selectors(ValidatedToken t, OidcIssuerConfig issuer)
    {
        var list = new List<Selector>();
        void Add(string value)
        {
            if (value.Length <= WorkloadEvidence.MaxTextLength && Selector.IsValid("oidc", value, out _))
                list.Add(new Selector("oidc", value));
        }
        Add("iss:" + t.Issuer);
        Add("sub:" + t.Subject);
        foreach (var name in issuer.Claims.Distinct(StringComparer.Ordinal))
        {
            foreach (var v in ClaimValues(t.Claims, name))
                Add($"claim:{name}:{v}");
        }
        return list;
    }

    private static List<string> ClaimValues(JsonElement claims, string name)
    {
        var values = new List<string>();
        if (claims.ValueKind != JsonValueKind.Object || !claims.TryGetProperty(name, out var c))
            return values;
        void One(JsonElement v)
        {
            switch (v.ValueKind)
            {
                case JsonValueKind.String:
                    values.Add(v.GetString()!);
                    break;
                case JsonValueKind.Number:
                    values.Add(v.GetRawText());
                    break;
                case JsonValueKind.True:
                case JsonValueKind.False:
                    values.Add(v.GetBoolean() ? "true" : "false");
                    break;
            }
        }
        if (c.ValueKind == JsonValueKind.Array)
        {
            foreach (var v in c.EnumerateArray())
                One(v);
        }
        else
        {
            One(c);
        }
        return values;
    }

    /// <summary>A claim value for a message or a log line: printable, at most 200 characters.</summary>
    public static string Printable(string s)
    {
        ArgumentNullException.ThrowIfNull(s);
        var sb = new StringBuilder(Math.Min(s.Length, 200));
        foreach (var c in s.Take(200))
            sb.Append(char.IsControl(c) ? '?' : c);
        return sb.ToString();
    }

    private static byte[] Base64UrlDecode(string s)
    {
        var b = s.Replace('-', '+').Replace('_', '/');
        b = (b.Length % 4) switch { 2 => b + "==", 3 => b + "=", 0 => b, _ => throw new FormatException("not base64url") };
        return Convert.FromBase64String(b);
    }

    /// <summary>The first 16 hex digits of the token's SHA-256: what logs and the ledger name a token by (never the token).</summary>
    public static string Sha256Prefix(string token) =>
        Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(token)))[..16];

    internal static string Unix(DateTimeOffset t) => t.ToUnixTimeSeconds().ToString(CultureInfo.InvariantCulture);
}

/// <summary>Token refusals the CI login makes itself before validation (the validator has the rest).</summary>
public static class CiLoginErrors
{
    public const string UnknownIssuer = "WRIT-OIDC-UNKNOWN-ISSUER";
    public const string Malformed = "WRIT-CI-TOKEN-MALFORMED";
}
