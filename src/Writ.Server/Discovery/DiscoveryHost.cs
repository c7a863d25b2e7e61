using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Writ.Protocol;
using Writ.Protocol.Errors;

namespace Writ.Server.Discovery;

/// <summary>
/// `writ oidc-discovery run`: a process beside a server that serves OIDC discovery for its JWT-SVIDs, like SPIRE's
/// oidc-discovery-provider — <c>{issuer path}/.well-known/openid-configuration</c> and <c>{issuer path}/keys</c>, GET
/// and HEAD only, nothing else (404). The issuer is fixed by the options, never taken from the request's Host header.
/// The keys come from the server's admin API (<see cref="DiscoveryKeySource"/>); HTTPS with the operator's certificate
/// (<see cref="DiscoveryTls"/>), or plain HTTP on a loopback address only.
/// </summary>
public sealed class DiscoveryHost : IAsyncDisposable
{
    /// <summary>The configuration changes only with the keys' algorithms; verifiers cache it (five minutes).</summary>
    public const string ConfigurationCacheControl = "public, max-age=300";

    /// <summary>Keys are published long before they sign; a minute of caching keeps a new one from being missed for long.</summary>
    public const string KeysCacheControl = "public, max-age=60";

    private readonly WebApplication _app;
    private readonly CancellationTokenSource _stop;
    private readonly Task _refresher;

    private DiscoveryHost(WebApplication app, Task refresher, CancellationTokenSource stop, string issuer, IReadOnlyList<IPEndPoint> addresses)
    {
        _app = app;
        _refresher = refresher;
        _stop = stop;
        Issuer = issuer;
        Addresses = addresses;
    }

    public string Issuer { get; }

    /// <summary>The addresses listened on (port 0 resolved).</summary>
    public IReadOnlyList<IPEndPoint> Addresses { get; }

    /// <param name="fetch">Reads the bundle from the server (the admin API's GetBundle).</param>
    public static async Task<DiscoveryHost> StartAsync(DiscoveryOptions options, string adminSocket, Func<CancellationToken, Task<BundleReading>> fetch,
        TimeProvider time, Action<ILoggingBuilder> logging, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(fetch);
        using var bootLogs = LoggerFactory.Create(logging);
        var tls = options.TlsCertificate is { } cert ? DiscoveryTls.Load(cert, options.TlsKey!, time, bootLogs.CreateLogger<DiscoveryHost>()) : null;
        var handles = new List<(ulong Handle, IPEndPoint Bound)>();
        try
        {
            foreach (var ep in options.Bind)
            {
                try
                {
                    handles.Add(ListenerHandle.ListenTcp(ep));
                }
                catch (SocketException e)
                {
                    throw new WritException(DiscoveryCodes.Bind, WritErrorKind.Unavailable,
                        $"cannot listen on {ep}: {(e.SocketErrorCode == SocketError.AddressAlreadyInUse ? "the address is already in use" : e.Message)}; choose another --bind");
                }
            }
        }
        catch
        {
            foreach (var (h, _) in handles)
            {
                ListenerHandle.Close(h);
            }
            throw;
        }
        var issuer = options.IssuerFor(handles[0].Bound.Port);
        var issuerPath = new Uri(issuer).AbsolutePath.TrimEnd('/');
        var wellKnown = issuerPath + DiscoveryOptions.WellKnownPath;
        var keysPath = issuerPath + DiscoveryOptions.KeysPath;

        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        logging(builder.Logging);
        builder.Services.AddSingleton(time);
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.AddServerHeader = false;
            foreach (var (handle, _) in handles)
            {
                k.ListenHandle(handle, lo =>
                {
                    lo.Protocols = HttpProtocols.Http1AndHttp2;
                    if (tls is not null)
                    {
                        lo.UseHttps(new TlsHandshakeCallbackOptions
                        {
                            OnConnection = _ => ValueTask.FromResult(new SslServerAuthenticationOptions
                            {
                                ServerCertificateContext = tls.Current,
                                EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
                                ApplicationProtocols = [SslApplicationProtocol.Http2, SslApplicationProtocol.Http11],
                            }),
                        });
                    }
                });
            }
        });
        var app = builder.Build();
        var log = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger<DiscoveryHost>();
        var source = new DiscoveryKeySource(fetch, issuer, options.RefreshInterval, time, log);
        app.Run(http => ServeAsync(http, source, wellKnown, keysPath));
        // The first read before the first request, so a provider started beside a running server serves keys at once.
        await source.RefreshAsync(ct).ConfigureAwait(false);
        await app.StartAsync(ct).ConfigureAwait(false);
        var stop = new CancellationTokenSource();
        var refresher = Task.Run(() => source.RunAsync(stop.Token), CancellationToken.None);
        var addresses = handles.Select(h => h.Bound).ToList();
        ServerLog.DiscoveryReady(log, issuer, string.Join(", ", addresses), tls is null ? "plain HTTP, loopback only" : "HTTPS", adminSocket, options.RefreshInterval);
        return new DiscoveryHost(app, refresher, stop, issuer, addresses);
    }

    private static Task ServeAsync(HttpContext http, DiscoveryKeySource source, string wellKnown, string keysPath)
    {
        var path = http.Request.Path.Value ?? "";
        var res = http.Response;
        res.Headers.XContentTypeOptions = "nosniff";
        var isConfig = string.Equals(path, wellKnown, StringComparison.Ordinal);
        var isKeys = string.Equals(path, keysPath, StringComparison.Ordinal);
        if (!isConfig && !isKeys)
        {
            return Text(res, StatusCodes.Status404NotFound, "not found: this server serves only " + wellKnown + " and " + keysPath);
        }
        if (!HttpMethods.IsGet(http.Request.Method) && !HttpMethods.IsHead(http.Request.Method))
        {
            res.Headers.Allow = "GET, HEAD";
            return Text(res, StatusCodes.Status405MethodNotAllowed, "method not allowed: use GET");
        }
        byte[] body;
        if (isConfig)
        {
            body = source.Configuration;
            res.Headers.CacheControl = ConfigurationCacheControl;
        }
        else
        {
            if (source.Current is not { } snapshot)
            {
                res.Headers.RetryAfter = "5";
                res.Headers.CacheControl = "no-store";
                return Text(res, StatusCodes.Status503ServiceUnavailable, $"{DiscoveryCodes.NoBundle}: no trust bundle has been read from the Writ server yet; retry shortly");
            }
            res.Headers.CacheControl = KeysCacheControl;
            res.Headers.ETag = snapshot.JwksETag;
            if (http.Request.Headers.IfNoneMatch.Any(v => v is not null && v.Split(',').Any(t => t.Trim() == snapshot.JwksETag)))
            {
                res.StatusCode = StatusCodes.Status304NotModified;
                return Task.CompletedTask;
            }
            body = snapshot.Jwks;
        }
        res.StatusCode = StatusCodes.Status200OK;
        res.ContentType = "application/json";
        res.ContentLength = body.Length;
        return HttpMethods.IsHead(http.Request.Method) ? Task.CompletedTask : res.Body.WriteAsync(body, http.RequestAborted).AsTask();
    }

    private static Task Text(HttpResponse res, int status, string text)
    {
        res.StatusCode = status;
        res.ContentType = "text/plain; charset=utf-8";
        return res.WriteAsync(text + "\n");
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        await _refresher.ConfigureAwait(false);
        await _app.StopAsync().ConfigureAwait(false);
        await _app.DisposeAsync().ConfigureAwait(false);
        _stop.Dispose();
    }
}
