using System.Diagnostics;
using System.Net;
using System.Security.Cryptography;
using Google.Protobuf;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Writ.Agent;
using Writ.Agent.NodeAttestation;
using Writ.Agent.Sync;
using Writ.Cli.Admin;
using Writ.IntegrationTests.Harness;
using Writ.Protocol.Admin;
using Writ.Protocol.Agent;
using Writ.Protocol.Errors;
using Writ.Server.Ca;
using Writ.Server.Configuration;
using Writ.Server.Hosting;
using Writ.Server.NodeAttestation;
using Writ.Spiffe;
using Writ.Spiffe.X509;
using Writ.Tests.Shared;

namespace Writ.IntegrationTests;

/// <summary>
/// Continuous node attestation end to end (issue #14 item 4): a real server (TLS agent API, admin socket, the node
/// recheck loop) and the agent's real node identity and Sync client in this process, attested by the continuous test
/// attestor. The server's rechecks travel over Sync, the agent answers them with AnswerNodeRecheck; flipping the node's
/// posture makes it drift. Real time (a 2 s interval); waits are conditions with deadlines.
/// </summary>
public sealed class NodePostureEndToEndTests : IAsyncLifetime
{
    private static readonly TrustDomain Td = TrustDomain.Parse("example.org");
    private readonly TempDir _dir = new();
    private readonly byte[] _key = RandomNumberGenerator.GetBytes(32);
    private readonly ContinuousTestAttestor _attestor;
    private readonly CancellationTokenSource _stop = new();
    private WritServerHost _server = null!;
    private ServerOptions _options = null!;
    private Task? _sync;

    public NodePostureEndToEndTests()
    {
        _attestor = new ContinuousTestAttestor(_key) { RecheckInterval = TimeSpan.FromSeconds(2), RecheckGrace = TimeSpan.FromSeconds(3) };
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask InitializeAsync()
    {
        _options = new ServerOptions
        {
            TrustDomain = Td, DataDir = _dir["server"], Bind = new IPEndPoint(IPAddress.Loopback, 0), AdminSocket = _dir["admin.sock"],
            StoreKind = "sqlite", StoreConnection = Path.Combine(_dir["server"], "writ.db"), KeyManager = "memory", Ca = new CaOptions(),
            ShutdownGrace = TimeSpan.FromSeconds(5),
        };
        _server = await WritServerHost.StartAsync(_options, TimeProvider.System, b => b.SetMinimumLevel(LogLevel.Warning), Ct);
        var context = _server.Server;
        context.NodeAttestation = new NodeAttestationService(context, new NodeAttestorRegistry([new JoinTokenNodeAttestor(context.Store.JoinTokens), _attestor]),
            NullLogger.Instance);
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        if (_sync is not null)
            await Task.WhenAny(_sync, Task.Delay(TimeSpan.FromSeconds(10), CancellationToken.None));
        await _server.DisposeAsync();
        _stop.Dispose();
        _dir.Dispose();
    }

    /// <summary>The agent side: its node identity (attested by <paramref name="attestor"/>) and Sync, answering rechecks.</summary>
    private async Task<(NodeIdentity Node, AgentState State)> StartAgentAsync(INodeAttestorClient attestor)
    {
        var bundle = await Admin(s => s.GetBundleAsync(new GetBundleRequest(), cancellationToken: Ct));
        await File.WriteAllTextAsync(_dir["bundle.pem"], bundle.Pem, Ct);
        var options = new AgentOptions
        {
            ServerAddress = _server.AgentApiAddress, TrustDomain = Td, DataDir = _dir["agent"], SocketPath = _dir["workload.sock"], TrustBundlePath = _dir["bundle.pem"],
        };
        var state = new AgentState(NodeIdentity.LoadBootstrapBundle(options));
        var node = new NodeIdentity(options, state, TimeProvider.System, NullLogger.Instance) { Attestor = attestor };
        await node.StartAsync(Ct);
        var sync = new SyncClient(node, state, options, TimeProvider.System, NullLogger.Instance);
        _sync = Task.Run(() => sync.RunAsync(_stop.Token), CancellationToken.None);
        return (node, state);
    }

    private async Task<T> Admin<T>(Func<AdminService.AdminServiceClient, AsyncUnaryCall<T>> call)
    {
        using var admin = new AdminConnection(_options.AdminSocket);
        return await admin.CallAsync(call);
    }

    private Task<Writ.Protocol.Admin.Agent> AgentAsync(string id) => Admin(s => s.GetAgentAsync(new AgentIdRequest { SpiffeId = id }, cancellationToken: Ct));

    private static async Task WaitForAsync(Func<Task<bool>> condition, string what)
    {
        var deadline = Stopwatch.StartNew();
        while (!await condition())
        {
            Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(30), $"timed out waiting for {what}");
            await Task.Delay(50, Ct);
        }
    }

