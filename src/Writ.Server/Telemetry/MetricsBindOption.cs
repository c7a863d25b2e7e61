using System.Net;
using Writ.Protocol.Telemetry;
using Writ.Server.Configuration;

namespace Writ.Server.Telemetry;

/// <summary>The <c>metrics_bind</c> key of the server and the agent: empty (off) or a loopback HOST:PORT.</summary>
public static class MetricsBindOption
{
    /// <summary>The bound address, or null when the key is empty; an invalid or non-loopback value is a config error.</summary>
    public static IPEndPoint? Parse(ConfigSources c, string key)
    {
        ArgumentNullException.ThrowIfNull(c);
        var text = c.Get(key) ?? "";
        if (text.Length == 0)
        {
            return null;
        }
        if (!IPEndPoint.TryParse(text, out var bind) || bind.Port == 0 && !text.EndsWith(":0", StringComparison.Ordinal))
        {
            c.Errors.Add($"{c.Describe(key)} must be HOST:PORT with an IP address, e.g. 127.0.0.1:9090, got '{text}'");
            return null;
        }
        if (!TelemetryEndpoint.IsAllowedBind(bind))
        {
            c.Errors.Add($"{c.Describe(key)} must be a loopback address (127.0.0.1 or ::1), got '{text}': the metrics endpoint is plain HTTP without authentication; put a proxy you secure in front of it to scrape from another host");
            return null;
        }
        return bind;
    }
}
