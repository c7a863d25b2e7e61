using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Google.Protobuf;
using Grpc.Core;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Writ.Agent.NodeAttestation;
using Writ.Agent.Sync;
using Writ.Agent.Tests.TestSupport;
using Writ.Protocol.Agent;
using Writ.Protocol.Tpm;
using Writ.Spiffe;
using Writ.Spiffe.X509;
using Writ.Tests.Shared;
using Writ.Tpm.Device;

namespace Writ.Agent.Tests.NodeAttestation;

/// <summary>
/// NodeIdentity with the tpm attestor against a stand-in server that does what the server's tpm attestor does with the
/// evidence (tpm2_makecredential for the EK and AK, the secret and the CSR binding checked) over real TLS: the agent's
/// key never reaches the data dir, every start and every renewal is a fresh attestation, and a copy of the data dir on
/// another TPM is another node.
/// </summary>
public class NodeIdentityTpmTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task A_tpm_agent_keeps_no_key_on_disk_attests_on_every_start_and_renews_by_attesting_again()
    {
        await using var tpm = await Swtpm.StartAsync(null, Ct);
        await using var server = await TpmStandInServer.StartAsync();
        using var dir = new TempDir();
        var options = server.Options(dir.Combine("agent"));
        // A key file left from an earlier join-token life of this data dir is removed, never used.
        Directory.CreateDirectory(options.DataDir);
        File.WriteAllText(Path.Combine(options.DataDir, "agent-svid.key"), "stale");

        string firstId;
        using (var node = NewNode(options, tpm))
        {
            await node.StartAsync(Ct);
            firstId = node.AgentId!.ToString();
            Assert.Equal(1, server.Attestations);
            await node.RenewAsync(Ct);
            Assert.Equal(2, server.Attestations);
            Assert.Equal(0, server.Renewals);
            Assert.Equal(firstId, node.AgentId!.ToString());
        }
        Assert.StartsWith("spiffe://example.org/writ/agent/tpm/", firstId, StringComparison.Ordinal);
        AssertNoKeyIn(options.DataDir);
        Assert.True(File.Exists(Path.Combine(options.DataDir, "agent-svid.pem")));

        using (var restarted = NewNode(options, tpm))
        {
            await restarted.StartAsync(Ct);   // a valid SVID is on disk, but without its key: attest again
            Assert.Equal(3, server.Attestations);
            Assert.Equal(firstId, restarted.AgentId!.ToString());
        }
        Assert.Equal("", await TpmTools.LoadedHandlesAsync(tpm, Ct));
    }

    [Fact]
    public async Task A_copy_of_the_data_dir_with_another_tpm_holds_no_key_and_cannot_be_the_node()
    {
        await using var tpm = await Swtpm.StartAsync(null, Ct);
        await using var otherTpm = await Swtpm.StartAsync(null, Ct);
        await using var server = await TpmStandInServer.StartAsync();
        using var dir = new TempDir();
        var options = server.Options(dir.Combine("agent"));
        string nodeId;
        using (var node = NewNode(options, tpm))
        {
            await node.StartAsync(Ct);
            nodeId = node.AgentId!.ToString();
        }

        // The attacker copies the whole data dir to a machine with another TPM.
        var copied = dir.Combine("copy");
        Directory.CreateDirectory(copied);
        foreach (var f in Directory.GetFiles(options.DataDir))
        {
            File.Copy(f, Path.Combine(copied, Path.GetFileName(f)));
        }
        AssertNoKeyIn(copied);
        // The stored SVID certificate has no key to go with it: it cannot open a TLS connection as the node.
        Assert.Throws<CryptographicException>(() => X509Certificate2.CreateFromPemFile(Path.Combine(copied, "agent-svid.pem"), Path.Combine(copied, "agent-svid.pem")));
        using var copy = NewNode(server.Options(copied), otherTpm);
        await copy.StartAsync(Ct);

        Assert.NotEqual(nodeId, copy.AgentId!.ToString());   // the other TPM's EK: another node, not this one
        Assert.Equal(2, server.Attestations);

        // Replaying the first TPM's evidence from the copy does not help: the challenge for it cannot be activated there.
        server.ReplayEvidence = server.LastEvidence(nodeId);
        using var replay = NewNode(server.Options(copied), otherTpm);
        var e = await Assert.ThrowsAsync<Writ.Protocol.StartupRefusedException>(() => replay.StartAsync(Ct));
        Assert.Contains("TPM2_ActivateCredential failed", e.Message, StringComparison.Ordinal);
    }

    private static NodeIdentity NewNode(AgentOptions options, Swtpm tpm) =>
        new(options, new AgentState(NodeIdentity.LoadBootstrapBundle(options)), TimeProvider.System, NullLogger.Instance)
        {
            Attestor = new TpmAttestorClient(TpmAddress.Tcp("127.0.0.1", tpm.Port), null),
        };

    private static void AssertNoKeyIn(string dir)
    {
        Assert.False(File.Exists(Path.Combine(dir, "agent-svid.key")));
        foreach (var f in Directory.GetFiles(dir))
        {
            Assert.DoesNotContain("PRIVATE KEY", File.ReadAllText(f), StringComparison.Ordinal);
        }
    }
}

