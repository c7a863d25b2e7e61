using Microsoft.Extensions.Logging;
using Writ.Server.Ca;
using Writ.Server.Configuration;
using Writ.Server.Issuance;
using Writ.Server.NodeAttestation;
using Writ.Server.Policy;
using Writ.Server.Registration;
using Writ.Server.Revocation;
using Writ.Server.Storage;
using Writ.Protocol;

namespace Writ.Server.Hosting;

/// <summary>The server's parts, built once at start-up and shared by the agent and admin APIs.</summary>
public sealed class ServerContext
{
    public ServerContext(ServerOptions options, IWritStore store, WritCa ca, TimeProvider time, ILoggerFactory logs)
    {
        Options = options;
        Store = store;
        Ca = ca;
        Time = time;
        Logs = logs;
        Issuer = new(ca, options.DefaultX509Ttl, options.DefaultJwtTtl, options.MaxTtl);
        Validator = new(options.TrustDomain, options.MaxTtl, time);
        Policy = new IssuancePolicyEngine(store.Policies, PolicyChanged, time, logs.CreateLogger<IssuancePolicyEngine>());
        Revocations = new RevocationService(store, ca, time, logs.CreateLogger<RevocationService>());
        LedgerWriter = new Ledger.LedgerWriter(store);
        Limits = new IssuanceLimits(options.Ledger, time);
        Checkpoints = new Ledger.LedgerCheckpointer(options.DataDir, store.Ledger, time, logs.CreateLogger<Ledger.LedgerCheckpointer>());
        Oidc = new Oidc.OidcTokenValidator(time, logs.CreateLogger<Oidc.OidcTokenValidator>());
        NodeAttestation = new NodeAttestationService(this, NodeAttestationService.ConfiguredRegistry(store, options, Oidc, time, logs), logs.CreateLogger<NodeAttestationService>());
        Posture = new NodePostureService(this, logs.CreateLogger<NodePostureService>());
        CiRefusals = new Ci.CiRefusals(this, logs.CreateLogger<Ci.CiRefusals>());
        SyncFeed = new Sync.SyncFeed(store, time, logs.CreateLogger<Sync.SyncFeed>(), Stopping, Changes);
        _announcements = logs.CreateLogger<Sync.SyncFeed>();
        FederatedBundles = new Federation.FederatedBundleCache(store, Changes);
        BundleRefresher = new Federation.BundleRefresher(this, logs.CreateLogger<Federation.BundleRefresher>());
    }

    /// <summary>The shared change feed of the agent sync streams (<c>sync.fanout shared</c>, issue #16).</summary>
    public Sync.SyncFeed SyncFeed { get; }

    private readonly ILogger _announcements;
    private IDisposable? _listening;

    /// <summary>
    /// Another server announced a bundle change: the host reloads the bundle from the store (lane A wires
    /// <c>WritCa.ReloadBundleAsync</c> here), which raises <see cref="Changes"/> when it moved.
    /// </summary>
    public event Action? BundleChangedElsewhere;

    /// <summary>
    /// A change the entry revision does not carry, here and on every other server on the store (issue #16): wakes this
    /// server's sync streams at once and tells the others (PostgreSQL NOTIFY). Best effort across servers: their poll
    /// (policy, bundle) or next wake (nodes) picks a lost one up.
    /// </summary>
    public void Announce(string kind)
    {
        switch (kind)
        {
            case Sync.ChangeKinds.Policy:
                PolicyChanged.Raise();
                break;
            case Sync.ChangeKinds.Crl:
                break;   // this server's streams carry its own CRLs already
            default:
                Changes.Raise();
                break;
        }
        _ = PublishAsync(kind);
    }

