using System.Diagnostics.CodeAnalysis;
using System.Text;
using System.Text.Json;
using Writ.Spiffe.Internal;

namespace Writ.Spiffe.Bundles;

/// <summary>Trust bundles of several trust domains (own and federated). Safe for concurrent readers and writers.</summary>
public sealed class BundleSet : IBundleSource
{
    private readonly Lock _lock = new();
    private readonly Dictionary<TrustDomain, TrustBundle> _bundles = [];

    public BundleSet()
    {
    }

    public BundleSet(IEnumerable<TrustBundle> bundles)
    {
        ArgumentNullException.ThrowIfNull(bundles);
        foreach (var b in bundles)
        {
            Add(b);
        }
    }

    public int Count
    {
        get
        {
            lock (_lock)
            {
                return _bundles.Count;
            }
        }
    }

    /// <summary>The trust domains present, ordered by name.</summary>
    public IReadOnlyList<TrustDomain> TrustDomains
    {
        get
        {
            lock (_lock)
            {
                return _bundles.Keys.OrderBy(t => t.Name, StringComparer.Ordinal).ToArray();
            }
        }
    }

    /// <summary>All bundles, ordered by trust domain name.</summary>
    public IReadOnlyList<TrustBundle> Bundles
    {
        get
        {
            lock (_lock)
            {
                return _bundles.Values.OrderBy(b => b.TrustDomain.Name, StringComparer.Ordinal).ToArray();
            }
        }
    }

    public TrustBundle? GetBundle(TrustDomain td)
    {
        lock (_lock)
        {
            return _bundles.GetValueOrDefault(td);
        }
    }

    /// <summary>Adds a bundle; throws <see cref="ArgumentException"/> if its trust domain is already present.</summary>
    public void Add(TrustBundle bundle)
    {
        ArgumentNullException.ThrowIfNull(bundle);
        lock (_lock)
        {
            if (!_bundles.TryAdd(bundle.TrustDomain, bundle))
            {
                throw new ArgumentException($"a bundle for trust domain '{bundle.TrustDomain}' is already present: use Set to replace it", nameof(bundle));
            }
        }
    }

    /// <summary>Adds or replaces the bundle of its trust domain.</summary>
    public void Set(TrustBundle bundle)
    {
        ArgumentNullException.ThrowIfNull(bundle);
        lock (_lock)
        {
            _bundles[bundle.TrustDomain] = bundle;
        }
    }

    public bool Remove(TrustDomain td)
    {
        lock (_lock)
        {
            return _bundles.Remove(td);
        }
    }

    /// <summary><c>{"trust_domains": {"&lt;td&gt;": &lt;SPIFFE bundle JWK Set&gt;}}</c>, ordered by trust domain name.</summary>
    public string ToJson()
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, Jwk.WriterOptions(indented: true)))
        {
            w.WriteStartObject();
            w.WriteStartObject("trust_domains");
            foreach (var b in Bundles)
            {
                w.WritePropertyName(b.TrustDomain.Name);
                b.WriteSpiffeJson(w);
            }
            w.WriteEndObject();
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(ms.ToArray());
    }

    /// <summary>Parses <c>{"trust_domains": {...}}</c>; keys are trust domain names or <c>spiffe://</c> IDs; duplicates are refused.</summary>
    public static bool TryParseJson(string json, [NotNullWhen(true)] out BundleSet? set, [NotNullWhen(false)] out string? error)
    {
        set = null;
        try
        {
            using var doc = JsonDocument.Parse(json ?? "", Jwk.StrictJson);
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("trust_domains", out var tds) || tds.ValueKind != JsonValueKind.Object)
            {
                error = "bundle map has no 'trust_domains' object: give {\"trust_domains\": {\"<trust domain>\": <JWK Set>}}";
                return false;
            }
            var result = new BundleSet();
            foreach (var p in tds.EnumerateObject())
            {
                if (!TrustDomain.TryParse(p.Name, out var td, out var tdError))
                {
                    error = $"bundle map key '{Jwk.Printable(p.Name)}' is not a trust domain: {tdError}";
                    return false;
                }
                if (result.GetBundle(td) is not null)
                {
                    error = $"bundle map lists trust domain '{td}' twice: give each trust domain once";
                    return false;
                }
                if (!TrustBundle.TryParseSpiffeElement(td, p.Value, jwksOnly: false, out var bundle, out error))
                {
                    return false;
                }
                result.Add(bundle);
            }
            set = result;
            error = null;
            return true;
        }
        catch (JsonException)
        {
            error = "bundle map is not valid JSON or has duplicate member names: give each trust domain once";
            return false;
        }
    }

    /// <summary>Parses like <see cref="TryParseJson"/>; throws <see cref="FormatException"/> with the one-line reason.</summary>
    public static BundleSet ParseJson(string json) =>
        TryParseJson(json, out var s, out var error) ? s : throw new FormatException(error);
}
