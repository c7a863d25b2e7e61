using System.Net;
using System.Net.Sockets;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Writ.Protocol.Agent;
using Writ.Server.Api;
using Writ.Server.Ca;
using Writ.Server.Configuration;
using Writ.Server.Hosting;
using Writ.Server.Keys;
using Writ.Server.NodeAttestation;
using Writ.Server.Policy;
using Writ.Server.Storage;
using Writ.Server.Tests.Ca;

namespace Writ.Server.Tests.NodeAttestation;

/// <summary>
/// A server's node attestation in process: a real SQLite store (behind <see cref="HookedStore"/>), a real CA, the policy
/// engine and <see cref="NodeAttestationService"/> with the attestors a test registers. <see cref="StartGrpcAsync"/> adds
/// the real agent API (and its error interceptor) on a Unix socket, for end-to-end tests.
/// </summary>
internal sealed class NodeAttestationHarness : IAsyncDisposable
{
    private WebApplication? _app;
    private GrpcChannel? _channel;

    private NodeAttestationHarness(CaHarness ca, HookedStore store, ServerContext server)
    {
        Ca = ca;
        Store = store;
        Server = server;
    }

    public CaHarness Ca { get; }
    public HookedStore Store { get; }
    public ServerContext Server { get; }
    public AgentService.AgentServiceClient? Client { get; private set; }

    public static CancellationToken Ct => TestContext.Current.CancellationToken;

    public static async Task<NodeAttestationHarness> CreateAsync(DateTimeOffset? start = null)
    {
        var ca = await CaHarness.CreateAsync(start);
        var store = new HookedStore(ca.Store);
        var options = new ServerOptions
        {
            TrustDomain = CaHarness.Td,
            DataDir = ca.Dir,
            Bind = new IPEndPoint(IPAddress.Loopback, 0),
            AdminSocket = Path.Combine(ca.Dir, "admin.sock"),
            StoreKind = "sqlite",
            StoreConnection = ca.DbPath,
            KeyManager = "memory",
            Ca = new CaOptions(),
            Ledger = new LedgerOptions(),
        };
        var writCa = await ca.StartCaAsync(options.Ca, new MemoryKeyManager());
        var server = new ServerContext(options, store, writCa, ca.Time, NullLoggerFactory.Instance);
        await server.Policy.RefreshAsync(Ct);
        return new NodeAttestationHarness(ca, store, server);
    }

    /// <summary>Replaces the server's node attestation with these attestors and limits.</summary>
    public NodeAttestationService Use(NodeAttestationLimits limits, params INodeAttestor[] attestors)
    {
        Server.NodeAttestation = new NodeAttestationService(Server, new NodeAttestorRegistry(attestors), NullLogger.Instance, limits);
        return Server.NodeAttestation;
    }

    /// <summary>Stores a new policy version (as `writ policy push` does) and raises the change signal.</summary>
    public async Task PushPolicyAsync(params (string Name, string Text)[] files)
    {
        PolicyFileRecord[] records = [.. files.Select(f => new PolicyFileRecord(f.Name, f.Text))];
        await Store.Policies.PushAsync(new StoredPolicyVersion { Files = records, Sha256 = WritPolicyCompiler.Sha256(records), Author = "uid:0" }, null, [], Ct);
        Server.PolicyChanged.Raise();
    }

    public static (string, string) DefaultPolicy => ("default.cedar", WritPolicyCompiler.DefaultFiles[0].Text);

    /// <summary>Serves the real <see cref="AgentApi"/> behind the real <see cref="ErrorTranslationInterceptor"/> on a Unix socket.</summary>
    public async Task StartGrpcAsync()
    {
        var socket = Path.Combine(Ca.Dir, "agent-api.sock");
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k => k.ListenUnixSocket(socket, l => l.Protocols = HttpProtocols.Http2));
        builder.Services.AddSingleton(Server);
        builder.Services.AddGrpc(o => o.Interceptors.Add<ErrorTranslationInterceptor>());
        _app = builder.Build();
        _app.MapGrpcService<AgentApi>();
        await _app.StartAsync(Ct);
        _channel = GrpcChannel.ForAddress("http://localhost", new GrpcChannelOptions
        {
            HttpHandler = new SocketsHttpHandler
            {
                ConnectCallback = async (_, ct) =>
                {
                    var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                    await s.ConnectAsync(new UnixDomainSocketEndPoint(socket), ct);
                    return new NetworkStream(s, ownsSocket: true);
                },
            },
        });
        Client = new AgentService.AgentServiceClient(_channel);
    }

    public async ValueTask DisposeAsync()
    {
        _channel?.Dispose();
        if (_app is not null)
        {
            await _app.StopAsync(CancellationToken.None);
            await _app.DisposeAsync();
        }
        await Server.Policy.DisposeAsync();
        await Ca.DisposeAsync();
    }
}

