using System.Diagnostics.CodeAnalysis;
using Writ.Spiffe;

namespace Writ.Server.Revocation;

public enum RevocationTargetKind
{
    /// <summary>One X.509-SVID by serial number.</summary>
    Serial,
    /// <summary>Every unexpired credential issued to a SPIFFE ID.</summary>
    SpiffeId,
    /// <summary>Every unexpired credential issued for a registration entry.</summary>
    Entry,
    /// <summary>An agent's own SVID and every unexpired credential issued through it.</summary>
    Agent,
    /// <summary>One JWT-SVID by jti.</summary>
    Jti,
}

/// <summary>What an admin asks to revoke (<c>writ revoke --serial S | --spiffe-id ID | --entry ID | --agent ID | --jti J</c>).</summary>
public sealed record RevocationTarget
{
    private RevocationTarget(RevocationTargetKind kind, string value)
    {
        Kind = kind;
        Value = value;
    }

    public RevocationTargetKind Kind { get; }

    /// <summary>The normalised value: serials upper-case hex without colons; SPIFFE IDs in canonical form.</summary>
    public string Value { get; }

    public static bool TryCreate(RevocationTargetKind kind, string? text, [NotNullWhen(true)] out RevocationTarget? target, [NotNullWhen(false)] out string? error)
    {
        target = null;
        text = text?.Trim() ?? "";
        if (text.Length == 0)
        {
            error = $"the {Describe(kind)} to revoke is empty: give one";
            return false;
        }
        if (text.Length > 2048 || text.Any(char.IsControl))
        {
            error = $"the {Describe(kind)} to revoke is longer than 2048 characters or contains control characters";
            return false;
        }
        switch (kind)
        {
            case RevocationTargetKind.Serial:
                if (!TryNormalizeSerial(text, out var serial))
                {
                    error = "the serial must be hexadecimal (colons allowed), as 'openssl x509 -noout -serial' prints it";
                    return false;
                }
                target = new(kind, serial);
                break;
            case RevocationTargetKind.SpiffeId or RevocationTargetKind.Agent:
                if (!SpiffeId.TryParse(text, out var id, out var idError))
                {
                    error = $"'{text}' is not a SPIFFE ID ({idError}): give it as spiffe://trust-domain/path";
                    return false;
                }
                target = new(kind, id.ToString());
                break;
            case RevocationTargetKind.Entry or RevocationTargetKind.Jti:
                if (text.Any(char.IsWhiteSpace))
                {
                    error = $"the {Describe(kind)} contains whitespace: give it as printed";
                    return false;
                }
                target = new(kind, text);
                break;
            default:
                error = $"unknown revocation target kind {kind}";
                return false;
        }
        error = null;
        return true;
    }

    /// <summary>"0a:1B:..." or "0A1B..." → "0A1B..." (upper case, no separators, at most 64 digits).</summary>
    public static bool TryNormalizeSerial(string text, [NotNullWhen(true)] out string? serial)
    {
        var s = text.Replace(":", "", StringComparison.Ordinal);
        if (s.StartsWith("0x", StringComparison.OrdinalIgnoreCase))
        {
            s = s[2..];
        }
        if (s.Length == 0 || s.Length > 64 || !s.All(char.IsAsciiHexDigit))
        {
            serial = null;
            return false;
        }
        if (s.Length % 2 == 1)
        {
            s = "0" + s;
        }
        serial = s.ToUpperInvariant();
        return true;
    }

    public static string Describe(RevocationTargetKind kind) => kind switch
    {
        RevocationTargetKind.Serial => "X.509 serial",
        RevocationTargetKind.SpiffeId => "SPIFFE ID",
        RevocationTargetKind.Entry => "entry id",
        RevocationTargetKind.Agent => "agent ID",
        RevocationTargetKind.Jti => "JWT jti",
        _ => kind.ToString(),
    };

    public override string ToString() => $"{Describe(Kind)} {Value}";
}
