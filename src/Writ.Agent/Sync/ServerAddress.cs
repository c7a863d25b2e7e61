using System.Globalization;
using System.Net;

namespace Writ.Agent.Sync;

/// <summary>
/// One server named by the agent's <c>server</c> key: a host (a DNS name or an IP literal; IPv6 in brackets) and a port.
/// A name may resolve to several addresses, each of which counts as a server of its own (<see cref="ServerPool"/>).
/// </summary>
public readonly record struct ServerAddress(string Host, int Port)
{
    /// <summary>The value is not HOST:PORT (a scheme, a path, no port, a port outside 1–65535).</summary>
    public const string InvalidCode = "WRIT-AGENT-SERVER-ADDRESS";

    /// <summary>The list names the same HOST:PORT twice.</summary>
    public const string DuplicateCode = "WRIT-AGENT-SERVER-DUPLICATE";

    /// <summary>The list is empty, or has an empty item (e.g. "a:8081,,b:8081").</summary>
    public const string EmptyCode = "WRIT-AGENT-SERVER-EMPTY";

    /// <summary>Whether <see cref="Host"/> is an IP literal (needs no resolution).</summary>
    public bool IsIp => IPAddress.TryParse(Host, out _);

    /// <summary>HOST:PORT, with an IPv6 literal in brackets (what a URI and the logs show).</summary>
    public override string ToString() =>
        (IPAddress.TryParse(Host, out var ip) && ip.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? $"[{Host}]" : Host)
        + ":" + Port.ToString(CultureInfo.InvariantCulture);

    /// <summary>The endpoint of one resolved address of this server.</summary>
    public static ServerAddress Of(IPAddress ip, int port) => new(ip.ToString(), port);

    /// <summary>
    /// Parses the <c>server</c> key: one HOST:PORT, or several separated by commas (spaces around them allowed). Each must
    /// be HOST:PORT, none may repeat (case-insensitively: a DNS name is). The error is one line starting with its code.
    /// </summary>
    public static bool TryParseList(string? value, out IReadOnlyList<ServerAddress> servers, out string? error)
    {
        servers = [];
        error = null;
        if (string.IsNullOrWhiteSpace(value))
        {
            error = $"{EmptyCode}: no server given: pass --server HOST:PORT (the server's agent API, see its 'ready' line), or several comma-separated";
            return false;
        }
        var list = new List<ServerAddress>();
        var items = value.Split(',');
        for (var i = 0; i < items.Length; i++)
        {
            var item = items[i].Trim();
            if (item.Length == 0)
            {
                error = $"{EmptyCode}: item {i + 1} of the server list '{value}' is empty: separate HOST:PORT values with single commas";
                return false;
            }
            if (!TryParse(item, out var server, out var why))
            {
                error = $"{InvalidCode}: server '{item}' is not HOST:PORT ({why})";
                return false;
            }
            if (list.Any(s => s.Port == server.Port && string.Equals(s.Host, server.Host, StringComparison.OrdinalIgnoreCase)))
            {
                error = $"{DuplicateCode}: server '{item}' is listed twice: name each server once";
                return false;
            }
            list.Add(server);
        }
        servers = list;
        return true;
    }

    /// <summary>Parses one HOST:PORT.</summary>
    public static bool TryParse(string item, out ServerAddress server, out string? why)
    {
        server = default;
        why = null;
        if (item.Contains("://", StringComparison.Ordinal) || item.Contains('/', StringComparison.Ordinal) || item.Contains('?', StringComparison.Ordinal)
            || item.Contains('#', StringComparison.Ordinal) || item.Contains('@', StringComparison.Ordinal) || item.Any(char.IsWhiteSpace))
        {
            why = "give the host and port only, without a scheme, user or path";
            return false;
        }
        if (!Uri.TryCreate("https://" + item, UriKind.Absolute, out var u) || u.PathAndQuery != "/" || u.Host.Length == 0)
        {
            why = "not a host name or IP address";
            return false;
        }
        var colon = item.LastIndexOf(':');
        var closing = item.LastIndexOf(']');
        if (colon < 0 || colon < closing)
        {
            why = "the port is missing";
            return false;
        }
        if (!int.TryParse(item.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out var port) || port is < 1 or > 65535)
        {
            why = "the port must be a number from 1 to 65535";
            return false;
        }
        var host = u.Host.StartsWith('[') ? u.Host[1..^1] : u.Host;
        if (host.Contains(':', StringComparison.Ordinal) && !IPAddress.TryParse(host, out _))
        {
            why = "not a host name or IP address";
            return false;
        }
        server = new ServerAddress(host, port);
        return true;
    }
}