/// <summary>
/// A stand-in for the server's agent API over TLS as the server's tpm attestor would answer AttestAgent (MakeCredential by
/// tpm2_makecredential; the secret and the CSR signature checked), issuing spiffe://example.org/writ/agent/tpm/&lt;SHA-256
/// of the EK public&gt;. Not the server's verifier (that is Writ.Tpm.Verification's job): enough to drive the agent.
/// </summary>
internal sealed class TpmStandInServer : AgentService.AgentServiceBase, IAsyncDisposable
{
    private static readonly TrustDomain Td = TrustDomain.Parse("example.org");
    private readonly ECDsa _caKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
    private readonly X509Certificate2 _ca;
    private readonly Dictionary<string, TpmEvidence> _evidence = [];
    private readonly TempDir _dir = new();
    private WebApplication? _app;
    private int _attestations;
    private int _renewals;

    private TpmStandInServer()
    {
        _ca = X509Authorities.CreateSelfSignedCa(Td, _caKey, DateTimeOffset.UtcNow.AddHours(-1), DateTimeOffset.UtcNow.AddDays(1));
        File.WriteAllText(_dir.Combine("bundle.pem"), _ca.ExportCertificatePem());
    }

    public int Attestations => Volatile.Read(ref _attestations);

    public int Renewals => Volatile.Read(ref _renewals);

    public string Address { get; private set; } = "";

    /// <summary>When set, the stand-in answers as if the agent had sent this evidence (an attacker replaying another node's).</summary>
    public TpmEvidence? ReplayEvidence { get; set; }

    public TpmEvidence LastEvidence(string agentId)
    {
        lock (_evidence)
        {
            return _evidence[agentId];
        }
    }

    public AgentOptions Options(string dataDir) => new()
    {
        ServerAddress = Address, TrustDomain = Td, DataDir = dataDir, SocketPath = Path.Combine(dataDir, "w.sock"),
        TrustBundlePath = _dir.Combine("bundle.pem"), NodeAttestor = "tpm",
    };

