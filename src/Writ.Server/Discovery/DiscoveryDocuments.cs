using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Writ.Server.Ca;
using Writ.Spiffe;
using Writ.Spiffe.Bundles;
using Writ.Spiffe.Jwt;

namespace Writ.Server.Discovery;

/// <summary>What the discovery provider serves for one bundle: the JWKS and the OpenID configuration, both ready to send.</summary>
/// <param name="Kids">The key ids served, in bundle order.</param>
/// <param name="Sequence">The bundle's <c>spiffe_sequence</c>, when it has one.</param>
public sealed record DiscoverySnapshot(byte[] Configuration, byte[] Jwks, string JwksETag, IReadOnlyList<string> Kids, long? Sequence);

/// <summary>
/// The two documents of OIDC discovery for JWT-SVIDs, made from the trust bundle (as the admin API's GetBundle gives it):
/// <c>/.well-known/openid-configuration</c> (OpenID Connect Discovery 1.0 §3, the fields SPIRE's oidc-discovery-provider
/// serves) and the JWKS (RFC 7517) of the bundle's JWT authorities only — never its X.509 authorities — each with
/// <c>kid</c>, <c>kty</c>, <c>alg</c> and <c>use: sig</c>, so generic JOSE verifiers accept them.
/// </summary>
public static class DiscoveryDocuments
{
    /// <summary>What the configuration lists when the bundle has no JWT key (yet): every algorithm Writ can sign with.</summary>
    private static readonly string[] AllAlgorithms = ["ES256", "ES384", "ES512", "RS256"];

    /// <summary>Builds both documents; throws <see cref="FormatException"/> when the bundle is not a SPIFFE bundle of <paramref name="td"/>.</summary>
    public static DiscoverySnapshot Build(TrustDomain td, string spiffeBundleJson, string issuer)
    {
        ArgumentNullException.ThrowIfNull(issuer);
        var bundle = TrustBundle.ParseSpiffeJson(td, spiffeBundleJson);
        var jwks = Jwks(bundle.JwtAuthorityList);
        var algs = bundle.JwtAuthorityList.Select(a => AlgorithmOf(a.PublicKey)).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToArray();
        var config = Configuration(issuer, algs.Length > 0 ? algs : AllAlgorithms);
        var etag = "\"" + Convert.ToHexStringLower(SHA256.HashData(jwks).AsSpan(0, 16)) + "\"";
        return new DiscoverySnapshot(config, jwks, etag, [.. bundle.JwtAuthorityList.Select(a => a.Kid)], bundle.Sequence);
    }

    /// <summary>The configuration served before any bundle was read: the issuer and where its keys will be.</summary>
    public static byte[] Configuration(string issuer, IReadOnlyList<string>? algorithms = null) => Write(w =>
    {
        w.WriteStartObject();
        w.WriteString("issuer", issuer);
        w.WriteString("jwks_uri", issuer + DiscoveryOptions.KeysPath);
        // Required by the specification, meaningless here (nobody logs in): empty, as SPIRE's provider serves it.
        w.WriteString("authorization_endpoint", "");
        w.WriteStartArray("response_types_supported");
        w.WriteStringValue("id_token");
        w.WriteEndArray();
        // sub is the workload's SPIFFE ID, the same for every verifier.
        w.WriteStartArray("subject_types_supported");
        w.WriteStringValue("public");
        w.WriteEndArray();
        w.WriteStartArray("id_token_signing_alg_values_supported");
        foreach (var a in algorithms ?? AllAlgorithms)
        {
            w.WriteStringValue(a);
        }
        w.WriteEndArray();
        w.WriteStartArray("claims_supported");
        foreach (var c in (string[])["sub", "aud", "exp", "iat", "iss", "jti"])
        {
            w.WriteStringValue(c);
        }
        w.WriteEndArray();
        w.WriteEndObject();
    });

    /// <summary>The JOSE algorithm a JWT authority signs with: the one the CA's minting picks for its key (<see cref="JwtSigningKey.Algorithm"/>).</summary>
    public static string AlgorithmOf(AsymmetricAlgorithm key) => new JwtSigningKey("-", key).Algorithm;

    private static byte[] Jwks(IReadOnlyList<JwtAuthority> authorities) => Write(w =>
    {
        w.WriteStartObject();
        w.WriteStartArray("keys");
        foreach (var a in authorities)
        {
            w.WriteStartObject();
            w.WriteString("kid", a.Kid);
            switch (a.PublicKey)
            {
                case ECDsa ec:
                    var p = ec.ExportParameters(false);
                    w.WriteString("kty", "EC");
                    w.WriteString("crv", ec.KeySize switch { 256 => "P-256", 384 => "P-384", 521 => "P-521", _ => throw new FormatException($"JWT authority '{a.Kid}' is on an unsupported curve") });
                    w.WriteString("x", CaCertificates.Base64Url(p.Q.X!));
                    w.WriteString("y", CaCertificates.Base64Url(p.Q.Y!));
                    break;
                case RSA rsa:
                    var r = rsa.ExportParameters(false);
                    w.WriteString("kty", "RSA");
                    w.WriteString("n", CaCertificates.Base64Url(r.Modulus!));
                    w.WriteString("e", CaCertificates.Base64Url(r.Exponent!));
                    break;
                default:
                    throw new FormatException($"JWT authority '{a.Kid}' is neither an EC nor an RSA key");
            }
            w.WriteString("alg", AlgorithmOf(a.PublicKey));
            w.WriteString("use", "sig");
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteEndObject();
    });

    private static byte[] Write(Action<Utf8JsonWriter> write)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Indented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            write(w);
        }
        return ms.ToArray();
    }

    internal static string Utf8(byte[] b) => Encoding.UTF8.GetString(b);
}
