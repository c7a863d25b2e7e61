using System.Collections.Concurrent;
using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Writ.IntegrationTests.Harness;
using Writ.Server.Ca;
using Writ.Server.Keys;
using Writ.Server.Storage;
using Writ.Spiffe;
using Writ.Spiffe.Bundles;
using Writ.Spiffe.Jwt;
using Writ.Spiffe.X509;

namespace Writ.IntegrationTests;

/// <summary>
/// The server's own CA code (<see cref="WritCa"/> on a real SQLite store, in this process) issuing X.509-SVIDs and
/// JWT-SVIDs bound to them with <see cref="WritCa.MintJwtSvidWithId"/>, written as the PEM files a workload would hold.
/// </summary>
internal sealed class BindingCa : IAsyncDisposable
{
    private readonly IWritStore _store;

    private BindingCa(TempDir dir, IWritStore store, WritCa ca)
    {
        Dir = dir;
        _store = store;
        Ca = ca;
    }

    public TempDir Dir { get; }
    public WritCa Ca { get; }
    public TrustBundle Bundle => Ca.Bundle;

    /// <summary>The bundle's X.509 authorities (PEM), for curl's --cacert.</summary>
    public string CaPemFile { get; private set; } = "";

    /// <summary>The SPIFFE bundle JSON (with the JWT authorities), as `writ bundle show` prints it.</summary>
    public string BundleJsonFile { get; private set; } = "";

    public static async Task<BindingCa> StartAsync()
    {
        var dir = new TempDir();
        var store = await WritStoreFactory.OpenAsync("sqlite", dir["writ.db"], TimeProvider.System, CancellationToken.None);
        var ca = new WritCa(TrustDomain.Parse("example.org"), new CaOptions(), new MemoryKeyManager(), store, TimeProvider.System, NullLogger<WritCa>.Instance);
        await ca.InitializeAsync(CancellationToken.None);
        var b = new BindingCa(dir, store, ca) { CaPemFile = dir["ca.pem"], BundleJsonFile = dir["bundle.json"] };
        await File.WriteAllTextAsync(b.CaPemFile, ca.Bundle.ToPem());
        await File.WriteAllTextAsync(b.BundleJsonFile, ca.Bundle.ToSpiffeJson());
        return b;
    }

    /// <summary>An X.509-SVID with its key; <paramref name="name"/>.pem and <paramref name="name"/>.key are written to the dir.</summary>
    public Svid Issue(string name, string spiffeId, params string[] dnsNames)
    {
        var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var chain = Ca.SignX509Svid(SpiffeId.Parse(spiffeId), new PublicKey(key), TimeSpan.FromMinutes(30), dnsNames);
        var svid = new Svid(chain[0], key, Dir[name + ".pem"], Dir[name + ".key"]);
        File.WriteAllText(svid.CertFile, chain[0].ExportCertificatePem() + "\n");
        File.WriteAllText(svid.KeyFile, key.ExportPkcs8PrivateKeyPem() + "\n");
        File.SetUnixFileMode(svid.KeyFile, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        return svid;
    }

    /// <summary>A JWT-SVID bound to <paramref name="boundTo"/>'s leaf (cnf x5t#S256), or a bearer token when null.</summary>
    public (string Token, string Jti) Jwt(string spiffeId, string audience, Svid? boundTo)
    {
        var (token, _, jti) = Ca.MintJwtSvidWithId(SpiffeId.Parse(spiffeId), [audience], TimeSpan.FromMinutes(5),
            boundTo is null ? null : SHA256.HashData(boundTo.Certificate.RawData));
        return (token, jti);
    }

    public async ValueTask DisposeAsync()
    {
        await _store.DisposeAsync();
        Dir.Dispose();
    }
}

internal sealed record Svid(X509Certificate2 Certificate, ECDsa Key, string CertFile, string KeyFile)
{
    public X509Certificate2 WithKey() => Certificate.CopyWithPrivateKey(Key);
}

/// <summary>
/// A relying party as any .NET service would write it: Kestrel with mTLS (client certificates optional at the TLS layer,
/// checked as X.509-SVIDs of the trust domain when present) and <see cref="JwtSvidVerifier"/> on every request.
/// GET /bound accepts only tokens bound to the client certificate; GET /bearer also accepts bearer tokens. Both refuse a
/// token seen from another client (replay) and record the replay as a service would raise an audit event.
/// </summary>
internal sealed class BoundApi : IAsyncDisposable
{
    private readonly WebApplication _app;

