using System.Diagnostics.CodeAnalysis;

namespace Writ.Spiffe;

/// <summary>
/// A SPIFFE ID (SPIFFE-ID.md §2): <c>spiffe://trust-domain[/path]</c>. Immutable; equality is on the full text.
/// Parsing follows go-spiffe (lowercase scheme and trust domain only, no percent-encoding, no empty/dot segments,
/// no trailing slash) and accepts IDs up to 2048 bytes.
/// </summary>
[System.Text.Json.Serialization.JsonConverter(typeof(SpiffeIdJsonConverter))]
public sealed record SpiffeId
{
    private readonly string _text;
    private IReadOnlyList<string>? _segments;

    internal SpiffeId(TrustDomain td, string path)
    {
        TrustDomain = td;
        Path = path;
        _text = td.IdString + path;
    }

    public TrustDomain TrustDomain { get; }

    /// <summary>"" for the trust domain's own ID, otherwise "/a/b".</summary>
    public string Path { get; }

    /// <summary>The path segments (empty for a root ID).</summary>
    public IReadOnlyList<string> Segments => _segments ??= Path.Length == 0 ? [] : Path[1..].Split('/');

    /// <summary>True when the ID has no path (it names the trust domain itself).</summary>
    public bool IsRoot => Path.Length == 0;

    public static bool TryParse(string? text, [NotNullWhen(true)] out SpiffeId? id, [NotNullWhen(false)] out string? error)
    {
        id = null;
        if (string.IsNullOrEmpty(text))
        {
            error = SpiffeIdRules.ErrEmpty;
            return false;
        }
        if (text.Length > SpiffeIdRules.MaxIdBytes)
        {
            error = SpiffeIdRules.ErrTooLong;
            return false;
        }
        if (!text.StartsWith(SpiffeIdRules.Scheme, StringComparison.Ordinal))
        {
            error = SpiffeIdRules.ErrScheme;
            return false;
        }
        var rest = text.AsSpan(SpiffeIdRules.Scheme.Length);
        var slash = rest.IndexOf('/');
        var tdPart = slash < 0 ? rest : rest[..slash];
        var pathPart = slash < 0 ? [] : rest[slash..];
        // go-spiffe reports the first bad byte, scanning the trust domain first.
        error = SpiffeIdRules.ValidateTrustDomain(tdPart) ?? SpiffeIdRules.ValidatePath(pathPart);
        if (error is not null)
        {
            return false;
        }
        id = new SpiffeId(TrustDomain.FromValidated(tdPart.ToString()), pathPart.ToString());
        return true;
    }

    /// <summary>Parses or throws <see cref="FormatException"/> with the one-line error.</summary>
    public static SpiffeId Parse(string text) =>
        TryParse(text, out var id, out var error) ? id : throw new FormatException(error);

    /// <summary>Builds an ID from path segments; throws <see cref="ArgumentException"/> on a bad segment or zero trust domain.</summary>
    public static SpiffeId FromSegments(TrustDomain td, params string[] segments)
    {
        if (td.IsZero)
        {
            throw new ArgumentException("trust domain is the zero value: parse a trust domain first", nameof(td));
        }
        ArgumentNullException.ThrowIfNull(segments);
        foreach (var s in segments)
        {
            if (SpiffeIdRules.ValidateSegment(s) is { } err)
            {
                throw new ArgumentException(err, nameof(segments));
            }
        }
        var path = segments.Length == 0 ? "" : "/" + string.Join('/', segments);
        if (td.IdString.Length + path.Length > SpiffeIdRules.MaxIdBytes)
        {
            throw new ArgumentException(SpiffeIdRules.ErrTooLong, nameof(segments));
        }
        return new SpiffeId(td, path);
    }

    /// <summary>Builds an ID from a path ("" or "/a/b").</summary>
    public static bool TryFromPath(TrustDomain td, string path, [NotNullWhen(true)] out SpiffeId? id, [NotNullWhen(false)] out string? error)
    {
        id = null;
        if (td.IsZero)
        {
            error = "trust domain is the zero value: parse a trust domain first";
            return false;
        }
        path ??= "";
        error = SpiffeIdRules.ValidatePath(path);
        if (error is null && td.IdString.Length + path.Length > SpiffeIdRules.MaxIdBytes)
        {
            error = SpiffeIdRules.ErrTooLong;
        }
        if (error is not null)
        {
            return false;
        }
        id = new SpiffeId(td, path);
        return true;
    }

    /// <summary>True when this ID belongs to <paramref name="td"/>.</summary>
    public bool MemberOf(TrustDomain td) => TrustDomain == td;

    public bool Equals(SpiffeId? other) => other is not null && string.Equals(_text, other._text, StringComparison.Ordinal);

    public override int GetHashCode() => StringComparer.Ordinal.GetHashCode(_text);

    public override string ToString() => _text;
}
