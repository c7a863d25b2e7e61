using System.Security.Cryptography;
using System.Text.Json;

namespace Writ.Spiffe.Internal;

/// <summary>JWK (RFC 7517/7518) public keys: EC P-256/384/521 and RSA.</summary>
internal static class Jwk
{
    public static readonly JsonDocumentOptions StrictJson = new()
    {
        AllowDuplicateProperties = false,
        CommentHandling = JsonCommentHandling.Disallow,
        AllowTrailingCommas = false,
        MaxDepth = 32,
    };

    /// <summary>Writer options: base64 stays readable ('+', '/' unescaped); output is never embedded in HTML.</summary>
    public static JsonWriterOptions WriterOptions(bool indented) => new()
    {
        Indented = indented,
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    /// <summary>Writes kty and the public parameters of <paramref name="key"/>.</summary>
    public static void WritePublicKey(Utf8JsonWriter w, AsymmetricAlgorithm key)
    {
        switch (key)
        {
            case ECDsa ec:
                var p = ec.ExportParameters(false);
                w.WriteString("kty", "EC");
                w.WriteString("crv", CurveName(p.Curve));
                w.WriteString("x", B64Url.Encode(p.Q.X));
                w.WriteString("y", B64Url.Encode(p.Q.Y));
                break;
            case RSA rsa:
                var r = rsa.ExportParameters(false);
                w.WriteString("kty", "RSA");
                w.WriteString("n", B64Url.Encode(r.Modulus));
                w.WriteString("e", B64Url.Encode(r.Exponent));
                break;
            default:
                throw new ArgumentException($"key type {key?.GetType().Name} is not supported: use ECDsa or RSA", nameof(key));
        }
    }

    private static string CurveName(ECCurve curve) => curve.Oid?.Value switch
    {
        KeyAlgorithms.OidP256 => "P-256",
        KeyAlgorithms.OidP384 => "P-384",
        KeyAlgorithms.OidP521 => "P-521",
        _ => curve.Oid?.FriendlyName switch
        {
            "nistP256" or "ECDSA_P256" => "P-256",
            "nistP384" or "ECDSA_P384" => "P-384",
            "nistP521" or "ECDSA_P521" => "P-521",
            _ => throw new ArgumentException("EC key is not on P-256, P-384 or P-521: use a NIST curve"),
        },
    };

    /// <summary>True when the JWK's kty is one we understand (EC, RSA).</summary>
    public static bool IsKnownKty(JsonElement jwk) =>
        jwk.TryGetProperty("kty", out var kty) && kty.ValueKind == JsonValueKind.String && kty.GetString() is "EC" or "RSA";

    /// <summary>Reads the public key of an EC or RSA JWK; null with an error when parameters are missing or invalid.</summary>
    public static AsymmetricAlgorithm? ReadPublicKey(JsonElement jwk, out string? error)
    {
        error = null;
        var kty = jwk.GetProperty("kty").GetString();
        if (kty == "EC")
        {
            var crv = Str(jwk, "crv");
            var (curve, size) = crv switch
            {
                "P-256" => (ECCurve.NamedCurves.nistP256, 32),
                "P-384" => (ECCurve.NamedCurves.nistP384, 48),
                "P-521" => (ECCurve.NamedCurves.nistP521, 66),
                _ => (default(ECCurve), 0),
            };
            if (size == 0)
            {
                error = $"EC JWK has unsupported curve '{Printable(crv)}': use P-256, P-384 or P-521";
                return null;
            }
            var x = Bytes(jwk, "x");
            var y = Bytes(jwk, "y");
            if (x is null || y is null || x.Length != size || y.Length != size)
            {
                error = $"EC JWK has missing or malformed x/y coordinates for {crv}: the key is corrupted";
                return null;
            }
            var ec = ECDsa.Create();
            try
            {
                ec.ImportParameters(new ECParameters { Curve = curve, Q = new ECPoint { X = x, Y = y } });
                return ec;
            }
            catch (CryptographicException)
            {
                ec.Dispose();
                error = "EC JWK point is not on its curve: the key is corrupted";
                return null;
            }
        }
        var n = Bytes(jwk, "n");
        var e = Bytes(jwk, "e");
        if (n is null || e is null || n.Length == 0 || e.Length == 0)
        {
            error = "RSA JWK has missing or malformed n/e: the key is corrupted";
            return null;
        }
        // Some producers keep a leading zero octet (RFC 7518 §6.3.1.1 says not to); .NET would count it in the key size.
        var firstNonZero = Array.FindIndex(n, b => b != 0);
        if (firstNonZero < 0)
        {
            error = "RSA JWK modulus is zero: the key is corrupted";
            return null;
        }
        n = n[firstNonZero..];
        var rsa = RSA.Create();
        try
        {
            rsa.ImportParameters(new RSAParameters { Modulus = n, Exponent = e });
            return rsa;
        }
        catch (CryptographicException)
        {
            rsa.Dispose();
            error = "RSA JWK parameters are invalid: the key is corrupted";
            return null;
        }
    }

    public static string? Str(JsonElement o, string name) =>
        o.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

    private static byte[]? Bytes(JsonElement o, string name) => Str(o, name) is { } s ? B64Url.TryDecode(s) : null;

    /// <summary>A short, printable excerpt of untrusted text for error messages.</summary>
    public static string Printable(string? s)
    {
        if (s is null)
        {
            return "";
        }
        var t = new string(s.Take(40).Select(c => c is >= ' ' and <= '~' ? c : '?').ToArray());
        return s.Length > 40 ? t + "…" : t;
    }
}