/// <summary>The real store, with a hook that runs right before a renewal's conditional write (to land a ban there).</summary>
internal sealed class HookedStore(IWritStore inner) : IWritStore
{
    private readonly HookedNodes _nodes = new(inner.Nodes);

    /// <summary>Runs (once) inside <see cref="INodeStore.TryRenewAsync"/>, before the write.</summary>
    public Func<Task>? BeforeRenewWrite { get => _nodes.BeforeRenewWrite; set => _nodes.BeforeRenewWrite = value; }

    /// <summary>Runs (once) inside <see cref="INodeStore.TryMarkDriftedAsync"/>, before the write (to land an eviction there).</summary>
    public Func<Task>? BeforeDriftWrite { get => _nodes.BeforeDriftWrite; set => _nodes.BeforeDriftWrite = value; }

    public string Kind => inner.Kind;
    public IEntryStore Entries => inner.Entries;
    public INodeStore Nodes => _nodes;
    public IJoinTokenStore JoinTokens => inner.JoinTokens;
    public IBundleStore Bundles => inner.Bundles;
    public ICaJournalStore CaJournal => inner.CaJournal;
    public IMetadataStore Metadata => inner.Metadata;
    public ITpmReferenceSetStore TpmReferenceSets => inner.TpmReferenceSets;
    public ICiSessionStore CiSessions => inner.CiSessions;
    public IFederationStore Federations => inner.Federations;
    public ILedgerStore Ledger => inner.Ledger;
    public IPolicyStore Policies => inner.Policies;
    public IRevocationStore Revocations => inner.Revocations;

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;

    private sealed class HookedNodes(INodeStore nodes) : INodeStore
    {
        public Func<Task>? BeforeRenewWrite { get; set; }
        public Func<Task>? BeforeDriftWrite { get; set; }

        public Task CreateAsync(AttestedNode node, CancellationToken ct, IReadOnlyList<LedgerEvent>? audit = null) => nodes.CreateAsync(node, ct, audit);
        public Task<AttestedNode?> GetAsync(string spiffeId, CancellationToken ct) => nodes.GetAsync(spiffeId, ct);
        public Task<IReadOnlyList<AttestedNode>> ListAsync(CancellationToken ct) => nodes.ListAsync(ct);
        public Task<AttestedNode> UpdateAsync(AttestedNode node, CancellationToken ct, IReadOnlyList<LedgerEvent>? audit = null) => nodes.UpdateAsync(node, ct, audit);
        public Task DeleteAsync(string spiffeId, CancellationToken ct, IReadOnlyList<LedgerEvent>? audit = null) => nodes.DeleteAsync(spiffeId, ct, audit);
        public Task<NodeCreateOutcome> CreateAttestedAsync(AttestedNode node, SingleUseEvidence? burn, DateTimeOffset now, CancellationToken ct) =>
            nodes.CreateAttestedAsync(node, burn, now, ct);

        public Task<bool> TryReattestAsync(AttestedNode node, CancellationToken ct, IReadOnlyList<LedgerEvent>? audit = null) => nodes.TryReattestAsync(node, ct, audit);
        public Task<bool> TryReadmitAsync(string spiffeId, CancellationToken ct, IReadOnlyList<LedgerEvent>? audit = null) => nodes.TryReadmitAsync(spiffeId, ct, audit);
        public Task<bool> TryUpdatePostureAsync(string spiffeId, string expectedSerial, IReadOnlyList<Writ.Protocol.Evidence.Selector> selectors, byte[]? attestorState,
            CancellationToken ct) => nodes.TryUpdatePostureAsync(spiffeId, expectedSerial, selectors, attestorState, ct);

        public async Task<bool> TryMarkDriftedAsync(string spiffeId, string? expectedSerial, string reason, CancellationToken ct, IReadOnlyList<LedgerEvent>? audit = null)
        {
            if (BeforeDriftWrite is { } hook)
            {
                BeforeDriftWrite = null;
                await hook();
            }
            return await nodes.TryMarkDriftedAsync(spiffeId, expectedSerial, reason, ct, audit);
        }

        public async Task<bool> TryRenewAsync(string spiffeId, string expectedSerial, string newSerial, DateTimeOffset expiresAt, CancellationToken ct)
        {
            if (BeforeRenewWrite is { } hook)
            {
                BeforeRenewWrite = null;
                await hook();
            }
            return await nodes.TryRenewAsync(spiffeId, expectedSerial, newSerial, expiresAt, ct);
        }
    }
}
