using System.Net;
using System.Security.Cryptography;
using Microsoft.Extensions.Logging.Abstractions;
using Writ.Server.Ca;
using Writ.Server.Configuration;
using Writ.Server.Hosting;
using Writ.Server.Issuance;
using Writ.Server.Keys;
using Writ.Server.Policy;
using Writ.Server.Storage;
using Writ.Server.Tests.Ca;
using Writ.Spiffe;
using Writ.Spiffe.X509;
using Writ.Protocol.Evidence;

namespace Writ.Server.Tests.Policy;

/// <summary>
/// The issuance pipeline in process: a real SQLite store, a real CA with a memory key manager, the policy engine, and
/// one attested agent. Tests push policy versions straight into the store and call the pipeline as the agent API does.
/// </summary>
internal sealed class PipelineHarness : IAsyncDisposable
{
    public const string AgentId = "spiffe://example.org/writ/agent/join_token/t1";

    private PipelineHarness(CaHarness ca, FlakyLedgerStore store, ServerContext server, IssuancePipeline pipeline, AttestedNode node)
    {
        Ca = ca;
        Store = store;
        Server = server;
        Pipeline = pipeline;
        Node = node;
    }

    public CaHarness Ca { get; }
    public FlakyLedgerStore Store { get; }
    public ServerContext Server { get; }
    public IssuancePipeline Pipeline { get; }
    public AttestedNode Node { get; }

    public static CancellationToken Ct => TestContext.Current.CancellationToken;

    public static async Task<PipelineHarness> CreateAsync(LedgerOptions? ledger = null)
    {
        var ca = await CaHarness.CreateAsync();
        var store = new FlakyLedgerStore(ca.Store);
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
            Ledger = ledger ?? new LedgerOptions(),
        };
        var writCa = await ca.StartCaAsync(options.Ca, new MemoryKeyManager());
        var server = new ServerContext(options, store, writCa, ca.Time, NullLoggerFactory.Instance);
        await server.Policy.RefreshAsync(Ct);
        var node = new AttestedNode
        {
            SpiffeId = AgentId,
            AttestationType = "join_token",
            SerialNumber = "01",
            ExpiresAt = ca.Time.GetUtcNow().AddHours(1),
            Selectors = [new Selector("join_token", "t1")],
        };
        await store.Nodes.CreateAsync(node, Ct);
        return new PipelineHarness(ca, store, server, new IssuancePipeline(server, NullLogger.Instance), node);
    }

    public async Task<RegistrationEntry> EntryAsync(string spiffeId, params string[] selectors)
    {
        var created = await Store.Entries.CreateAsync([new RegistrationEntry
        {
            SpiffeId = spiffeId,
            ParentId = AgentId,
            Selectors = [.. selectors.Select(s => Selector.TryParse(s, out var sel, out var e) ? sel : throw new ArgumentException(e))],
        }], Ct);
        return created[0];
    }

    /// <summary>Stores a new policy version (as `writ policy push` does) and raises the change signal.</summary>
    public async Task<long> PushAsync(params (string Name, string Text)[] files)
    {
        var v = await Store.Policies.PushAsync(new StoredPolicyVersion
        {
            Files = [.. files.Select(f => new PolicyFileRecord(f.Name, f.Text))],
            Sha256 = WritPolicyCompiler.Sha256([.. files.Select(f => new PolicyFileRecord(f.Name, f.Text))]),
            Author = "uid:0",
        }, null, [], Ct);
        Server.PolicyChanged.Raise();
        return v.Version;
    }

    public static WorkloadEvidence Evidence(string instanceId, params string[] selectors) =>
        WorkloadEvidence.TryCreate(selectors.Select(s => { var i = s.IndexOf(':', StringComparison.Ordinal); return (s[..i], s[(i + 1)..]); }),
            new Dictionary<string, string> { ["unix.pid"] = instanceId.Split(':')[0] }, instanceId, out var ev, out var error)
            ? ev! : throw new ArgumentException(error);

    public static byte[] NewCsr(out ECDsa key)
    {
        key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        return Csr.Create(key);
    }

    public Task<X509Batch> SignAsync(RegistrationEntry entry, WorkloadEvidence? evidence)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        return Pipeline.SignX509Async(Node, [new X509SvidRequest(entry.Id, Csr.Create(key), evidence)], Ct);
    }

    public async ValueTask DisposeAsync()
    {
        await Server.Policy.DisposeAsync();
        await Ca.DisposeAsync();
    }
}

/// <summary>The real store, with a ledger that can be made to fail.</summary>
internal sealed class FlakyLedgerStore(IWritStore inner) : IWritStore
{
    public bool FailLedger { get; set; }

    public string Kind => inner.Kind;
    public IEntryStore Entries => inner.Entries;
    public INodeStore Nodes => inner.Nodes;
    public IJoinTokenStore JoinTokens => inner.JoinTokens;
    public IBundleStore Bundles => inner.Bundles;
    public ICaJournalStore CaJournal => inner.CaJournal;
    public IMetadataStore Metadata => inner.Metadata;
    public ITpmReferenceSetStore TpmReferenceSets => inner.TpmReferenceSets;
    public ICiSessionStore CiSessions => inner.CiSessions;
    public IFederationStore Federations => inner.Federations;
    public IPooledSvidStore PooledSvids => inner.PooledSvids;
    public ILedgerStore Ledger => FailLedger ? new FailingLedger(inner.Ledger) : inner.Ledger;
    public IPolicyStore Policies => inner.Policies;
    public IRevocationStore Revocations => inner.Revocations;

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;

    private sealed class FailingLedger(ILedgerStore inner) : ILedgerStore
    {
        public Task<IReadOnlyList<LedgerEvent>> AppendAsync(IReadOnlyList<LedgerEvent> events, IReadOnlyList<IssuedCredential> issued, CancellationToken ct) =>
            throw new InvalidOperationException("disk full (test)");
        public Task<IReadOnlyList<LedgerEvent>> ListAsync(long afterSeq, int limit, string? kindPrefix, string? subject, CancellationToken ct) => inner.ListAsync(afterSeq, limit, kindPrefix, subject, ct);
        public Task<IReadOnlyList<LedgerEvent>> ListPageAsync(long afterSeq, int limit, long maxDataBytes, string? kindPrefix, string? subject, CancellationToken ct) =>
            inner.ListPageAsync(afterSeq, limit, maxDataBytes, kindPrefix, subject, ct);
        public Task<LedgerEvent?> GetAsync(long seq, CancellationToken ct) => inner.GetAsync(seq, ct);
        public Task<LedgerEvent?> GetByDecisionAsync(string decisionId, CancellationToken ct) => inner.GetByDecisionAsync(decisionId, ct);
        public Task<IReadOnlyList<LedgerEvent>> RecentDecisionsAsync(int limit, CancellationToken ct) => inner.RecentDecisionsAsync(limit, ct);
        public Task<IReadOnlyList<IssuedCredential>> IssuedAsync(IssuedFilter filter, DateTimeOffset now, CancellationToken ct) => inner.IssuedAsync(filter, now, ct);
        public Task<LedgerHead> HeadAsync(CancellationToken ct) => inner.HeadAsync(ct);
    }
}