    private readonly ConcurrentQueue<JwtReplay> _replays;

    private BoundApi(WebApplication app, int port, ConcurrentQueue<JwtReplay> replays)
    {
        _app = app;
        Port = port;
        _replays = replays;
    }

    public int Port { get; }

    /// <summary>Every replay the verifiers reported, in order.</summary>
    public IReadOnlyList<JwtReplay> Replays => [.. _replays];

    public static Task<BoundApi> StartAsync(BindingCa ca, Svid serverSvid, string audience) =>
        StartAsync(ca.Bundle, ca.Ca.Intermediates, serverSvid.WithKey(), audience);

    /// <summary>A relying party trusting <paramref name="bundle"/>, serving TLS with <paramref name="serverCertificate"/> (with its key).</summary>
    public static async Task<BoundApi> StartAsync(TrustBundle bundle, IReadOnlyList<X509Certificate2> intermediates, X509Certificate2 serverCertificate, string audience)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        var serverCert = X509CertificateLoader.LoadPkcs12(serverCertificate.Export(X509ContentType.Pkcs12), null);
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0, l => l.UseHttps(new HttpsConnectionAdapterOptions
        {
            ServerCertificate = serverCert,
            ClientCertificateMode = ClientCertificateMode.AllowCertificate,
            // A client certificate, when sent, must be an X.509-SVID of the trust domain (SPIFFE validation, not the OS store).
            ClientCertificateValidation = (cert, _, _) => X509SvidValidator.Validate([cert, .. intermediates], bundle, DateTimeOffset.UtcNow).IsValid,
        })));
        var app = builder.Build();
        var replays = new ConcurrentQueue<JwtReplay>();
        var boundOnly = new JwtSvidVerifier(bundle, new JwtSvidVerifierOptions { Audiences = [audience], OnReplay = replays.Enqueue });
        var bearerToo = new JwtSvidVerifier(bundle, new JwtSvidVerifierOptions { Audiences = [audience], AllowBearer = true, OnReplay = replays.Enqueue });
        app.MapGet("/bound", (HttpContext ctx) => Check(ctx, boundOnly));
        app.MapGet("/bearer", (HttpContext ctx) => Check(ctx, bearerToo));
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return new BoundApi(app, new Uri(address).Port, replays);
    }

    private static IResult Check(HttpContext ctx, JwtSvidVerifier verifier)
    {
        var auth = ctx.Request.Headers.Authorization.ToString();
        if (!auth.StartsWith("Bearer ", StringComparison.Ordinal))
        {
            return Results.Text("no token: send Authorization: Bearer <JWT-SVID>", statusCode: 401);
        }
        var r = verifier.Verify(auth["Bearer ".Length..].Trim(), ctx.Connection.ClientCertificate);
        return r.IsValid ? Results.Text($"ok {r.Svid!.Id} jti {r.Svid.Jti}") : Results.Text($"{r.Failure}: {r.Error}", statusCode: 401);
    }

    /// <summary>curl (a client nobody on the project wrote) as a separate process: the HTTP status and the body.</summary>
    public Task<(int Status, string Body)> CurlAsync(string path, string? token, Svid? clientCert, string caPem) =>
        CurlAsync(path, token, clientCert?.CertFile, clientCert?.KeyFile, caPem);

    public async Task<(int Status, string Body)> CurlAsync(string path, string? token, string? certFile, string? keyFile, string caPem)
    {
        List<string> args = ["-sS", "--max-time", "20", "--resolve", $"localhost:{Port}:127.0.0.1", "--cacert", caPem, "-w", "\n%{http_code}"];
        if (certFile is not null && keyFile is not null)
        {
            args.AddRange(["--cert", certFile, "--key", keyFile]);
        }
        if (token is not null)
        {
            args.AddRange(["-H", "Authorization: Bearer " + token]);
        }
        args.Add($"https://localhost:{Port}{path}");
        var r = await Proc.RunAsync("curl", args);
        Assert.True(r.ExitCode == 0, "curl failed:\n" + r);
        var lines = r.Stdout.TrimEnd().Split('\n');
        return (int.Parse(lines[^1], System.Globalization.CultureInfo.InvariantCulture), string.Join('\n', lines[..^1]));
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
