using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using Writ.Server.Configuration;

namespace Writ.Server.Oidc;

/// <summary>
/// The trusted OIDC issuers (<c>oidc_issuers</c>, a JSON list of objects: <c>issuer</c>, <c>audiences</c>, <c>claims</c>,
/// optional <c>algorithms</c>, <c>jwks_uri</c>, <c>ca_file</c>; docs/configuration.md): CI platforms whose job tokens
/// <c>writ ci login</c> accepts. Every problem is one <c>WRIT-CONFIG-OIDC-…</c> line naming the list index and field.
/// </summary>
public sealed record OidcOptions
{
    /// <summary>A field is unknown, missing, or of the wrong type (or the list itself is not a list of objects).</summary>
    public const string FieldCode = "WRIT-CONFIG-OIDC-FIELD";

    /// <summary>issuer or jwks_uri is not an absolute https URL.</summary>
    public const string UrlCode = "WRIT-CONFIG-OIDC-URL";

    /// <summary>The same issuer is listed twice.</summary>
    public const string DuplicateCode = "WRIT-CONFIG-OIDC-DUPLICATE";

    /// <summary>algorithms names one that is not an accepted asymmetric JWS algorithm.</summary>
    public const string AlgorithmCode = "WRIT-CONFIG-OIDC-ALGORITHM";

    /// <summary>ca_file does not exist or holds no PEM certificate.</summary>
    public const string CaFileCode = "WRIT-CONFIG-OIDC-CA-FILE";

    /// <summary>
    /// The JWS algorithms an issuer may use, and the default when <c>algorithms</c> is not given. Only asymmetric ones:
    /// <c>none</c> and the HMAC family are never accepted (an HMAC "secret" would be the issuer's public key). EdDSA is not
    /// here because Microsoft.IdentityModel (the library that checks the signatures) cannot verify it.
    /// </summary>
    public static readonly IReadOnlyList<string> SupportedAlgorithms = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"];

    private static readonly string[] Fields = ["issuer", "audiences", "claims", "algorithms", "jwks_uri", "ca_file"];

    public static OidcOptions None { get; } = new();

    public IReadOnlyList<OidcIssuerConfig> Issuers { get; init; } = [];

    public static readonly IReadOnlyList<ConfigKey> Keys =
    [
        new("oidc_issuers", "", "OIDC issuers whose tokens CI jobs exchange for SVIDs ('writ ci login'): a JSON list of {issuer, audiences, claims, algorithms?, jwks_uri?, ca_file?} (docs/configuration.md).") { IsJson = true },
    ];

    /// <summary>The configured issuer whose <see cref="OidcIssuerConfig.Issuer"/> is exactly <paramref name="issuer"/>, or null.</summary>
    public OidcIssuerConfig? Find(string? issuer) =>
        issuer is null ? null : Issuers.FirstOrDefault(i => string.Equals(i.Issuer, issuer, StringComparison.Ordinal));

    /// <summary>Parses <c>oidc_issuers</c>; problems go to <see cref="ConfigSources.Errors"/>.</summary>
    public static OidcOptions Build(ConfigSources c)
    {
        ArgumentNullException.ThrowIfNull(c);
        if (c.Json("oidc_issuers") is not { } list)
        {
            return None;
        }
        var where = c.Describe("oidc_issuers");
        if (list.ValueKind != JsonValueKind.Array)
        {
            c.Errors.Add($"{FieldCode}: {where} must be a JSON list of objects {{issuer, audiences, claims, ...}}, got a JSON {Kind(list)}");
            return None;
        }
        var issuers = new List<OidcIssuerConfig>();
        var index = 0;
        foreach (var item in list.EnumerateArray())
        {
            var errors = c.Errors.Count;
            var parsed = ParseIssuer(item, $"{where} item [{index}]", c.Errors);
            if (parsed is not null && c.Errors.Count == errors)
            {
                if (issuers.Any(i => string.Equals(i.Issuer, parsed.Issuer, StringComparison.Ordinal)))
                {
                    c.Errors.Add($"{DuplicateCode}: {where} item [{index}] field 'issuer' repeats '{parsed.Issuer}': list each issuer once (put all its audiences in one 'audiences' list)");
                }
                else
                {
                    issuers.Add(parsed);
                }
            }
            index++;
        }
        return new OidcOptions { Issuers = issuers };
    }

