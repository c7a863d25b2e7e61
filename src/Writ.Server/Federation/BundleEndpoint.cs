using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.Logging;
using Writ.Protocol;
using Writ.Server.Hosting;

namespace Writ.Server.Federation;

/// <summary>
/// The SPIFFE bundle endpoint (Trust Domain and Bundle §5): GET <c>/</c> over HTTPS answers this trust domain's bundle
/// (SPIFFE JSON with <c>spiffe_sequence</c> and <c>spiffe_refresh_hint</c>), <c>application/json</c>. https_web serves
/// the configured certificate; https_spiffe the server's own X.509-SVID. Nothing else is served: any other path is 404,
/// any other method 405, without a body.
/// </summary>
public sealed class BundleEndpoint : IAsyncDisposable
{
    /// <summary>The configured address is in use or cannot be bound.</summary>
    public const string BindCode = "WRIT-FED-BUNDLE-ENDPOINT-BIND";
    /// <summary>The https_web certificate or key cannot be loaded, or do not match.</summary>
    public const string CertificateCode = "WRIT-FED-BUNDLE-ENDPOINT-CERTIFICATE";

    private readonly WebApplication _app;

    private BundleEndpoint(WebApplication app, IPEndPoint address)
    {
        _app = app;
        Address = address;
    }

    /// <summary>Where it listens (the real port with port 0).</summary>
    public IPEndPoint Address { get; }

    /// <summary>Loads the certificate (https_web) and binds the port; refused start-ups throw <see cref="StartupRefusedException"/>.</summary>
    public static async Task<BundleEndpoint> StartAsync(BundleEndpointOptions options, ServerContext server, ServerTlsCertificate svid, ILoggerFactory logs, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(server);
        ArgumentNullException.ThrowIfNull(svid);
        var web = options.CertificateFile is null ? null : LoadWebCertificate(options.CertificateFile, options.KeyFile!);
        (ulong Handle, IPEndPoint Bound) listener;
        try
        {
            listener = ListenerHandle.ListenTcp(options.Bind);
        }
        catch (SocketException e)
        {
            throw new StartupRefusedException(BindCode, $"the bundle endpoint cannot listen on {options.Bind}: {e.Message}; choose another federation.bundle_endpoint.bind");
        }
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.AddServerHeader = false;
            k.Limits.MaxRequestBodySize = 0;
            k.Limits.MaxRequestHeadersTotalSize = 16 * 1024;
            k.ListenHandle(listener.Handle, lo =>
            {
                lo.Protocols = HttpProtocols.Http1AndHttp2;
                lo.UseHttps(new TlsHandshakeCallbackOptions
                {
                    OnConnection = _ => ValueTask.FromResult(new SslServerAuthenticationOptions
                    {
                        // https_spiffe: the SVID of the agent API, re-issued as it nears expiry or the CA rotates.
                        ServerCertificateContext = web ?? svid.Current,
                        ClientCertificateRequired = false,
                        EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
                        ApplicationProtocols = [SslApplicationProtocol.Http2, SslApplicationProtocol.Http11],
                    }),
                });
            });
        });
        var app = builder.Build();
        app.Run(http => ServeAsync(http, server));
        try
        {
            await app.StartAsync(ct).ConfigureAwait(false);
        }
        catch
        {
            await app.DisposeAsync().ConfigureAwait(false);
            throw;
        }
        ServerLog.BundleEndpointListening(logs.CreateLogger<BundleEndpoint>(), listener.Bound.ToString(), options.Profile);
        return new BundleEndpoint(app, listener.Bound);
    }

    private static Task ServeAsync(HttpContext http, ServerContext server)
    {
        if (http.Request.Path.Value != "/" || http.Request.QueryString.HasValue)
        {
            http.Response.StatusCode = StatusCodes.Status404NotFound;
            return Task.CompletedTask;
        }
        if (!HttpMethods.IsGet(http.Request.Method) && !HttpMethods.IsHead(http.Request.Method))
        {
            http.Response.StatusCode = StatusCodes.Status405MethodNotAllowed;
            http.Response.Headers.Allow = "GET, HEAD";
            return Task.CompletedTask;
        }
        var body = Encoding.UTF8.GetBytes(server.Ca.Bundle.ToSpiffeJson());
        http.Response.StatusCode = StatusCodes.Status200OK;
        http.Response.ContentType = "application/json";
        http.Response.ContentLength = body.Length;
        http.Response.Headers.CacheControl = "no-store";
        return HttpMethods.IsHead(http.Request.Method) ? Task.CompletedTask : http.Response.Body.WriteAsync(body).AsTask();
    }

    private static SslStreamCertificateContext LoadWebCertificate(string certFile, string keyFile)
    {
        try
        {
            var chain = new X509Certificate2Collection();
            chain.ImportFromPemFile(certFile);
            if (chain.Count == 0)
            {
                throw new CryptographicException("no certificate in the file");
            }
            using var leafWithKey = X509Certificate2.CreateFromPemFile(certFile, keyFile);
            // Round-trip through PKCS#12 so the private key is usable by the TLS stack.
            var leaf = X509CertificateLoader.LoadPkcs12(leafWithKey.Export(X509ContentType.Pkcs12), null);
            return SslStreamCertificateContext.Create(leaf, new X509Certificate2Collection(chain.Skip(1).ToArray()), offline: true);
        }
        catch (Exception e) when (e is CryptographicException or IOException or UnauthorizedAccessException or ArgumentException)
        {
            throw new StartupRefusedException(CertificateCode,
                $"the bundle endpoint's certificate '{certFile}' and key '{keyFile}' cannot be used: {e.Message.Split('\n')[0].Trim()}; give a PEM chain (leaf first) and its PEM private key");
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync(CancellationToken.None).ConfigureAwait(false);
        await _app.DisposeAsync().ConfigureAwait(false);
    }
}
