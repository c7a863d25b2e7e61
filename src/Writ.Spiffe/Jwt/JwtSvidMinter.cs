using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Writ.Spiffe.Internal;

namespace Writ.Spiffe.Jwt;

/// <summary>Mints JWT-SVIDs (JWT-SVID.md): compact JWS with header alg/kid/typ and claims sub/aud/exp/iat.</summary>
public static class JwtSvidMinter
{
    private static readonly HashSet<string> Registered = new(StringComparer.Ordinal) { "sub", "aud", "exp", "iat" };

    /// <summary>
    /// Mints a token. Extra claim values may be string, long/int, bool, double, string arrays/lists, nested
    /// <c>IReadOnlyDictionary&lt;string, object&gt;</c> or <see cref="JsonElement"/>; they cannot replace sub/aud/exp/iat.
    /// </summary>
    public static string Mint(JwtSigningKey key, SpiffeId subject, IReadOnlyList<string> audience, DateTimeOffset issuedAt,
        DateTimeOffset expiresAt, IReadOnlyDictionary<string, object>? extraClaims = null)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(subject);
        ArgumentNullException.ThrowIfNull(audience);
        if (string.IsNullOrEmpty(key.KeyId))
        {
            throw new ArgumentException("JWT signing key has no key ID: a JWT-SVID always carries a kid", nameof(key));
        }
        if (audience.Count == 0 || audience.Any(string.IsNullOrEmpty))
        {
            throw new ArgumentException("audience is empty or has an empty value: a JWT-SVID needs at least one audience", nameof(audience));
        }
        if (expiresAt <= issuedAt)
        {
            throw new ArgumentException("expiresAt must be after issuedAt", nameof(expiresAt));
        }
        var alg = key.Algorithm;

        var header = Json(w =>
        {
            w.WriteStartObject();
            w.WriteString("alg", alg);
            w.WriteString("kid", key.KeyId);
            w.WriteString("typ", "JWT");
            w.WriteEndObject();
        });
        var payload = Json(w =>
        {
            w.WriteStartObject();
            w.WriteString("sub", subject.ToString());
            w.WriteStartArray("aud");
            foreach (var a in audience)
            {
                w.WriteStringValue(a);
            }
            w.WriteEndArray();
            w.WriteNumber("exp", expiresAt.ToUnixTimeSeconds());
            w.WriteNumber("iat", issuedAt.ToUnixTimeSeconds());
            foreach (var (name, value) in extraClaims ?? new Dictionary<string, object>())
            {
                if (Registered.Contains(name))
                {
                    throw new ArgumentException($"extra claim '{name}' would replace a JWT-SVID claim: pass it through the named parameters", nameof(extraClaims));
                }
                w.WritePropertyName(name);
                WriteValue(w, value, 0);
            }
            w.WriteEndObject();
        });
        var signingInput = B64Url.Encode(header) + "." + B64Url.Encode(payload);
        var sig = Sign(key.Key, alg, Encoding.ASCII.GetBytes(signingInput));
        return signingInput + "." + B64Url.Encode(sig);
    }

    internal static byte[] Sign(AsymmetricAlgorithm key, string alg, byte[] data)
    {
        // Key objects are shared (the CA's active key); .NET does not promise they are safe for concurrent use.
        lock (key)
        {
            return key switch
            {
                ECDsa ec => ec.SignData(data, HashOf(alg), DSASignatureFormat.IeeeP1363FixedFieldConcatenation),
                RSA rsa => rsa.SignData(data, HashOf(alg), alg.StartsWith("PS", StringComparison.Ordinal) ? RSASignaturePadding.Pss : RSASignaturePadding.Pkcs1),
                _ => throw new ArgumentException("JWT signing key must be ECDsa or RSA", nameof(key)),
            };
        }
    }

    internal static HashAlgorithmName HashOf(string alg) => alg[2..] switch
    {
        "256" => HashAlgorithmName.SHA256,
        "384" => HashAlgorithmName.SHA384,
        "512" => HashAlgorithmName.SHA512,
        _ => throw new ArgumentException($"unsupported alg {alg}", nameof(alg)),
    };

    private static byte[] Json(Action<Utf8JsonWriter> write)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, Jwk.WriterOptions(indented: false)))
        {
            write(w);
        }
        return ms.ToArray();
    }

    private static void WriteValue(Utf8JsonWriter w, object? value, int depth)
    {
        if (depth > 16)
        {
            throw new ArgumentException("extra claims are nested more than 16 levels deep");
        }
        switch (value)
        {
            case null:
                w.WriteNullValue();
                break;
            case string s:
                w.WriteStringValue(s);
                break;
            case bool b:
                w.WriteBooleanValue(b);
                break;
            case long l:
                w.WriteNumberValue(l);
                break;
            case int i:
                w.WriteNumberValue(i);
                break;
            case double d when double.IsFinite(d):
                w.WriteNumberValue(d);
                break;
            case JsonElement e:
                e.WriteTo(w);
                break;
            case IReadOnlyDictionary<string, object> map:
                w.WriteStartObject();
                foreach (var (k, v) in map)
                {
                    w.WritePropertyName(k);
                    WriteValue(w, v, depth + 1);
                }
                w.WriteEndObject();
                break;
            case IEnumerable<string> list:
                w.WriteStartArray();
                foreach (var s in list)
                {
                    w.WriteStringValue(s);
                }
                w.WriteEndArray();
                break;
            default:
                throw new ArgumentException($"extra claim value of type {value.GetType().Name} is not supported: use string, long, bool, string[] or a nested dictionary");
        }
    }
}