    /// <summary>
    /// One issuer object (also usable by other components that configure an issuer the same way); problems are added to
    /// <paramref name="errors"/> prefixed with <paramref name="where"/>, and null is returned when the object is unusable.
    /// </summary>
    public static OidcIssuerConfig? ParseIssuer(JsonElement item, string where, List<string> errors)
    {
        ArgumentNullException.ThrowIfNull(errors);
        if (item.ValueKind != JsonValueKind.Object)
        {
            errors.Add($"{FieldCode}: {where} must be a JSON object {{issuer, audiences, claims, ...}}, got a JSON {Kind(item)}");
            return null;
        }
        var ok = true;
        foreach (var p in item.EnumerateObject())
        {
            if (!Fields.Contains(p.Name, StringComparer.Ordinal))
            {
                errors.Add($"{FieldCode}: {where} has unknown field '{Printable(p.Name)}': the fields are {string.Join(", ", Fields)}");
                ok = false;
            }
        }

        var issuer = HttpsUrl(item, "issuer", where, errors, required: true);
        ok &= issuer is not null;

        var audiences = StringList(item, "audiences", where, errors, required: true);
        ok &= audiences is not null;

        var claims = StringList(item, "claims", where, errors, required: false);
        ok &= claims is not null;

        var algorithms = StringList(item, "algorithms", where, errors, required: false);
        ok &= algorithms is not null;
        foreach (var alg in algorithms ?? [])
        {
            if (!SupportedAlgorithms.Contains(alg, StringComparer.Ordinal))
            {
                var why = alg.Equals("none", StringComparison.OrdinalIgnoreCase) ? "unsigned tokens are never accepted"
                    : alg.StartsWith("HS", StringComparison.OrdinalIgnoreCase) ? "HMAC tokens are never accepted (their secret would be the issuer's public key)"
                    : alg == "EdDSA" ? "this server cannot verify EdDSA signatures yet"
                    : "it is not a JWS signature algorithm this server accepts";
                errors.Add($"{AlgorithmCode}: {where} field 'algorithms' names '{Printable(alg)}': {why}; use some of {string.Join(", ", SupportedAlgorithms)} (or leave 'algorithms' out for all of them)");
                ok = false;
            }
        }

        Uri? jwks = null;
        if (item.TryGetProperty("jwks_uri", out var j) && j.ValueKind != JsonValueKind.Null)
        {
            var text = HttpsUrl(item, "jwks_uri", where, errors, required: false);
            ok &= text is not null;
            jwks = text is null ? null : new Uri(text);
        }

        string? caFile = null;
        if (item.TryGetProperty("ca_file", out var ca) && ca.ValueKind != JsonValueKind.Null)
        {
            if (ca.ValueKind != JsonValueKind.String || ca.GetString() is not { Length: > 0 } path)
            {
                errors.Add($"{FieldCode}: {where} field 'ca_file' must be the path of a PEM file of CA certificates (a string), got a JSON {Kind(ca)}");
                ok = false;
            }
            else if (LoadCaFile(path, out var problem) is null)
            {
                errors.Add($"{CaFileCode}: {where} field 'ca_file' '{Printable(path)}' {problem}");
                ok = false;
            }
            else
            {
                caFile = path;
            }
        }

        if (!ok)
        {
            return null;
        }
        return new OidcIssuerConfig
        {
            Issuer = issuer!,
            Audiences = audiences!,
            Claims = claims!,
            Algorithms = algorithms!.Count > 0 ? algorithms : SupportedAlgorithms,
            JwksUri = jwks,
            CaFile = caFile,
        };
    }