    private async Task PublishAsync(string kind)
    {
        try
        {
            await Store.Signals.PublishAsync(kind, Stopping).ConfigureAwait(false);
        }
        catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException)
        {
            // Stopping: the other servers' streams re-check on their next wake.
        }
    }

    /// <summary>Starts listening for other servers' announcements (the host, once at start-up).</summary>
    public void ListenForAnnouncements()
    {
        _listening ??= Store.Signals.Subscribe(kind =>
        {
            ServerLog.ChangeAnnounced(_announcements, kind);
            switch (kind)
            {
                case Sync.ChangeKinds.Policy:
                    PolicyChanged.Raise();
                    break;
                case Sync.ChangeKinds.Bundle:
                    BundleChangedElsewhere?.Invoke();
                    Changes.Raise();
                    break;
                case Sync.ChangeKinds.Crl:
                    OtherServersCrls.Raise();   // the revocation watch reads them, then wakes the streams
                    break;
                default:
                    Changes.Raise();
                    break;
            }
        });
    }

    /// <summary>The server's meter and activity source (docs/telemetry.md); the host sets it from its meter factory.</summary>
    public Telemetry.WritServerMetrics Metrics
    {
        get => _metrics;
        init
        {
            _metrics = value;
            Revocations.Metrics = value;
        }
    }

    private readonly Telemetry.WritServerMetrics _metrics = Telemetry.WritServerMetrics.Unhosted;

    public ServerOptions Options { get; }
    public IWritStore Store { get; }
    public WritCa Ca { get; }
    public TimeProvider Time { get; }
    public ILoggerFactory Logs { get; }
    public Issuer Issuer { get; }
    public EntryValidator Validator { get; }

    /// <summary>Raised on changes the entry store does not version: bundle rotation, agent ban or eviction.</summary>
    public ChangeSignal Changes { get; } = new();

    /// <summary>This process's boot nonce, written at start and checked by every heartbeat (issue #16: duplicate server ids).</summary>
    public string BootNonce { get; init; } = "";

    /// <summary>Raised when another server announced new CRLs in the store (issue #16).</summary>
    public ChangeSignal OtherServersCrls { get; } = new();

    /// <summary>Raised after this server stored a new policy version, so the issuance policy reloads at once.</summary>
    public ChangeSignal PolicyChanged { get; } = new();

    /// <summary>The active issuance policy set (reloads on <see cref="PolicyChanged"/> and polls the store); started by the host.</summary>
    public IssuancePolicyEngine Policy { get; }

    /// <summary>Revocation: what to revoke, the deny list, the CRL (issue #6).</summary>
    public RevocationService Revocations { get; }

    /// <summary>The one ledger writer: records group-committed (concurrent issuances share one ledger transaction).</summary>
    public Ledger.LedgerWriter LedgerWriter { get; }

    /// <summary>The flood limit of <c>workload.refused</c> records, per reporting agent (<see cref="Api.AgentApi.ReportWorkloadRefused"/>).</summary>
    public Ledger.RefusalWindows WorkloadRefusals { get; } = new(WorkloadRefusalsPerAgentPerMinute);

    /// <summary>The flood limit of <c>access.*</c> records, per reporting agent (<see cref="Api.AgentApi.ReportAccess"/>).</summary>
    public Ledger.AccessWindows AccessRecords { get; } = new(AccessRecordsPerAgentPerMinute);

    /// <summary>How many access records (decisions and summaries) per agent and minute are written; the rest are counted into an <c>access.suppressed</c> record.</summary>
    public const int AccessRecordsPerAgentPerMinute = 600;

    /// <summary>How many workload refusals per agent and minute are recorded one by one; the rest are counted into the next record.</summary>
    public const int WorkloadRefusalsPerAgentPerMinute = 60;

    /// <summary>Rate limits on issuance and on recorded refusals (issue #12 item 7).</summary>
    public IssuanceLimits Limits { get; }

    /// <summary>Signed ledger checkpoints kept in the data dir (issue #12 item 9); initialized and run by the host.</summary>
    public Ledger.LedgerCheckpointer Checkpoints { get; }

    /// <summary>Node attestation (the enabled attestors, the decision, the single-use burn) and agent SVID renewal.</summary>
    public NodeAttestationService NodeAttestation { get; internal set; }

    /// <summary>Continuous node attestation: the recheck schedule, answers, drift (its loop is started by the host).</summary>
    public NodePostureService Posture { get; }

    /// <summary>The foreign trust domains' bundles sent to agents (issue #16); loaded by the host before the first call.</summary>
    public Federation.FederatedBundleCache FederatedBundles { get; }

    /// <summary>Fetches foreign bundles from their bundle endpoints (its loop is started by the host).</summary>
    public Federation.BundleRefresher BundleRefresher { get; }

    /// <summary>Refused CI logins and calls: logged and recorded within a flood limit (the CI API and the agent API, which refuses CI SVIDs).</summary>
    public Ci.CiRefusals CiRefusals { get; }

    /// <summary>
    /// The one validator of external OIDC tokens (CI job tokens, k8s_psat tokens validated offline): one key cache and
    /// one refresh limit per issuer, whoever asks.
    /// </summary>
    public Oidc.IOidcTokenValidator Oidc { get; }

    private readonly CancellationTokenSource _stopping = new();

    /// <summary>
    /// Cancelled when the server begins to stop: long-lived calls (agent sync streams) end at once instead of holding
    /// the shutdown for the host's whole timeout, and nothing is signed any more.
    /// </summary>
    public CancellationToken Stopping => _stopping.Token;

    /// <summary>Ends the sync streams and the background loops that sign (CRL) before the listeners close.</summary>
    public void BeginStop()
    {
        _listening?.Dispose();
        _stopping.Cancel();
        Revocations.Stop();
    }
}
