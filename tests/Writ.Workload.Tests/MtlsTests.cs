using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;
using Writ.Spiffe;
using Writ.Spiffe.Bundles;
using Writ.Spiffe.X509;
using Writ.Workload.Http;
using Writ.Workload.Kestrel;
using Writ.Workload.Tests.Fakes;

namespace Writ.Workload.Tests;

/// <summary>Real TLS over loopback between the SDK's HttpClient handler and the SDK's Kestrel endpoint, both fed by X509Sources.</summary>
public sealed class MtlsTests : IAsyncLifetime
{
    private static readonly SpiffeId ServerId = SpiffeId.Parse("spiffe://example.org/server");
    private static readonly SpiffeId ClientId = SpiffeId.Parse("spiffe://example.org/client");
    private readonly TestCa _ca = new("example.org");
    private readonly TestCa _other = new("other.org");
    private FakeWorkloadApi _serverAgent = null!;
    private FakeWorkloadApi _clientAgent = null!;
    private readonly List<IAsyncDisposable> _disposables = [];

    public async ValueTask InitializeAsync()
    {
        _serverAgent = await FakeWorkloadApi.StartAsync(_ca);
        _clientAgent = await FakeWorkloadApi.StartAsync(_ca);
        _serverAgent.SetX509Svids([_ca.Issue(ServerId.Path)]);
        _clientAgent.SetX509Svids([_ca.Issue(ClientId.Path)]);
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var d in Enumerable.Reverse(_disposables))
        {
            await d.DisposeAsync();
        }
        await _serverAgent.DisposeAsync();
        await _clientAgent.DisposeAsync();
        _ca.Dispose();
        _other.Dispose();
    }

    private async Task<X509Source> SourceAsync(FakeWorkloadApi api, TimeProvider? time = null)
    {
        var s = await X509Source.CreateAsync(new X509SourceOptions { Address = api.Address, TimeProvider = time ?? TimeProvider.System }, TestContext.Current.CancellationToken);
        _disposables.Add(s);
        return s;
    }

    /// <summary>An SDK Kestrel endpoint on 127.0.0.1 that answers with the serial of the client certificate (or "none").</summary>
    private async Task<Uri> ServeAsync(IX509SvidSource source, IBundleSource bundles, SpiffeIdAuthorizer? clientAuthorizer, bool requireClientCertificate = true,
        IRevocationSource? revocations = null)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0, l =>
        {
            l.Protocols = HttpProtocols.Http1AndHttp2;
            l.UseWritServerCertificate(source, bundles, clientAuthorizer, requireClientCertificate, null, null, revocations);
        }));
        var app = builder.Build();
        app.MapGet("/", (HttpContext ctx) => ctx.Connection.ClientCertificate?.SerialNumber ?? "none");
        await app.StartAsync(TestContext.Current.CancellationToken);
        _disposables.Add(app);
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Single();
        return new Uri(address.Replace("http://", "https://", StringComparison.Ordinal));
    }

    /// <summary>One request on a fresh connection (Connection: close), so the handshake happens for it.</summary>
    private static async Task<string> GetAsync(HttpClient client, Uri uri)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, uri) { Version = HttpVersion.Version11 };
        request.Headers.ConnectionClose = true;
        using var response = await client.SendAsync(request, TestContext.Current.CancellationToken);
        response.EnsureSuccessStatusCode();
        return await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken);
    }

    /// <summary>The certificate the server presents, seen by a raw TLS handshake (with the client's SVID).</summary>
    private static async Task<X509Certificate2> ServerCertificateAsync(Uri uri, X509Svid clientSvid)
    {
        using var tcp = new TcpClient();
        await tcp.ConnectAsync(uri.Host, uri.Port, TestContext.Current.CancellationToken);
        X509Certificate2? seen = null;
        using var clientCert = clientSvid.Leaf.CopyWithPrivateKey((System.Security.Cryptography.ECDsa)clientSvid.PrivateKey!);
        await using var tls = new SslStream(tcp.GetStream());
        await tls.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
        {
            TargetHost = uri.Host,
            ClientCertificates = [clientCert],
            RemoteCertificateValidationCallback = (_, c, _, _) =>
            {
                seen = X509CertificateLoader.LoadCertificate(c!.GetRawCertData());
                return true;
            },
        }, TestContext.Current.CancellationToken);
        return seen!;
    }

    [Fact]
    public async Task Client_and_server_authenticate_each_other_by_SPIFFE_ID_with_no_hostname_check()
    {
        var server = await SourceAsync(_serverAgent);
        var client = await SourceAsync(_clientAgent);
        var uri = await ServeAsync(server, server, Authorize.Id(ClientId));
        Assert.Null(server.GetX509Svid().Leaf.Extensions.OfType<X509SubjectAlternativeNameExtension>().Single().EnumerateDnsNames().FirstOrDefault());
        Assert.Equal("127.0.0.1", uri.Host);

        using var http = new HttpClient(SpiffeMtls.CreateHandler(client, client, Authorize.Id(ServerId)));
        Assert.Equal(client.GetX509Svid().Leaf.SerialNumber, await GetAsync(http, uri));
    }

    [Fact]
    public async Task A_rotation_is_used_by_the_next_connection_on_both_sides_without_restart()
    {
        var server = await SourceAsync(_serverAgent);
        var client = await SourceAsync(_clientAgent);
        var uri = await ServeAsync(server, server, Authorize.Id(ClientId));
        using var http = new HttpClient(SpiffeMtls.CreateHandler(client, client, Authorize.Id(ServerId)));
        var firstClient = await GetAsync(http, uri);
        var firstServer = (await ServerCertificateAsync(uri, client.GetX509Svid())).SerialNumber;

        var clientChanged = Until.NextAsync(h => client.Changed += h);
        var serverChanged = Until.NextAsync(h => server.Changed += h);
        var newClient = _ca.Issue(ClientId.Path);
        var newServer = _ca.Issue(ServerId.Path);
        _clientAgent.SetX509Svids([newClient]);
        _serverAgent.SetX509Svids([newServer]);
        await clientChanged;
        await serverChanged;

        Assert.Equal(newClient.Leaf.SerialNumber, await GetAsync(http, uri));   // same HttpClient, same handler
        Assert.NotEqual(firstClient, newClient.Leaf.SerialNumber);
        var nowServer = (await ServerCertificateAsync(uri, client.GetX509Svid())).SerialNumber;
        Assert.Equal(newServer.Leaf.SerialNumber, nowServer);                  // same Kestrel, no restart
        Assert.NotEqual(firstServer, nowServer);
    }

    [Fact]
    public async Task A_new_connection_that_may_resume_a_TLS_session_is_verified_again_by_both_sides()
    {
        // Attack: after the server stops accepting a client (authorizer, revocation, bundle change), the client opens a new
        // connection that resumes its earlier TLS session; the verification must run again, not ride on the session.
        var server = await SourceAsync(_serverAgent);
        var client = await SourceAsync(_clientAgent);
        var serverAccepts = true;
        var clientAccepts = true;
        var uri = await ServeAsync(server, server, Authorize.Matching(_ => Volatile.Read(ref serverAccepts)));
        using var http = new HttpClient(SpiffeMtls.CreateHandler(client, client, Authorize.Matching(_ => Volatile.Read(ref clientAccepts))));
        Assert.Equal(client.GetX509Svid().Leaf.SerialNumber, await GetAsync(http, uri));
        Assert.Equal(client.GetX509Svid().Leaf.SerialNumber, await GetAsync(http, uri));   // a second session to resume from

        Volatile.Write(ref serverAccepts, false);
        await Assert.ThrowsAsync<HttpRequestException>(() => GetAsync(http, uri));

        Volatile.Write(ref serverAccepts, true);
        Assert.Equal(client.GetX509Svid().Leaf.SerialNumber, await GetAsync(http, uri));
        Volatile.Write(ref clientAccepts, false);
        await Assert.ThrowsAsync<HttpRequestException>(() => GetAsync(http, uri));
    }

    /// <summary>A revocation set the test controls (the SDK's RevocationSource follows the agent's).</summary>
    private sealed class Revoked : IRevocationSource
    {
        public volatile string? Serial;

        public bool IsSerialRevoked(string serialHex) => string.Equals(serialHex, Serial, StringComparison.OrdinalIgnoreCase);

        public bool IsJtiRevoked(string jti) => false;

        public event EventHandler? Changed { add { } remove { } }
    }

    [Fact]
    public async Task With_revocations_each_side_refuses_a_revoked_peer_at_its_next_connection()
    {
        var server = await SourceAsync(_serverAgent);
        var client = await SourceAsync(_clientAgent);
        var serverSide = new Revoked();
        var clientSide = new Revoked();
        var uri = await ServeAsync(server, server, Authorize.Id(ClientId), revocations: serverSide);
        using var http = new HttpClient(SpiffeMtls.CreateHandler(client, client, Authorize.Id(ServerId), revocations: clientSide));
        Assert.Equal(client.GetX509Svid().Leaf.SerialNumber, await GetAsync(http, uri));

        clientSide.Serial = server.GetX509Svid().Leaf.SerialNumber;   // the server's certificate is revoked
        await Assert.ThrowsAsync<HttpRequestException>(() => GetAsync(http, uri));
        clientSide.Serial = null;
        Assert.Equal(client.GetX509Svid().Leaf.SerialNumber, await GetAsync(http, uri));

        serverSide.Serial = client.GetX509Svid().Leaf.SerialNumber;   // the client's certificate is revoked
        await Assert.ThrowsAsync<HttpRequestException>(() => GetAsync(http, uri));
    }

    [Fact]
    public async Task The_client_refuses_a_server_with_another_ID()
    {
        var server = await SourceAsync(_serverAgent);
        var client = await SourceAsync(_clientAgent);
        var uri = await ServeAsync(server, server, Authorize.Any());
        using var http = new HttpClient(SpiffeMtls.CreateHandler(client, client, Authorize.Id("spiffe://example.org/payments")));
        await Assert.ThrowsAsync<HttpRequestException>(() => GetAsync(http, uri));
    }

    [Fact]
    public async Task The_client_refuses_a_server_of_a_trust_domain_it_has_no_bundle_for()
    {
        await using var foreignAgent = await FakeWorkloadApi.StartAsync(_other);
        foreignAgent.SetBundles(_other.Bundle, _ca.Bundle);
        foreignAgent.SetX509Svids([_other.Issue("/server")], federated: [_ca.X509Bundle]);
        var server = await SourceAsync(foreignAgent);
        var client = await SourceAsync(_clientAgent);
        Assert.Null(client.GetBundle(_other.TrustDomain));
        var uri = await ServeAsync(server, server, Authorize.Any());

        // Even an authorizer that accepts anyone: the chain must verify to a bundle the client has.
        using var http = new HttpClient(SpiffeMtls.CreateHandler(client, client, Authorize.Any()));
        await Assert.ThrowsAsync<HttpRequestException>(() => GetAsync(http, uri));
    }

    [Fact]
    public async Task The_server_refuses_a_client_its_authorizer_refuses()
    {
        var server = await SourceAsync(_serverAgent);
        var client = await SourceAsync(_clientAgent);
        var uri = await ServeAsync(server, server, Authorize.Id("spiffe://example.org/someone-else"));
        using var http = new HttpClient(SpiffeMtls.CreateHandler(client, client, Authorize.Id(ServerId)));
        await Assert.ThrowsAsync<HttpRequestException>(() => GetAsync(http, uri));
    }

    [Fact]
    public async Task The_server_refuses_a_client_with_a_forged_SVID_of_its_trust_domain()
    {
        var server = await SourceAsync(_serverAgent);
        var uri = await ServeAsync(server, server, Authorize.Any());
        await using var forgerAgent = await FakeWorkloadApi.StartAsync(_other);
        // other.org's CA signs "spiffe://example.org/client"; the forger trusts example.org so its side of TLS works.
        forgerAgent.SetX509Svids([_other.Issue(ClientId.ToString())], federated: [_ca.X509Bundle]);
        forgerAgent.SetBundles(_ca.Bundle);
        var forger = await SourceAsync(forgerAgent);
        using var http = new HttpClient(SpiffeMtls.CreateHandler(forger, forger, Authorize.Id(ServerId)));
        await Assert.ThrowsAsync<HttpRequestException>(() => GetAsync(http, uri));
    }

    [Fact]
    public async Task A_client_without_a_certificate_is_refused_unless_the_certificate_is_optional()
    {
        var server = await SourceAsync(_serverAgent);
        var required = await ServeAsync(server, server, null);
        var optional = await ServeAsync(server, server, null, requireClientCertificate: false);
        var verifier = new SpiffeCertificateVerifier(server, Authorize.Id(ServerId));
        using var plain = new HttpClient(new SocketsHttpHandler
        {
            SslOptions = new SslClientAuthenticationOptions { RemoteCertificateValidationCallback = (_, c, chain, _) => verifier.Verify(c, chain).IsValid },
        });

        await Assert.ThrowsAsync<HttpRequestException>(() => GetAsync(plain, required));
        Assert.Equal("none", await GetAsync(plain, optional));
    }

    [Fact]
    public async Task A_request_without_an_SVID_to_present_fails_with_WRIT_SDK_NO_SVID()
    {
        var server = await SourceAsync(_serverAgent);
        var uri = await ServeAsync(server, server, null);
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var client = await SourceAsync(_clientAgent, time);
        await _clientAgent.StopAsync();
        time.Advance(TimeSpan.FromHours(2));   // the last SVID expired while the agent was away

        using var http = new HttpClient(SpiffeMtls.CreateHandler(client, server, Authorize.Id(ServerId)));
        var e = await Assert.ThrowsAsync<WorkloadApiException>(() => GetAsync(http, uri));
        Assert.Equal(WorkloadErrors.NoSvid, e.Code);
    }
}
