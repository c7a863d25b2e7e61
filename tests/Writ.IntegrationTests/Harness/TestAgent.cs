using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Google.Protobuf;
using Grpc.Net.Client;
using Writ.Agent.Sync;
using Writ.Protocol.Agent;
using Writ.Spiffe;
using Writ.Spiffe.Bundles;
using Writ.Spiffe.X509;

namespace Writ.IntegrationTests.Harness;

/// <summary>Plays the agent's side of the agent API in tests: attests with a join token, then calls with its SVID.</summary>
public sealed class TestAgent : IDisposable
{
    private readonly string _address;
    private readonly TrustDomain _td;
    private GrpcChannel _channel;
    private X509Certificate2? _svid;

    private TestAgent(string address, TrustDomain td, TrustBundle bundle)
    {
        _address = address;
        _td = td;
        Bundle = bundle;
        _channel = NewChannel();
        Client = new AgentService.AgentServiceClient(_channel);
    }

    /// <summary>A TLS connection keeps the client certificate it was made with: a new SVID needs a new channel.</summary>
    private GrpcChannel NewChannel() => ServerChannel.Create(_address, _td, () => Bundle, () => _svid);

    private void Reconnect()
    {
        _channel.Dispose();
        _channel = NewChannel();
        Client = new AgentService.AgentServiceClient(_channel);
    }

    public AgentService.AgentServiceClient Client { get; private set; }
    public TrustBundle Bundle { get; private set; }
    public X509Certificate2? Svid => _svid;
    public string AgentId { get; private set; } = "";

    /// <summary>A client that trusts the server's current bundle (fetched over the admin socket, as an operator would).</summary>
    public static async Task<TestAgent> ConnectAsync(ServerProcess server)
    {
        var r = await server.WritAsync("bundle", "show", "--format", "spiffe").ConfigureAwait(false);
        Assert.True(r.ExitCode == 0, r.ToString());
        var td = TrustDomain.Parse(server.TrustDomain);
        return new TestAgent(server.AgentApi, td, TrustBundle.ParseSpiffeJson(td, r.Stdout));
    }

    public static async Task<string> NewJoinTokenAsync(ServerProcess server, params string[] extra)
    {
        var r = await server.WritAsync(["token", "generate", "--output", "json", .. extra]).ConfigureAwait(false);
        Assert.True(r.ExitCode == 0, r.ToString());
        using var doc = System.Text.Json.JsonDocument.Parse(r.Stdout);
        return doc.RootElement.GetProperty("token").GetString()!;
    }

    public async Task<AttestResponse> AttestAsync(string joinToken)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var r = await Client.AttestJoinTokenAsync(new AttestJoinTokenRequest { Token = joinToken, Csr = ByteString.CopyFrom(Csr.Create(key)) });
        Adopt(r, key);
        return r;
    }

    public async Task<AttestResponse> RenewAsync()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var r = await Client.RenewAgentAsync(new RenewAgentRequest { Csr = ByteString.CopyFrom(Csr.Create(key)) });
        Adopt(r, key);
        return r;
    }

    private void Adopt(AttestResponse r, ECDsa key)
    {
        using var leaf = X509CertificateLoader.LoadCertificate(r.SvidChain[0].ToByteArray());
        using var withKey = leaf.CopyWithPrivateKey(key);
        _svid = X509CertificateLoader.LoadPkcs12(withKey.Export(X509ContentType.Pkcs12), null);
        AgentId = r.SpiffeId;
        Bundle = TrustBundle.ParseSpiffeJson(Bundle.TrustDomain, r.Bundle.SpiffeBundleJson.ToStringUtf8());
        Reconnect();
    }

    /// <summary>Uses another agent's SVID (an attacker with a stolen or stale certificate).</summary>
    public void UseCertificate(X509Certificate2? cert)
    {
        _svid = cert;
        Reconnect();
    }

    public void Dispose()
    {
        _channel.Dispose();
        _svid?.Dispose();
    }
}
