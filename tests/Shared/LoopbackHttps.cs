using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Logging;

namespace Writ.Tests.Shared;

/// <summary>
/// A real HTTPS server on 127.0.0.1 (Kestrel, a free port) for protocol tests of the parts Writ talks to over HTTP: an OIDC
/// issuer, a kubelet, the Kubernetes TokenReview API, an OCI registry. Its certificate is issued by a fresh test CA whose
/// PEM is written to <see cref="CaPemPath"/> (give it to the client as its CA file); the certificate names 127.0.0.1 and
/// localhost. Every request is counted and handled by <see cref="Handler"/>, which a test may replace at any time.
/// Optionally asks for a client certificate (<c>clientCertificate: true</c>), available as <c>ctx.Connection.ClientCertificate</c>.
/// </summary>
public sealed class LoopbackHttps : IAsyncDisposable
{
    private readonly WebApplication _app;
    private int _requests;

    private LoopbackHttps(WebApplication app, string caPemPath, X509Certificate2 ca, X509Certificate2 serverCert)
    {
        _app = app;
        CaPemPath = caPemPath;
        Ca = ca;
        ServerCertificate = serverCert;
    }

    /// <summary>Handles every request; default: 404.</summary>
    public Func<HttpContext, Task> Handler { get; set; } = ctx =>
    {
        ctx.Response.StatusCode = 404;
        return Task.CompletedTask;
    };

    /// <summary>https://127.0.0.1:PORT (no trailing slash).</summary>
    public Uri BaseUri { get; private set; } = null!;

    public int Port => BaseUri.Port;

    /// <summary>PEM of the CA that issued the server's certificate.</summary>
    public string CaPemPath { get; }

    public X509Certificate2 Ca { get; }

    public X509Certificate2 ServerCertificate { get; }

    /// <summary>Requests served so far.</summary>
    public int Requests => Volatile.Read(ref _requests);

    /// <summary>Paths requested so far, in order (path and query).</summary>
    public System.Collections.Concurrent.ConcurrentQueue<string> Log { get; } = new();

    /// <summary>Starts a server whose CA PEM is written into <paramref name="dir"/>.</summary>
    public static async Task<LoopbackHttps> StartAsync(string dir, bool clientCertificate = false, string name = "loopback")
    {
        Directory.CreateDirectory(dir);
        var (ca, cert) = IssueCertificates(name);
        var caPem = Path.Combine(dir, $"{name}-ca.pem");
        await File.WriteAllTextAsync(caPem, ca.ExportCertificatePem());
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.AddServerHeader = false;
            k.Listen(IPAddress.Loopback, 0, lo =>
            {
                lo.Protocols = HttpProtocols.Http1AndHttp2;
                lo.UseHttps(h =>
                {
                    h.ServerCertificate = cert;
                    if (clientCertificate)
                    {
                        h.ClientCertificateMode = Microsoft.AspNetCore.Server.Kestrel.Https.ClientCertificateMode.AllowCertificate;
                        h.AllowAnyClientCertificate();
                    }
                });
            });
        });
        var app = builder.Build();
        var server = new LoopbackHttps(app, caPem, ca, cert);
        app.Run(async ctx =>
        {
            Interlocked.Increment(ref server._requests);
            server.Log.Enqueue(ctx.Request.Path + ctx.Request.QueryString);
            await server.Handler(ctx);
        });
        await app.StartAsync();
        var address = app.Urls.First();
        server.BaseUri = new Uri(address.Replace("[::]", "127.0.0.1", StringComparison.Ordinal).TrimEnd('/'));
        return server;
    }

    /// <summary>A CA and a server certificate for 127.0.0.1/localhost, valid from an hour ago for a day.</summary>
    public static (X509Certificate2 Ca, X509Certificate2 Server) IssueCertificates(string name)
    {
        using var caKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var caReq = new CertificateRequest($"CN={name} test CA", caKey, HashAlgorithmName.SHA256);
        caReq.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        caReq.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        caReq.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(caReq.PublicKey, false));
        var now = DateTimeOffset.UtcNow;
        var ca = caReq.CreateSelfSigned(now.AddHours(-1), now.AddDays(1));
        var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var req = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddIpAddress(IPAddress.Loopback);
        san.AddDnsName("localhost");
        req.CertificateExtensions.Add(san.Build());
        req.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        req.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false));
        using var signed = req.Create(ca, now.AddHours(-1), now.AddDays(1), RandomNumberGenerator.GetBytes(12));
        var server = signed.CopyWithPrivateKey(key);
        // Kestrel on Linux wants an exportable, re-imported certificate.
        var reloaded = X509CertificateLoader.LoadPkcs12(server.Export(X509ContentType.Pkcs12), null);
        return (ca, reloaded);
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
