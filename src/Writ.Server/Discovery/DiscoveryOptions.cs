using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Writ.Protocol.Errors;

namespace Writ.Server.Discovery;

/// <summary>
/// The validated options of `writ oidc-discovery run`. Everything that can be refused is refused here, before a port is
/// bound or the server is asked for anything: plain HTTP on an address that is not loopback, an issuer that is not an
/// issuer URL (<see cref="IssuerUrl"/>), half a TLS pair.
/// </summary>
public sealed record DiscoveryOptions
{
    public const string WellKnownPath = "/.well-known/openid-configuration";
    public const string KeysPath = "/keys";

    /// <summary>The addresses to listen on (a host name resolves to each of its addresses).</summary>
    public required IReadOnlyList<IPEndPoint> Bind { get; init; }

    /// <summary>HOST of <c>--bind</c> as written (what the default issuer is made of).</summary>
    public required string BindHost { get; init; }

    /// <summary>The issuer given with <c>--issuer</c>; null: derived from the bind host and the bound port (<see cref="IssuerFor"/>).</summary>
    public string? Issuer { get; init; }

    public string? TlsCertificate { get; init; }
    public string? TlsKey { get; init; }

    /// <summary>How often the bundle is read from the server.</summary>
    public TimeSpan RefreshInterval { get; init; } = TimeSpan.FromSeconds(5);

    public bool Tls => TlsCertificate is not null;

    /// <summary>
    /// The issuer served: <c>--issuer</c>, else <c>https://HOST[:PORT]</c> (<c>http://</c> without TLS) with HOST as
    /// written in <c>--bind</c> and PORT the port bound, left out when it is the scheme's default (443, 80).
    /// </summary>
    public string IssuerFor(int boundPort)
    {
        if (Issuer is not null)
        {
            return Issuer;
        }
        var scheme = Tls ? "https" : "http";
        var host = BindHost.Contains(':', StringComparison.Ordinal) ? $"[{BindHost}]" : BindHost;
        var port = (Tls && boundPort == 443) || (!Tls && boundPort == 80) ? "" : ":" + boundPort.ToString(CultureInfo.InvariantCulture);
        return $"{scheme}://{host.ToLowerInvariant()}{port}";
    }

    /// <summary>Builds and checks the options; throws a <see cref="WritException"/> with a <see cref="DiscoveryCodes"/> code.</summary>
    public static DiscoveryOptions Build(string bind, string? issuer, string? tlsCertificate, string? tlsKey, TimeSpan? refreshInterval)
    {
        ArgumentNullException.ThrowIfNull(bind);
        var (host, port) = SplitHostPort(bind);
        IReadOnlyList<IPAddress> addresses;
        if (IPAddress.TryParse(host, out var ip))
        {
            addresses = [ip];
        }
        else
        {
            try
            {
                addresses = Dns.GetHostAddresses(host).Where(a => a.AddressFamily is AddressFamily.InterNetwork or AddressFamily.InterNetworkV6).Distinct().ToList();
            }
            catch (SocketException e)
            {
                throw Refused(DiscoveryCodes.Bind, $"--bind host '{IssuerUrl.Printable(host)}' does not resolve ({e.Message}): give an IP address or a name this machine resolves");
            }
            if (addresses.Count == 0)
            {
                throw Refused(DiscoveryCodes.Bind, $"--bind host '{IssuerUrl.Printable(host)}' resolves to no address: give an IP address");
            }
        }
        if (string.IsNullOrEmpty(tlsCertificate) != string.IsNullOrEmpty(tlsKey))
        {
            throw Refused(DiscoveryCodes.Tls, "--tls-cert and --tls-key go together: give both (HTTPS) or neither (plain HTTP on a loopback address only)");
        }
        var tls = !string.IsNullOrEmpty(tlsCertificate);
        if (!tls && addresses.FirstOrDefault(a => !IPAddress.IsLoopback(a)) is { } open)
        {
            throw Refused(DiscoveryCodes.PlainHttp,
                $"refusing plain HTTP on {open} (from --bind {IssuerUrl.Printable(bind)}): verifiers would fetch the signing keys over a connection anyone on the path can change; give --tls-cert and --tls-key, or bind a loopback address (127.0.0.1) behind a TLS-terminating proxy");
        }
        if (issuer is { Length: > 0 })
        {
            if (IssuerUrl.Check(issuer) is { } why)
            {
                throw Refused(DiscoveryCodes.Issuer, $"--issuer {why}");
            }
        }
        else
        {
            issuer = null;
            if (addresses.Any(a => a.Equals(IPAddress.Any) || a.Equals(IPAddress.IPv6Any)))
            {
                throw Refused(DiscoveryCodes.Issuer, $"--bind {IssuerUrl.Printable(bind)} is a wildcard address, from which no issuer URL can be made: give --issuer https://<the name verifiers use>");
            }
        }
        var interval = refreshInterval ?? TimeSpan.FromSeconds(5);
        if (interval < TimeSpan.FromMilliseconds(100) || interval > TimeSpan.FromMinutes(5))
        {
            throw new WritException("WRIT-CLI-USAGE", WritErrorKind.InvalidArgument, "--refresh-interval must be between 100ms and 5m");
        }
        var options = new DiscoveryOptions
        {
            Bind = addresses.Select(a => new IPEndPoint(a, port)).ToList(),
            BindHost = host,
            Issuer = issuer,
            TlsCertificate = tls ? Path.GetFullPath(tlsCertificate!) : null,
            TlsKey = tls ? Path.GetFullPath(tlsKey!) : null,
            RefreshInterval = interval,
        };
        // A derived issuer must pass the same rule (e.g. http on a name that is not loopback cannot happen: refused above).
        if (issuer is null && IssuerUrl.Check(options.IssuerFor(port == 0 ? 1 : port)) is { } derived)
        {
            throw Refused(DiscoveryCodes.Issuer, $"the issuer derived from --bind {derived}: give --issuer");
        }
        return options;
    }

    private static (string Host, int Port) SplitHostPort(string bind)
    {
        if (IPEndPoint.TryParse(bind, out var ep) && (ep.Port != 0 || bind.EndsWith(":0", StringComparison.Ordinal)) && bind.Contains(':', StringComparison.Ordinal)
            && (bind.StartsWith('[') || bind.Count(c => c == ':') == 1))
        {
            return (ep.Address.ToString(), ep.Port);
        }
        var colon = bind.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(bind.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out var port) || port > 65535
            || bind[..colon].Any(ch => char.IsWhiteSpace(ch) || char.IsControl(ch) || ch is '/' or '[' or ']' or ':'))
        {
            throw Refused(DiscoveryCodes.Bind, $"--bind must be HOST:PORT, e.g. 127.0.0.1:8443 or oidc.example.org:443, got '{IssuerUrl.Printable(bind)}'");
        }
        return (bind[..colon], port);
    }

    private static WritException Refused(string code, string message) => new(code, WritErrorKind.InvalidArgument, message);
}
