using System.Net;

namespace Writ.Server.Discovery;

/// <summary>
/// The one rule for an OIDC issuer URL, shared by the server's <c>jwt_issuer</c> (the <c>iss</c> of every JWT-SVID) and
/// `writ oidc-discovery run --issuer` (what the discovery document says), so the two can never disagree about what is
/// valid: an absolute https URL — http only when the host is loopback (a TLS-terminating proxy in front) — without
/// query, fragment or user info, and without a trailing slash (verifiers compare <c>iss</c> to the document's
/// <c>issuer</c> character by character, and <c>jwks_uri</c> is the issuer followed by <c>/keys</c>).
/// </summary>
public static class IssuerUrl
{
    /// <summary>Null when <paramref name="text"/> is a valid issuer; otherwise why not, in one line.</summary>
    public static string? Check(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (text.Length > 2048 || text.Any(ch => char.IsWhiteSpace(ch) || char.IsControl(ch))
            || !Uri.TryCreate(text, UriKind.Absolute, out var uri))
        {
            return $"'{Printable(text)}' is not an absolute URL: give e.g. https://oidc.example.org";
        }
        if (uri.Scheme != Uri.UriSchemeHttps && !(uri.Scheme == Uri.UriSchemeHttp && IsLoopbackHost(uri)))
        {
            return $"'{Printable(text)}' must be an https URL (http only for a loopback host such as 127.0.0.1 behind a TLS-terminating proxy): verifiers fetch the keys from it, and over plain http anyone on the path could swap them";
        }
        if (!string.IsNullOrEmpty(uri.Query) || !string.IsNullOrEmpty(uri.Fragment) || !string.IsNullOrEmpty(uri.UserInfo) || text.Contains('?') || text.Contains('#'))
        {
            return $"'{Printable(text)}' must have no query, fragment or user info (OpenID Connect Discovery §3)";
        }
        if (text.EndsWith('/'))
        {
            return $"'{Printable(text)}' ends with '/': leave it out (verifiers compare iss to the issuer exactly, and the keys are at issuer + \"/keys\")";
        }
        return null;
    }

    /// <summary>True for localhost and loopback IP addresses.</summary>
    public static bool IsLoopbackHost(Uri uri)
    {
        ArgumentNullException.ThrowIfNull(uri);
        return uri.IsLoopback || IPAddress.TryParse(uri.Host.Trim('[', ']'), out var ip) && IPAddress.IsLoopback(ip);
    }

    internal static string Printable(string s) => s.Length > 200 ? s[..200] + "…" : new string(s.Select(ch => char.IsControl(ch) ? '?' : ch).ToArray());
}
