using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Writ.Protocol.Errors;
using Writ.Protocol.Evidence;
using Writ.Server.Oidc;

namespace Writ.Server.Ci;

/// <summary>What a CI login makes of a validated job token: its replay key and its evidence (and the claimed issuer of a refused one).</summary>
public static class CiTokens
{
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

    /// <summary>
    /// The replay key: the issuer's jti (hashed with the issuer), else the SHA-256 of what the issuer signed (the token's
    /// header and payload, <paramref name="token"/> up to its last '.'). Not of the whole token: a signature has other
    /// encodings that verify too (ECDSA's (r, n - s)), so a copied token could be re-encoded into a "new" one.
    /// </summary>
    public static string ReplayKey(ValidatedToken t, string token)
    {
        ArgumentNullException.ThrowIfNull(t);
        ArgumentNullException.ThrowIfNull(token);
        if (string.IsNullOrEmpty(t.Jti))
        {
            return "signed-sha256:" + OidcTokenValidator.SignedPartSha256(token);
        }
        return "jti:" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(t.Issuer + "\n" + t.Jti)));
    }

    /// <summary>
    /// The login's evidence: the <c>oidc:</c> selectors (<see cref="OidcSelectors"/>: <c>oidc:iss:</c>, <c>oidc:sub:</c>,
    /// <c>oidc:claim:&lt;name&gt;:&lt;value&gt;</c> for the issuer's configured claims) and facts <c>oidc.iss</c>,
    /// <c>oidc.sub</c>, <c>oidc.claim.&lt;name&gt;</c> (list values joined with ","), and <c>oidc.omitted</c> naming the claim
    /// values that could not be selectors.
    /// </summary>
    public static WorkloadEvidence Evidence(ValidatedToken t, OidcIssuerConfig issuer, string instanceId)
    {
        ArgumentNullException.ThrowIfNull(t);
        ArgumentNullException.ThrowIfNull(issuer);
        var selectors = OidcSelectors.From(t, issuer);
        var facts = new List<KeyValuePair<string, string>> { new("oidc.iss", Printable(t.Issuer)), new("oidc.sub", Printable(t.Subject)) };
        foreach (var name in issuer.Claims.Distinct(StringComparer.Ordinal))
        {
            var values = ClaimValues(t.Claims, name);
            if (values.Count > 0 && name.Length <= 100 && !name.Any(char.IsControl))
                facts.Add(new("oidc.claim." + name, Printable(string.Join(",", values))));
        }
        if (selectors.Omitted.Count > 0)
            facts.Add(new("oidc.omitted", Printable(string.Join("; ", selectors.Omitted))));
        return WorkloadEvidence.TryCreate(selectors.Selectors.Select(s => (s.Type, s.Value)), facts, instanceId, out var ev, out var error)
            ? ev
            : throw new WritException(OidcErrors.Malformed, WritErrorKind.Unauthenticated, "the token's claims cannot be workload evidence: " + error);
    }

    private static List<string> ClaimValues(JsonElement claims, string name)
    {
        var values = new List<string>();
        if (claims.ValueKind != JsonValueKind.Object || !claims.TryGetProperty(name, out var c))
            return values;
        foreach (var v in c.ValueKind == JsonValueKind.Array ? c.EnumerateArray().ToList() : [c])
        {
            if (v.ValueKind == JsonValueKind.String)
                values.Add(v.GetString()!);
            else if (v.ValueKind is JsonValueKind.Number or JsonValueKind.True or JsonValueKind.False)
                values.Add(v.GetRawText());
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

}