    /// <summary>An entry parented to the agent and one X.509-SVID issued for it through the agent (as its SVID cache does).</summary>
    private async Task<string> IssueWorkloadSvidAsync(NodeIdentity node)
    {
        var entry = new Entry { SpiffeId = "spiffe://example.org/web", ParentId = node.AgentId!.ToString() };
        entry.Selectors.Add(new Writ.Protocol.Agent.Selector { Type = "unix", Value = "uid:1000" });
        var req = new CreateEntriesRequest();
        req.Entries.Add(entry);
        var created = (await Admin(s => s.CreateEntriesAsync(req, cancellationToken: Ct))).Entries[0];
        var r = await SignAsync(node, created.Id);
        using var leaf = System.Security.Cryptography.X509Certificates.X509CertificateLoader.LoadCertificate(Assert.Single(r.Svids).CertChain[0].ToByteArray());
        return leaf.SerialNumber;
    }

    private static async Task<SignX509SvidsResponse> SignAsync(NodeIdentity node, string entryId)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var evidence = new AttestedWorkload { InstanceId = "4242:1" };
        evidence.Selectors.Add(new Writ.Protocol.Agent.Selector { Type = "unix", Value = "uid:1000" });
        var request = new SignX509SvidsRequest();
        request.Csrs.Add(new SvidCsr { EntryId = entryId, Csr = ByteString.CopyFrom(Csr.Create(key)), Evidence = evidence });
        return await node.Client.SignX509SvidsAsync(request, cancellationToken: Ct);
    }

    [Fact]
    public async Task Drift_with_revoke_pushes_the_revocation_of_a_workload_svid_to_its_agent()
    {
        _attestor.DriftAction = DriftAction.Revoke;
        var client = new Client(_key, "n1");
        var (node, state) = await StartAgentAsync(client);
        var agentId = node.AgentId!.ToString();
        var serial = await IssueWorkloadSvidAsync(node);
        await WaitForAsync(() => Task.FromResult(client.Answered > 0), "a first recheck answered over Sync");
        var before = await AgentAsync(agentId);
        Assert.Equal("active", before.Status);

        client.Posture = "tampered";
        await WaitForAsync(() => Task.FromResult(state.Revocations.IsSerialRevoked(serial)), "the workload SVID's revocation pushed to the agent");
        var pushed = Stopwatch.GetTimestamp();
        var agent = await AgentAsync(agentId);
        Assert.Equal("drifted", agent.Status);
        Assert.StartsWith(ContinuousTestAttestor.PostureChanged, agent.StatusReason, StringComparison.Ordinal);
        Assert.True(state.Revocations.IsSerialRevoked(before.SerialNumber), "the agent's own SVID is revoked too");
        // From the failing answer leaving the agent to the revocations on the agent: the drift is handled in the answer call.
        var latency = Stopwatch.GetElapsedTime(client.TamperedAnswerAt, pushed);
        Assert.True(latency < TimeSpan.FromSeconds(30), $"{latency}");
        TestContext.Current.SendDiagnosticMessage($"failing answer → revocation on the agent: {latency.TotalMilliseconds:F0} ms");
    }

    [Fact]
    public async Task Quarantine_refuses_issuance_keeps_sync_and_readmit_brings_the_node_back()
    {
        var client = new Client(_key, "n1");
        var (node, _) = await StartAgentAsync(client);
        var agentId = node.AgentId!.ToString();
        var serial = await IssueWorkloadSvidAsync(node);
        var entryId = (await Admin(s => s.ListEntriesAsync(new ListEntriesRequest(), cancellationToken: Ct))).Entries[0].Id;

        var notDrifted = await Assert.ThrowsAsync<Writ.Cli.CommandLine.CommandFailedException>(() =>
            Admin(s => s.ReadmitAgentAsync(new AgentIdRequest { SpiffeId = agentId }, cancellationToken: Ct)));
        Assert.Equal(NodePostureCodes.NotDrifted, notDrifted.Code);

        client.Posture = "tampered";
        await WaitForAsync(async () => (await AgentAsync(agentId)).Status == "drifted", "the node to drift");

        var sign = await Assert.ThrowsAsync<RpcException>(() => SignAsync(node, entryId));
        Assert.Equal(StatusCode.PermissionDenied, sign.StatusCode);
        Assert.Equal(NodePostureCodes.AgentDrifted, WritStatus.Read(sign).Code);
        var jwt = await Assert.ThrowsAsync<RpcException>(async () => await node.Client.MintJwtSvidAsync(
            new Writ.Protocol.Agent.MintJwtSvidRequest { EntryId = entryId, Audience = { "https://api.example.org" }, Bearer = true }, cancellationToken: Ct));
        Assert.Equal(NodePostureCodes.AgentDrifted, WritStatus.Read(jwt).Code);
        using var agentKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var renew = await Assert.ThrowsAsync<RpcException>(async () => await node.Client.RenewAgentAsync(
            new RenewAgentRequest { Csr = ByteString.CopyFrom(Csr.Create(agentKey)) }, cancellationToken: Ct));
        Assert.Equal(NodePostureCodes.AgentDrifted, WritStatus.Read(renew).Code);
        Assert.False(_server.Server.Revocations.IsSerialRevoked(serial), "quarantine revokes nothing");

        // writ agent show prints the status and the drift; readmit brings it back and rechecks it at once over Sync.
        var show = await Proc.WritAsync("agent", "show", agentId, "--admin-socket", _options.AdminSocket);
        Assert.True(show.ExitCode == 0, show.ToString());
        Assert.Contains("Status:       drifted", show.Stdout, StringComparison.Ordinal);
        Assert.Contains($"Drift:        {ContinuousTestAttestor.PostureChanged}", show.Stdout, StringComparison.Ordinal);

        client.Posture = "good";
        var answered = client.Answered;
        var readmit = await Proc.WritAsync("agent", "readmit", agentId, "--admin-socket", _options.AdminSocket, "--output", "json");
        Assert.True(readmit.ExitCode == 0, readmit.ToString());
        Assert.Contains("\"status\": \"active\"", readmit.Stdout, StringComparison.Ordinal);
        await WaitForAsync(() => Task.FromResult(client.Answered > answered), "the recheck right after the readmit");
        Assert.Equal("active", (await AgentAsync(agentId)).Status);
        Assert.Single((await SignAsync(node, entryId)).Svids);

        var again = await Proc.WritAsync("agent", "readmit", agentId, "--admin-socket", _options.AdminSocket);
        Assert.NotEqual(0, again.ExitCode);
        Assert.Contains(NodePostureCodes.NotDrifted, again.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", again.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_agent_whose_attestor_answers_no_rechecks_drifts_when_the_grace_runs_out()
    {
        var client = new NonAnsweringClient(new Client(_key, "n1"));
        var (node, _) = await StartAgentAsync(client);
        var agentId = node.AgentId!.ToString();
        await WaitForAsync(async () => (await AgentAsync(agentId)).Status == "drifted", "the node to drift for missing answers");
        Assert.StartsWith(NodePostureCodes.RecheckMissing, (await AgentAsync(agentId)).StatusReason, StringComparison.Ordinal);
    }

    /// <summary>The agent side of the continuous test attestor; <see cref="Posture"/> is what the node reports now.</summary>
    private sealed class Client(byte[] key, string name) : IContinuousNodeAttestorClient
    {
        private byte[]? _evidence;
        private int _answered;

        public volatile string Posture = "good";
        public long TamperedAnswerAt;
        public int Answered => Volatile.Read(ref _answered);

        public string Type => ContinuousTestAttestor.TypeName;
        public string Description => "test continuous evidence";
        public string? SingleUseFingerprint => null;

        public Task<ReadOnlyMemory<byte>> EvidenceAsync(CancellationToken ct) => Task.FromResult<ReadOnlyMemory<byte>>(_evidence = ContinuousTestAttestor.Evidence(key, name, Posture));

        public Task<ReadOnlyMemory<byte>> AnswerAsync(ReadOnlyMemory<byte> challenge, CancellationToken ct) =>
            Task.FromResult<ReadOnlyMemory<byte>>(ContinuousTestAttestor.ChallengeAnswer(key, challenge, _evidence!));

        public Task<ReadOnlyMemory<byte>> AnswerRecheckAsync(ReadOnlyMemory<byte> payload, CancellationToken ct)
        {
            var posture = Posture;
            if (posture != "good" && TamperedAnswerAt == 0)
                TamperedAnswerAt = Stopwatch.GetTimestamp();
            Interlocked.Increment(ref _answered);
            return Task.FromResult<ReadOnlyMemory<byte>>(ContinuousTestAttestor.RecheckAnswer(key, payload, posture));
        }
    }

    /// <summary>Attests like <see cref="Client"/> but is not continuous: the agent answers no recheck.</summary>
    private sealed class NonAnsweringClient(Client inner) : INodeAttestorClient
    {
        public string Type => inner.Type;
        public string Description => inner.Description;
        public string? SingleUseFingerprint => null;
        public Task<ReadOnlyMemory<byte>> EvidenceAsync(CancellationToken ct) => inner.EvidenceAsync(ct);
        public Task<ReadOnlyMemory<byte>> AnswerAsync(ReadOnlyMemory<byte> challenge, CancellationToken ct) => inner.AnswerAsync(challenge, ct);
    }
}
