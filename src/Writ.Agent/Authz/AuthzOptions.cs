using System.Globalization;
using System.Net;

namespace Writ.Agent.Authz;

/// <summary>
/// The request-time decision service (<c>authz_*</c>, docs/relying-parties.md): Envoy's ext_authz
/// (<c>envoy.service.auth.v3.Authorization/Check</c>) on <see cref="Bind"/>, and the SDK's <c>RelyingParty/Authorize</c>
/// on the Workload API socket (always served; it decides only for the calling workload).
/// </summary>
public sealed record AuthzOptions
{
    /// <summary>Where ext_authz listens (<c>authz_bind</c>): null = off.</summary>
    public AuthzBind? Bind { get; init; }

    /// <summary>Request headers given to policy as <c>context.headers</c> (<c>authz_headers</c>), lower-case; others are never seen by Cedar.</summary>
    public IReadOnlyList<string> Headers { get; init; } = [];

    /// <summary>The fraction of allows recorded in the ledger as <c>access.allowed</c> (<c>authz_allow_sample</c>, 0..1); every denial is recorded.</summary>
    public double AllowSample { get; init; } = 0.01;

    /// <summary>The header carrying a JWT-SVID as <c>Bearer</c> when the caller has no client certificate (<c>authz_jwt_header</c>).</summary>
    public string JwtHeader { get; init; } = "authorization";

    /// <summary>The destination when Envoy names none (<c>authz_default_resource</c>): neither a <c>writ_resource</c> context extension nor a destination principal.</summary>
    public string? DefaultResource { get; init; }

    public const string DisabledValue = "";

    /// <summary>Parses <c>authz_bind</c>: empty (off), <c>unix:PATH</c>, or a loopback <c>HOST:PORT</c>.</summary>
    public static bool TryParseBind(string? text, out AuthzBind? bind, out string error)
    {
        bind = null;
        error = "";
        if (string.IsNullOrWhiteSpace(text))
        {
            return true;
        }
        if (text.StartsWith("unix:", StringComparison.Ordinal))
        {
            var path = text["unix:".Length..];
            if (path.Length == 0 || path.Contains('\0', StringComparison.Ordinal))
            {
                error = "unix: needs a socket path, e.g. unix:/run/writ/authz.sock";
                return false;
            }
            bind = new AuthzBind(Path.GetFullPath(path), null);
            return true;
        }
        if (!IPEndPoint.TryParse(text, out var ep) || ep.Port == 0 || !IPAddress.IsLoopback(ep.Address) || !text.Contains(':', StringComparison.Ordinal))
        {
            error = $"'{text}' is neither unix:PATH nor a loopback HOST:PORT (127.0.0.1:PORT or [::1]:PORT): the decision service never listens beyond this host";
            return false;
        }
        bind = new AuthzBind(null, ep);
        return true;
    }

    /// <summary>Parses <c>authz_allow_sample</c>: a number from 0 to 1.</summary>
    public static bool TryParseSample(string? text, out double sample) =>
        double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out sample) && sample is >= 0 and <= 1;
}

/// <summary>A Unix socket path or a loopback endpoint (exactly one is set).</summary>
public sealed record AuthzBind(string? SocketPath, IPEndPoint? Endpoint)
{
    public override string ToString() => SocketPath is not null ? "unix:" + SocketPath : Endpoint!.ToString();
}
