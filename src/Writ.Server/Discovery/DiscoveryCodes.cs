namespace Writ.Server.Discovery;

/// <summary>The stable codes of `writ oidc-discovery run` and of the server key <c>jwt_issuer</c> (docs/errors.md, "OIDC discovery").</summary>
public static class DiscoveryCodes
{
    /// <summary>The server's <c>jwt_issuer</c> is not an https URL (http only on a loopback host), or has a query, fragment, user info or trailing slash.</summary>
    public const string ConfigJwtIssuer = "WRIT-CONFIG-JWT-ISSUER";

    /// <summary><c>--issuer</c> is not a valid issuer URL, or is missing where it cannot be derived (a wildcard bind).</summary>
    public const string Issuer = "WRIT-DISCOVERY-ISSUER";

    /// <summary>Plain HTTP (no <c>--tls-cert</c>/<c>--tls-key</c>) on a bind address that is not loopback.</summary>
    public const string PlainHttp = "WRIT-DISCOVERY-PLAIN-HTTP";

    /// <summary><c>--bind</c> is not HOST:PORT, does not resolve, or cannot be listened on.</summary>
    public const string Bind = "WRIT-DISCOVERY-BIND";

    /// <summary>The TLS certificate or key cannot be read, do not match, or only one of them is given.</summary>
    public const string Tls = "WRIT-DISCOVERY-TLS";

    /// <summary>HTTP 503 from /keys: no bundle has been read from the server yet.</summary>
    public const string NoBundle = "WRIT-DISCOVERY-NO-BUNDLE";
}