    public static async Task<TpmStandInServer> StartAsync()
    {
        var server = new TpmStandInServer();
        var serverKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var leaf = X509SvidMinter.SignLeaf(server._ca, server._caKey, ServerChannel.ServerId(Td), new PublicKey(serverKey), DateTimeOffset.UtcNow.AddMinutes(-1), TimeSpan.FromHours(1));
        using var withKey = leaf.CopyWithPrivateKey(serverKey);
        var tlsCert = X509CertificateLoader.LoadPkcs12(withKey.Export(X509ContentType.Pkcs12), null);
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.Services.AddGrpc();
        builder.Services.AddSingleton(server);
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0, lo =>
        {
            lo.Protocols = HttpProtocols.Http2;
            lo.UseHttps(new HttpsConnectionAdapterOptions
            {
                ServerCertificate = tlsCert,
                ClientCertificateMode = ClientCertificateMode.AllowCertificate,
                ClientCertificateValidation = (_, _, _) => true,
            });
        }));
        server._app = builder.Build();
        server._app.MapGrpcService<TpmStandInServer>();
        await server._app.StartAsync(TestContext.Current.CancellationToken);
        server.Address = new Uri(server._app.Urls.First()).Authority;
        return server;
    }

    public override async Task AttestAgent(IAsyncStreamReader<AttestAgentRequest> requestStream, IServerStreamWriter<AttestAgentResponse> responseStream, ServerCallContext context)
    {
        if (!await requestStream.MoveNext() || requestStream.Current.Params is not { AttestationType: "tpm" } p)
        {
            throw new RpcException(new Status(StatusCode.InvalidArgument, "expected tpm params"));
        }
        var evidence = ReplayEvidence ?? TpmEvidence.Parser.ParseFrom(p.Payload);
        var secret = RandomNumberGenerator.GetBytes(32);
        var nonce = RandomNumberGenerator.GetBytes(32);
        var (blob, encrypted) = await TpmTools.MakeCredentialAsync(evidence.EkPublic.ToByteArray(), evidence.AkPublic.ToByteArray(), secret, context.CancellationToken);
        var challenge = new TpmChallenge
        {
            CredentialBlob = ByteString.CopyFrom(blob), EncryptedSecret = ByteString.CopyFrom(encrypted), Nonce = ByteString.CopyFrom(nonce),
            Pcrs = new PcrSelection { Bank = "sha256", Indices = { 0, 7, 14 } },
        };
        await responseStream.WriteAsync(new AttestAgentResponse { Challenge = challenge.ToByteString() });
        if (!await requestStream.MoveNext())
        {
            throw new RpcException(new Status(StatusCode.InvalidArgument, "no answer"));
        }
        var answer = TpmAnswer.Parser.ParseFrom(requestStream.Current.ChallengeResponse);
        using var agentKey = TpmTools.EcdsaOf(evidence.AgentKeyPublic.ToByteArray());
        var binding = SHA256.HashData([.. "writ-tpm-agent-key"u8, .. nonce, .. SHA256.HashData(p.Csr.Span)]);
        if (!answer.ActivatedSecret.Span.SequenceEqual(secret) || !agentKey.VerifyHash(binding, TpmTools.EcdsaP1363(answer.CsrSignature.ToByteArray())))
        {
            throw new RpcException(new Status(StatusCode.PermissionDenied, "tpm evidence refused"));
        }
        var id = SpiffeId.FromSegments(Td, "writ", "agent", "tpm", Convert.ToHexStringLower(SHA256.HashData(evidence.EkPublic.Span)));
        var csr = CertificateRequest.LoadSigningRequest(p.Csr.ToByteArray(), HashAlgorithmName.SHA256);
        using var svid = X509SvidMinter.SignLeaf(_ca, _caKey, id, csr.PublicKey, DateTimeOffset.UtcNow.AddMinutes(-1), TimeSpan.FromHours(1));
        lock (_evidence)
        {
            _evidence[id.ToString()] = evidence;
        }
        Interlocked.Increment(ref _attestations);
        await responseStream.WriteAsync(new AttestAgentResponse { Result = new AttestResponse { SpiffeId = id.ToString(), SvidChain = { ByteString.CopyFrom(svid.RawData) } } });
    }

    public override Task<AttestResponse> RenewAgent(RenewAgentRequest request, ServerCallContext context)
    {
        Interlocked.Increment(ref _renewals);
        throw new RpcException(new Status(StatusCode.FailedPrecondition, "a tpm agent renews by attesting again"));
    }

    public async ValueTask DisposeAsync()
    {
        if (_app is not null)
        {
            await _app.DisposeAsync();
        }
        _caKey.Dispose();
        _ca.Dispose();
        _dir.Dispose();
    }
}
