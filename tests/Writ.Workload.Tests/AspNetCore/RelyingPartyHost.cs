using System.Net;
using System.Net.Security;
using System.Security.Claims;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Writ.Workload.AspNetCore;

namespace Writ.Workload.Tests.AspNetCore;

/// <summary>
/// A real relying party: Kestrel on 127.0.0.1:0 with HTTPS that asks for (and lets through) any client certificate, so the
/// Writ schemes — not the TLS layer — judge the caller. Endpoints: /x509 (X.509-SVID scheme), /jwt (JWT-SVID scheme),
/// /call (the agent's call decision), each answering the caller's SPIFFE ID. Every response carries
/// <c>X-Connection-Id</c>, so a test can show two requests shared one TLS connection.
/// </summary>
internal sealed class RelyingPartyHost : IAsyncDisposable
{
    private readonly WebApplication _app;

    private RelyingPartyHost(WebApplication app, Uri baseUri)
    {
        _app = app;
        BaseUri = baseUri;
    }

    public Uri BaseUri { get; }

    public static async Task<RelyingPartyHost> StartAsync(X509Certificate2 serverCertificate, Action<AuthenticationBuilder> schemes,
        Action<IServiceCollection>? services = null)
    {
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
                    h.ServerCertificate = serverCertificate;
                    h.ClientCertificateMode = ClientCertificateMode.AllowCertificate;
                    h.AllowAnyClientCertificate();
                });
            });
        });
        schemes(builder.Services.AddAuthentication(WritAuthenticationDefaults.X509SvidScheme));
        builder.Services.AddAuthorizationBuilder()
            .AddPolicy("x509", p => p.AddAuthenticationSchemes(WritAuthenticationDefaults.X509SvidScheme).RequireAuthenticatedUser())
            .AddPolicy("jwt", p => p.AddAuthenticationSchemes(WritAuthenticationDefaults.JwtSvidScheme).RequireAuthenticatedUser());
        services?.Invoke(builder.Services);
        var app = builder.Build();
        app.Use((ctx, next) =>
        {
            ctx.Response.Headers["X-Connection-Id"] = ctx.Connection.Id;
            return next(ctx);
        });
        app.UseAuthentication();
        app.UseAuthorization();
        app.MapGet("/x509", (ClaimsPrincipal user) => Answer(user)).RequireAuthorization("x509");
        app.MapGet("/jwt", (ClaimsPrincipal user) => Answer(user)).RequireAuthorization("jwt");
        app.MapGet("/call", (ClaimsPrincipal user) => Answer(user)).RequireAuthorization(WritCallAuthorizationExtensions.PolicyName);
        await app.StartAsync();
        var address = app.Urls.First();
        return new RelyingPartyHost(app, new Uri(address.Replace("[::]", "127.0.0.1", StringComparison.Ordinal)));
    }

    private static string Answer(ClaimsPrincipal user) =>
        $"{user.FindFirstValue(ClaimTypes.NameIdentifier)}|{user.FindFirstValue(WritClaimTypes.TrustDomain)}|{user.FindFirstValue(WritClaimTypes.Serial) ?? user.FindFirstValue(WritClaimTypes.Jti)}";

    /// <summary>An HTTP/1.1 client presenting <paramref name="clientCertificate"/> (or none); the server's certificate is not under test here.</summary>
    public HttpClient Client(X509Certificate2? clientCertificate = null)
    {
        var handler = new SocketsHttpHandler
        {
            SslOptions = new SslClientAuthenticationOptions
            {
                RemoteCertificateValidationCallback = (_, _, _, _) => true,
                ClientCertificates = clientCertificate is null ? null : new X509CertificateCollection { clientCertificate },
                LocalCertificateSelectionCallback = clientCertificate is null ? null : (_, _, _, _, _) => clientCertificate,
            },
            MaxConnectionsPerServer = 1,
        };
        return new HttpClient(handler) { BaseAddress = BaseUri, DefaultRequestVersion = HttpVersion.Version11 };
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