    /// <summary>The certificates of a PEM CA file, or null with why not (missing, unreadable, no certificate in it).</summary>
    public static X509Certificate2Collection? LoadCaFile(string path, out string problem)
    {
        problem = "";
        if (!File.Exists(path))
        {
            problem = "does not exist: give the PEM file of the CA that issued the issuer's TLS certificate, or leave 'ca_file' out to use the system roots";
            return null;
        }
        var certs = new X509Certificate2Collection();
        try
        {
            certs.ImportFromPemFile(path);
        }
        catch (Exception e) when (e is CryptographicException or IOException or UnauthorizedAccessException)
        {
            problem = $"cannot be read as PEM certificates ({e.GetType().Name}): give a readable PEM file of CA certificates";
            return null;
        }
        if (certs.Count == 0)
        {
            problem = "holds no PEM certificate (-----BEGIN CERTIFICATE-----): give the PEM file of the CA that issued the issuer's TLS certificate";
            return null;
        }
        return certs;
    }

    private static string? HttpsUrl(JsonElement item, string field, string where, List<string> errors, bool required)
    {
        if (!item.TryGetProperty(field, out var v) || v.ValueKind == JsonValueKind.Null)
        {
            if (required)
            {
                errors.Add($"{FieldCode}: {where} has no '{field}': give the issuer URL exactly as the tokens' 'iss' claim has it, e.g. https://token.actions.githubusercontent.com");
            }
            return null;
        }
        if (v.ValueKind != JsonValueKind.String)
        {
            errors.Add($"{FieldCode}: {where} field '{field}' must be a string (an https URL), got a JSON {Kind(v)}");
            return null;
        }
        var text = v.GetString()!;
        if (!Uri.TryCreate(text, UriKind.Absolute, out var uri) || uri.Scheme != Uri.UriSchemeHttps || uri.Host.Length == 0
            || !string.IsNullOrEmpty(uri.Query) || !string.IsNullOrEmpty(uri.Fragment) || !string.IsNullOrEmpty(uri.UserInfo)
            || text.Any(ch => char.IsWhiteSpace(ch) || char.IsControl(ch)))
        {
            errors.Add($"{UrlCode}: {where} field '{field}' must be an absolute https URL without query, fragment or user info, got '{Printable(text)}': plain http is refused because anyone on the path could swap the issuer's keys");
            return null;
        }
        return text;
    }

    private static List<string>? StringList(JsonElement item, string field, string where, List<string> errors, bool required)
    {
        if (!item.TryGetProperty(field, out var v) || v.ValueKind == JsonValueKind.Null)
        {
            if (required)
            {
                errors.Add($"{FieldCode}: {where} has no '{field}': give a non-empty list of strings (the audience the CI job asks its tokens for, e.g. [\"writ\"])");
                return null;
            }
            return [];
        }
        if (v.ValueKind != JsonValueKind.Array || v.EnumerateArray().Any(e => e.ValueKind != JsonValueKind.String || e.GetString()!.Length == 0))
        {
            errors.Add($"{FieldCode}: {where} field '{field}' must be a list of non-empty strings, got {Describe(v)}");
            return null;
        }
        var list = v.EnumerateArray().Select(e => e.GetString()!).Distinct(StringComparer.Ordinal).ToList();
        if (required && list.Count == 0)
        {
            errors.Add($"{FieldCode}: {where} field '{field}' is empty: give at least one (the audience the CI job asks its tokens for, e.g. [\"writ\"])");
            return null;
        }
        return list;
    }

    private static string Describe(JsonElement v) =>
        v.ValueKind == JsonValueKind.Array ? "a list with an element that is not a non-empty string" : "a JSON " + Kind(v);

    private static string Kind(JsonElement v) => v.ValueKind switch
    {
        JsonValueKind.Object => "object",
        JsonValueKind.Array => "list",
        JsonValueKind.String => "string",
        JsonValueKind.Number => "number",
        JsonValueKind.True or JsonValueKind.False => "boolean",
        _ => "null",
    };

    private static string Printable(string s)
    {
        var clean = new string([.. s.Take(200).Select(ch => char.IsControl(ch) ? '?' : ch)]);
        return s.Length > 200 ? clean + "…" : clean;
    }
}
