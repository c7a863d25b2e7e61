using System.Diagnostics.CodeAnalysis;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json;
using Writ.Spiffe.Internal;
using Writ.Spiffe.Jwt;

namespace Writ.Spiffe.Bundles;

/// <summary>
/// A SPIFFE trust bundle (SPIFFE_Trust_Domain_and_Bundle.md): the X.509 and JWT authorities of one trust domain, with
/// <c>spiffe_sequence</c> and <c>spiffe_refresh_hint</c>. Immutable. An empty bundle means "trust nothing from this domain".
/// </summary>
public sealed class TrustBundle : IBundleSource
{
    public const string X509SvidUse = "x509-svid";
    public const string JwtSvidUse = "jwt-svid";

    private readonly Dictionary<string, AsymmetricAlgorithm> _jwt;

    public TrustBundle(TrustDomain td, IReadOnlyList<X509Certificate2> x509Authorities, IReadOnlyList<JwtAuthority> jwtAuthorities,
        long? sequence = null, TimeSpan? refreshHint = null)
    {
        if (td.IsZero)
        {
            throw new ArgumentException("trust domain is the zero value: parse a trust domain first", nameof(td));
        }
        ArgumentNullException.ThrowIfNull(x509Authorities);
        ArgumentNullException.ThrowIfNull(jwtAuthorities);
        if (sequence < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(sequence), "spiffe_sequence must not be negative");
        }
        if (refreshHint < TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(refreshHint), "spiffe_refresh_hint must not be negative");
        }
        TrustDomain = td;
        X509Authorities = x509Authorities.ToArray();
        _jwt = new Dictionary<string, AsymmetricAlgorithm>(StringComparer.Ordinal);
        foreach (var a in jwtAuthorities)
        {
            if (string.IsNullOrEmpty(a.Kid))
            {
                throw new ArgumentException("a JWT authority has an empty kid: every JWT authority needs a key ID", nameof(jwtAuthorities));
            }
            if (a.PublicKey is not (ECDsa or RSA))
            {
                throw new ArgumentException($"JWT authority '{a.Kid}' is not an EC or RSA key", nameof(jwtAuthorities));
            }
            if (!_jwt.TryAdd(a.Kid, a.PublicKey))
            {
                throw new ArgumentException($"JWT authority kid '{a.Kid}' appears twice: key IDs must be unique in a bundle", nameof(jwtAuthorities));
            }
        }
        JwtAuthorityList = jwtAuthorities.ToArray();
        Sequence = sequence;
        RefreshHint = refreshHint;
    }

    public TrustDomain TrustDomain { get; }

    /// <summary>The X.509 authorities (CA certificates) trusted for X.509-SVIDs of this domain.</summary>
    public IReadOnlyList<X509Certificate2> X509Authorities { get; }

    /// <summary>JWT-SVID verification keys by kid.</summary>
    public IReadOnlyDictionary<string, AsymmetricAlgorithm> JwtAuthorities => _jwt;

    /// <summary>JWT authorities in bundle order.</summary>
    public IReadOnlyList<JwtAuthority> JwtAuthorityList { get; }

    public long? Sequence { get; }

    public TimeSpan? RefreshHint { get; }

    /// <summary>True when the bundle trusts nothing.</summary>
    public bool IsEmpty => X509Authorities.Count == 0 && _jwt.Count == 0;

    public TrustBundle? GetBundle(TrustDomain td) => td == TrustDomain ? this : null;

    /// <summary>A copy with another sequence number.</summary>
    public TrustBundle WithSequence(long? sequence) => new(TrustDomain, X509Authorities, JwtAuthorityList, sequence, RefreshHint);

    /// <summary>The SPIFFE bundle as a JWK Set (§4): x509-svid keys with x5c and no kid, jwt-svid keys with kid.</summary>
    public string ToSpiffeJson()
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, Jwk.WriterOptions(indented: true)))
        {
            WriteSpiffeJson(w);
        }
        return Encoding.UTF8.GetString(ms.ToArray());
    }

    internal void WriteSpiffeJson(Utf8JsonWriter w)
    {
        w.WriteStartObject();
        w.WriteStartArray("keys");
        foreach (var cert in X509Authorities)
        {
            w.WriteStartObject();
            w.WriteString("use", X509SvidUse);
            using (var key = (AsymmetricAlgorithm?)cert.GetECDsaPublicKey() ?? cert.GetRSAPublicKey()
                ?? throw new InvalidOperationException("an X.509 authority has a key that is neither EC nor RSA"))
            {
                Jwk.WritePublicKey(w, key);
            }
            w.WriteStartArray("x5c");
            w.WriteStringValue(Convert.ToBase64String(cert.RawData));
            w.WriteEndArray();
            w.WriteEndObject();
        }
        foreach (var a in JwtAuthorityList)
        {
            w.WriteStartObject();
            w.WriteString("use", JwtSvidUse);
            w.WriteString("kid", a.Kid);
            Jwk.WritePublicKey(w, a.PublicKey);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        if (Sequence is { } seq)
        {
            w.WriteNumber("spiffe_sequence", seq);
        }
        if (RefreshHint is { } hint)
        {
            w.WriteNumber("spiffe_refresh_hint", (long)Math.Ceiling(hint.TotalSeconds));
        }
        w.WriteEndObject();
    }

    /// <summary>
    /// Only the JWT authorities, as a plain JWK Set (kid, kty, key parameters; no <c>use</c>, like go-spiffe's jwtbundle, so generic
    /// JOSE libraries that only accept <c>use</c> absent or "sig" can use it).
    /// </summary>
    public string JwksJson()
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, Jwk.WriterOptions(indented: false)))
        {
            w.WriteStartObject();
            w.WriteStartArray("keys");
            foreach (var a in JwtAuthorityList)
            {
                w.WriteStartObject();
                w.WriteString("kid", a.Kid);
                Jwk.WritePublicKey(w, a.PublicKey);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(ms.ToArray());
    }

    /// <summary>The X.509 authorities as PEM certificates.</summary>
    public string ToPem() => Pem.Certificates(X509Authorities);

    /// <summary>The X.509 authorities as concatenated DER (the Workload API's bundle encoding).</summary>
    public byte[] X509AuthoritiesDer() => X509Authorities.SelectMany(c => c.RawData).ToArray();

    /// <summary>Parses a SPIFFE bundle JWK Set; throws <see cref="FormatException"/> with a one-line reason.</summary>
    public static TrustBundle ParseSpiffeJson(TrustDomain td, string json) =>
        TryParseSpiffeJson(td, json, out var b, out var error) ? b : throw new FormatException(error);

    /// <summary>
    /// Parses a SPIFFE bundle JWK Set. <c>keys</c> must be present (possibly empty). Keys with an unknown <c>kty</c> or <c>use</c> are ignored;
    /// an x509-svid key needs exactly one x5c certificate; a jwt-svid key needs a kid; duplicate kids are refused.
    /// </summary>
    public static bool TryParseSpiffeJson(TrustDomain td, string json, [NotNullWhen(true)] out TrustBundle? bundle, [NotNullWhen(false)] out string? error)
    {
        bundle = null;
        if (td.IsZero)
        {
            error = "trust domain is the zero value: parse a trust domain first";
            return false;
        }
        try
        {
            using var doc = JsonDocument.Parse(json ?? "", Jwk.StrictJson);
            return TryParseSpiffeElement(td, doc.RootElement, jwksOnly: false, out bundle, out error);
        }
        catch (JsonException)
        {
            error = "bundle is not valid JSON (or has duplicate member names): give a SPIFFE bundle JWK Set";
            return false;
        }
    }

    /// <summary>
    /// Parses a plain JWK Set of JWT authorities (go-spiffe jwtbundle format): every EC/RSA key is a JWT authority and needs a kid;
    /// keys with a <c>use</c> other than jwt-svid are ignored.
    /// </summary>
    public static bool TryParseJwks(TrustDomain td, string json, [NotNullWhen(true)] out TrustBundle? bundle, [NotNullWhen(false)] out string? error)
    {
        bundle = null;
        if (td.IsZero)
        {
            error = "trust domain is the zero value: parse a trust domain first";
            return false;
        }
        try
        {
            using var doc = JsonDocument.Parse(json ?? "", Jwk.StrictJson);
            return TryParseSpiffeElement(td, doc.RootElement, jwksOnly: true, out bundle, out error);
        }
        catch (JsonException)
        {
            error = "JWK Set is not valid JSON (or has duplicate member names): give a JWK Set";
            return false;
        }
    }

    internal static bool TryParseSpiffeElement(TrustDomain td, JsonElement root, bool jwksOnly, [NotNullWhen(true)] out TrustBundle? bundle, [NotNullWhen(false)] out string? error)
    {
        bundle = null;
        if (root.ValueKind != JsonValueKind.Object)
        {
            error = "bundle is not a JSON object: give a SPIFFE bundle JWK Set";
            return false;
        }
        if (!root.TryGetProperty("keys", out var keys))
        {
            if (jwksOnly)
            {
                // go-spiffe's jwtbundle treats a JWK Set without keys as empty.
                bundle = new TrustBundle(td, [], []);
                error = null;
                return true;
            }
            error = $"bundle for '{td}' has no 'keys' member: a SPIFFE bundle must list its keys (an empty list distrusts the domain)";
            return false;
        }
        if (keys.ValueKind != JsonValueKind.Array)
        {
            error = $"bundle for '{td}' has a 'keys' member that is not an array";
            return false;
        }
        long? sequence = null;
        if (root.TryGetProperty("spiffe_sequence", out var seqEl))
        {
            if (seqEl.ValueKind != JsonValueKind.Number || !seqEl.TryGetInt64(out var seq) || seq < 0)
            {
                error = $"bundle for '{td}' has a spiffe_sequence that is not a non-negative integer";
                return false;
            }
            sequence = seq;
        }
        TimeSpan? refresh = null;
        if (root.TryGetProperty("spiffe_refresh_hint", out var hintEl))
        {
            if (hintEl.ValueKind != JsonValueKind.Number || !hintEl.TryGetInt64(out var hint) || hint < 0 || hint > int.MaxValue)
            {
                error = $"bundle for '{td}' has a spiffe_refresh_hint that is not a non-negative integer number of seconds";
                return false;
            }
            refresh = TimeSpan.FromSeconds(hint);
        }
        var x509 = new List<X509Certificate2>();
        var jwt = new List<JwtAuthority>();
        var kids = new HashSet<string>(StringComparer.Ordinal);
        var i = -1;
        foreach (var key in keys.EnumerateArray())
        {
            i++;
            if (key.ValueKind != JsonValueKind.Object)
            {
                error = $"bundle for '{td}': key {i} is not a JSON object";
                return false;
            }
            if (!Jwk.IsKnownKty(key))
            {
                continue; // §4.2: ignore keys with an unknown kty.
            }
            var use = Jwk.Str(key, "use");
            if (jwksOnly ? use is not (null or JwtSvidUse) : use is not (X509SvidUse or JwtSvidUse))
            {
                continue; // §4.2: ignore keys with an unknown use.
            }
            if (use == X509SvidUse)
            {
                if (!key.TryGetProperty("x5c", out var x5c) || x5c.ValueKind != JsonValueKind.Array || x5c.GetArrayLength() != 1)
                {
                    var n = key.TryGetProperty("x5c", out var x) && x.ValueKind == JsonValueKind.Array ? x.GetArrayLength() : 0;
                    error = $"bundle for '{td}': expected a single certificate in x509-svid entry {i}; got {n}";
                    return false;
                }
                var b64 = x5c[0].ValueKind == JsonValueKind.String ? x5c[0].GetString() : null;
                byte[] der;
                try
                {
                    der = Convert.FromBase64String(b64 ?? "");
                }
                catch (FormatException)
                {
                    error = $"bundle for '{td}': x509-svid entry {i} has an x5c value that is not base64";
                    return false;
                }
                var cert = Pem.TryLoadCertificate(der, out var certError);
                if (cert is null)
                {
                    error = $"bundle for '{td}': x509-svid entry {i}: {certError}";
                    return false;
                }
                using (var jwkKey = Jwk.ReadPublicKey(key, out var keyError))
                {
                    if (jwkKey is null)
                    {
                        error = $"bundle for '{td}': x509-svid entry {i}: {keyError}";
                        return false;
                    }
                    if (!KeyAlgorithms.Spki(KeyAlgorithms.PublicKeyOf(jwkKey)).AsSpan().SequenceEqual(KeyAlgorithms.Spki(cert.PublicKey)))
                    {
                        error = $"bundle for '{td}': x509-svid entry {i} has key parameters that do not match its x5c certificate";
                        return false;
                    }
                }
                if (!x509.Any(c => c.RawData.AsSpan().SequenceEqual(cert.RawData)))
                {
                    x509.Add(cert);
                }
                continue;
            }
            var kid = Jwk.Str(key, "kid");
            if (string.IsNullOrEmpty(kid))
            {
                error = $"bundle for '{td}': error adding authority {i} of JWKS: keyID cannot be empty";
                return false;
            }
            if (!kids.Add(kid))
            {
                error = $"bundle for '{td}': kid '{Jwk.Printable(kid)}' appears twice: JWT authority key IDs must be unique";
                return false;
            }
            var pub = Jwk.ReadPublicKey(key, out var err);
            if (pub is null)
            {
                error = $"bundle for '{td}': jwt-svid entry {i}: {err}";
                return false;
            }
            jwt.Add(new JwtAuthority(kid, pub));
        }
        bundle = new TrustBundle(td, x509, jwt, sequence, refresh);
        error = null;
        return true;
    }

    /// <summary>Parses concatenated DER CA certificates (the Workload API's bundle encoding; empty = no authorities).</summary>
    public static bool TryParseX509Der(TrustDomain td, ReadOnlySpan<byte> der, [NotNullWhen(true)] out TrustBundle? bundle, [NotNullWhen(false)] out string? error)
    {
        bundle = null;
        if (td.IsZero)
        {
            error = "trust domain is the zero value: parse a trust domain first";
            return false;
        }
        var certs = Der.SplitCertificates(der, out error);
        if (certs is null)
        {
            error ??= "DER data is malformed";
            return false;
        }
        bundle = new TrustBundle(td, certs, []);
        return true;
    }

    /// <summary>Parses PEM CA certificates; throws <see cref="FormatException"/> with a one-line reason.</summary>
    public static TrustBundle ParsePem(TrustDomain td, string pem) =>
        TryParsePem(td, pem, out var b, out var error) ? b : throw new FormatException(error);

    /// <summary>
    /// Parses PEM CA certificates into a bundle with no JWT authorities. Empty text gives an empty bundle; text without PEM blocks,
    /// blocks other than CERTIFICATE, and corrupted certificates are refused.
    /// </summary>
    public static bool TryParsePem(TrustDomain td, string pem, [NotNullWhen(true)] out TrustBundle? bundle, [NotNullWhen(false)] out string? error)
    {
        bundle = null;
        if (td.IsZero)
        {
            error = "trust domain is the zero value: parse a trust domain first";
            return false;
        }
        pem ??= "";
        var blocks = Pem.ReadBlocks(pem, out error);
        if (blocks is null)
        {
            error ??= "PEM text is corrupted";
            return false;
        }
        if (blocks.Count == 0 && !string.IsNullOrWhiteSpace(pem))
        {
            error = "no PEM blocks found: give the CA certificates in PEM ('-----BEGIN CERTIFICATE-----')";
            return false;
        }
        var certs = new List<X509Certificate2>();
        foreach (var b in blocks)
        {
            if (b.Label != "CERTIFICATE")
            {
                error = $"expected PEM block type CERTIFICATE, got '{Jwk.Printable(b.Label)}': a bundle holds certificates only";
                return false;
            }
            var c = Pem.TryLoadCertificate(b.Data, out error);
            if (c is null)
            {
                error ??= "certificate cannot be parsed";
                return false;
            }
            certs.Add(c);
        }
        bundle = new TrustBundle(td, certs, []);
        return true;
    }
}
