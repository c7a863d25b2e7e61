namespace Writ.Spiffe;

/// <summary>
/// The SPIFFE ID grammar (SPIFFE-ID.md §2): character classes, segment rules and length limits, with the
/// one-line error each broken rule produces. Validation is per character; every accepted character is ASCII,
/// so character counts equal byte counts for anything that passes.
/// </summary>
internal static class SpiffeIdRules
{
    public const string Scheme = "spiffe://";
    public const int MaxIdBytes = 2048;
    public const int MaxTrustDomainBytes = 255;

    public const string ErrEmpty = "SPIFFE ID cannot be empty: give an ID such as spiffe://example.org/workload";
    public const string ErrScheme = "SPIFFE ID scheme is missing or invalid: the ID must start with lowercase 'spiffe://'";
    public const string ErrTdMissing = "trust domain is missing: put a trust domain name after 'spiffe://'";
    public const string ErrTdChar = "trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores";
    public const string ErrPathChar = "path segment characters are limited to letters, numbers, dots, dashes, and underscores";
    public const string ErrEmptySegment = "path cannot contain empty segments: remove the doubled '/'";
    public const string ErrDotSegment = "path cannot contain dot segments ('.' or '..'): use the resolved path";
    public const string ErrTrailingSlash = "path cannot have a trailing slash: remove the final '/'";
    public const string ErrLeadingSlash = "path must have a leading slash: start the path with '/'";
    public static readonly string ErrTooLong = $"SPIFFE ID is longer than {MaxIdBytes} bytes: use a shorter trust domain or path";
    public static readonly string ErrTdTooLong = $"trust domain is longer than {MaxTrustDomainBytes} bytes: use a shorter trust domain name";

    public static bool IsTdChar(char c) => c is (>= 'a' and <= 'z') or (>= '0' and <= '9') or '.' or '-' or '_';

    public static bool IsPathChar(char c) => c is (>= 'a' and <= 'z') or (>= 'A' and <= 'Z') or (>= '0' and <= '9') or '.' or '-' or '_';

    /// <summary>Validates a bare trust domain name.</summary>
    public static string? ValidateTrustDomain(ReadOnlySpan<char> name)
    {
        if (name.IsEmpty)
        {
            return ErrTdMissing;
        }
        foreach (var c in name)
        {
            if (!IsTdChar(c))
            {
                return ErrTdChar;
            }
        }
        return name.Length > MaxTrustDomainBytes ? ErrTdTooLong : null;
    }

    /// <summary>Validates a path: "" or "/seg/seg" (go-spiffe validatePath semantics).</summary>
    public static string? ValidatePath(ReadOnlySpan<char> path)
    {
        if (path.IsEmpty)
        {
            return null;
        }
        if (path[0] != '/')
        {
            return ErrLeadingSlash;
        }
        var start = 0;
        for (var i = 0; i < path.Length; i++)
        {
            var c = path[i];
            if (c == '/')
            {
                if (i > 0)
                {
                    var seg = path[start..i];
                    if (seg is "/")
                    {
                        return ErrEmptySegment;
                    }
                    if (seg is "/." or "/..")
                    {
                        return ErrDotSegment;
                    }
                }
                start = i;
                continue;
            }
            if (!IsPathChar(c))
            {
                return ErrPathChar;
            }
        }
        var last = path[start..];
        if (last is "/")
        {
            return ErrTrailingSlash;
        }
        return last is "/." or "/.." ? ErrDotSegment : null;
    }

    /// <summary>Validates one path segment (no slashes).</summary>
    public static string? ValidateSegment(string? segment)
    {
        if (string.IsNullOrEmpty(segment))
        {
            return ErrEmptySegment;
        }
        if (segment is "." or "..")
        {
            return ErrDotSegment;
        }
        foreach (var c in segment)
        {
            if (!IsPathChar(c))
            {
                return ErrPathChar;
            }
        }
        return null;
    }
}
