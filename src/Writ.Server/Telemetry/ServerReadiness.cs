using Writ.Protocol.Telemetry;
using Writ.Server.Hosting;

namespace Writ.Server.Telemetry;

/// <summary>What the server exports and when <c>/readyz</c> says ready: the store answers and an X.509 CA authority signs.</summary>
public static class ServerReadiness
{
    public static TelemetrySources Sources { get; } = new("writ-server", [WritServerMetrics.MeterName, Storage.StoreMetrics.MeterName], [WritServerMetrics.MeterName]);

    /// <summary>Null when ready; otherwise why not (the body of the 503).</summary>
    public static async Task<string?> CheckAsync(ServerContext server, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(server);
        if (server.Stopping.IsCancellationRequested)
        {
            return "the server is stopping";
        }
        try
        {
            await server.Store.Metadata.GetAsync(WritServerHost.TrustDomainKey, ct).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // The endpoint is unauthenticated: fixed text, never the store's own message (it names hosts and users).
            return "the store is unreachable: check the store and the server log";
        }
        if (server.Ca.Halted is not null)
        {
            return "issuance stopped: another live server has this server id (see the server log, WRIT-CA-DUPLICATE-SERVER-ID)";
        }
        return server.Ca.ActiveX509NotAfter > server.Time.GetUtcNow() ? null : "no active X.509 CA authority";
    }
}
