using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace Writ.Protocol.Telemetry;

/// <summary>What a process exports: its service name, its meters and its activity sources.</summary>
public sealed record TelemetrySources(string ServiceName, IReadOnlyList<string> Meters, IReadOnlyList<string> ActivitySources);

/// <summary>
/// The telemetry side of a server or agent (docs/telemetry.md): with <c>--metrics-bind</c>, a plain-HTTP listener serving
/// <c>/metrics</c> (Prometheus text), <c>/healthz</c> (the process is up) and <c>/readyz</c> (the process can do its
/// job); with <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> set, metrics and traces pushed over OTLP (the exporter's standard
/// environment variables). With neither, nothing is created and the meters cost what an unobserved instrument costs.
/// Two steps like the other listeners: <see cref="Bind"/> before anything is created (a taken port refuses the
/// start-up), <see cref="StartAsync"/> once the process has its parts.
/// </summary>
public sealed class TelemetryEndpoint : IAsyncDisposable
{
    /// <summary>The standard OpenTelemetry variable that turns on the OTLP exporter.</summary>
    public const string OtlpEndpointVariable = "OTEL_EXPORTER_OTLP_ENDPOINT";

    private ulong? _handle;
    private WebApplication? _app;
    private MeterProvider? _meters;
    private TracerProvider? _traces;

    private TelemetryEndpoint(ulong? handle, IPEndPoint? address)
    {
        _handle = handle;
        Address = address;
    }

    /// <summary>The address <c>/metrics</c> is served on (port 0 resolved), or null without <c>--metrics-bind</c>.</summary>
    public IPEndPoint? Address { get; }

    /// <summary>True once <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> is set: metrics and traces are exported over OTLP.</summary>
    public static bool OtlpEnabled => Environment.GetEnvironmentVariable(OtlpEndpointVariable) is { Length: > 0 };

    /// <summary>
    /// True for an address a metrics listener may bind: loopback only (127.0.0.0/8, ::1). The endpoint is plain HTTP
    /// without authentication; a remote scraper goes through a proxy the operator secures.
    /// </summary>
    public static bool IsAllowedBind(IPEndPoint bind) => IPAddress.IsLoopback(bind.Address);

    /// <summary>Binds the metrics port (when asked for); a port in use refuses the start-up with <paramref name="refusedCode"/>.</summary>
    public static TelemetryEndpoint Bind(IPEndPoint? metricsBind, string refusedCode)
    {
        if (metricsBind is null)
        {
            return new TelemetryEndpoint(null, null);
        }
        try
        {
            var (handle, bound) = ListenerHandle.ListenTcp(metricsBind);
            return new TelemetryEndpoint(handle, bound);
        }
        catch (SocketException e)
        {
            var why = e.SocketErrorCode == SocketError.AddressAlreadyInUse ? "the address is already in use; stop the process using it or choose another" : e.Message + "; choose another";
            throw new StartupRefusedException(refusedCode, $"cannot serve metrics on {metricsBind}: {why} --metrics-bind");
        }
    }

    /// <summary>Starts the listener and the exporters. <paramref name="ready"/> answers <c>/readyz</c>: null when ready, else why not.</summary>
    public async Task StartAsync(TelemetrySources sources, Func<CancellationToken, Task<string?>> ready, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(sources);
        ArgumentNullException.ThrowIfNull(ready);
        var otlp = OtlpEnabled;
        if (_handle is not { } handle)
        {
            if (otlp)
            {
                _meters = ConfigureMetrics(Sdk.CreateMeterProviderBuilder(), sources, prometheus: false, otlp).Build();
                _traces = ConfigureTraces(Sdk.CreateTracerProviderBuilder(), sources).Build();
            }
            return;
        }
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        var telemetry = builder.Services.AddOpenTelemetry().WithMetrics(m => ConfigureMetrics(m, sources, prometheus: true, otlp));
        if (otlp)
        {
            telemetry.WithTracing(t => ConfigureTraces(t, sources));
        }
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.AddServerHeader = false;
            k.ListenHandle(handle, lo => lo.Protocols = HttpProtocols.Http1);
        });
        var app = builder.Build();
        app.MapPrometheusScrapingEndpoint("/metrics");
        app.MapGet("/healthz", (RequestDelegate)(http => Answer(http, StatusCodes.Status200OK, "ok")));
        app.MapGet("/readyz", (RequestDelegate)(async http =>
        {
            string? notReady;
            try
            {
                notReady = await ready(http.RequestAborted).ConfigureAwait(false);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                notReady = e.Message;
            }
            await Answer(http, notReady is null ? StatusCodes.Status200OK : StatusCodes.Status503ServiceUnavailable, notReady ?? "ready").ConfigureAwait(false);
        }));
        _handle = null;   // from here Kestrel owns (and closes) the listening descriptor
        _app = app;
        await app.StartAsync(ct).ConfigureAwait(false);
    }

    private static Task Answer(HttpContext http, int status, string text)
    {
        http.Response.StatusCode = status;
        http.Response.ContentType = "text/plain; charset=utf-8";
        return http.Response.WriteAsync(text + "\n", http.RequestAborted);
    }

    private static MeterProviderBuilder ConfigureMetrics(MeterProviderBuilder m, TelemetrySources sources, bool prometheus, bool otlp)
    {
        m.ConfigureResource(r => r.AddService(sources.ServiceName)).AddMeter([.. sources.Meters]);
        if (prometheus)
        {
            m.AddPrometheusExporter(o => o.ScrapeResponseCacheDurationMilliseconds = 0);   // every scrape current (writ bench reads counters before and after a short run)
        }
        if (otlp)
        {
            m.AddOtlpExporter();
        }
        return m;
    }

    private static TracerProviderBuilder ConfigureTraces(TracerProviderBuilder t, TelemetrySources sources) =>
        t.ConfigureResource(r => r.AddService(sources.ServiceName)).AddSource([.. sources.ActivitySources]).AddOtlpExporter();

    public async ValueTask DisposeAsync()
    {
        if (_handle is { } h)
        {
            ListenerHandle.Close(h);
            _handle = null;
        }
        if (_app is not null)
        {
            await _app.StopAsync(CancellationToken.None).ConfigureAwait(false);
            await _app.DisposeAsync().ConfigureAwait(false);
            _app = null;
        }
        _meters?.Dispose();
        _traces?.Dispose();
    }
}
