using Writ.Spiffe;

namespace Writ.Agent;

/// <summary>The validated agent configuration (built by the CLI from flags, environment and a config file).</summary>
public sealed record AgentOptions
{
    /// <summary>The <c>server</c> key as given: HOST:PORT of the server's agent API, or several comma-separated
    /// (<see cref="Sync.ServerAddress.TryParseList"/>); a name may resolve to several servers.</summary>
    public required string ServerAddress { get; init; }
    public required TrustDomain TrustDomain { get; init; }
    public required string DataDir { get; init; }
    /// <summary>The Workload API socket (usable by every local user: identity comes from the kernel).</summary>
    public required string SocketPath { get; init; }
    /// <summary>PEM or SPIFFE-JSON bundle used to authenticate the server before the agent has its own copy.</summary>
    public string? TrustBundlePath { get; init; }
    public string? JoinToken { get; init; }
    /// <summary>How the node proves itself (<c>node_attestor</c>): <c>join_token</c> (default), <c>tpm</c> or <c>x509pop</c>.</summary>
    public string NodeAttestor { get; init; } = "join_token";
    /// <summary>The TPM for <c>tpm</c> node attestation (<c>tpm</c>): a device such as /dev/tpmrm0, or tcp://HOST:PORT.</summary>
    public Writ.Tpm.Device.TpmAddress Tpm { get; init; } = Writ.Tpm.Device.TpmAddress.Device(Writ.Tpm.Device.TpmAddress.DefaultDevice);
    /// <summary>The measured-boot event log sent with TPM quotes (<c>tpm_event_log</c>); null: the kernel's for a device TPM when it exists, none for tcp.</summary>
    public string? TpmEventLog { get; init; }
    /// <summary>x509pop: PEM node certificate, then its intermediates (<c>x509pop.cert</c>).</summary>
    public string? X509PopCertPath { get; init; }
    /// <summary>x509pop: PEM private key of the node certificate (<c>x509pop.key</c>).</summary>
    public string? X509PopKeyPath { get; init; }
    /// <summary>The workload attestors run for every caller (<c>workload_attestors</c>): unix, cgroup and, in a Kubernetes
    /// cluster, k8s.</summary>
    public IReadOnlyList<string> WorkloadAttestors { get; init; } = ["unix", "cgroup"];
    /// <summary>k8s_psat: the cluster name as the server's <c>k8s_clusters</c> names it (<c>k8s_psat.cluster</c>).</summary>
    public string? K8sPsatCluster { get; init; }
    /// <summary>k8s_psat: the projected service-account token file (<c>k8s_psat.token_path</c>), re-read at every attestation.</summary>
    public string K8sPsatTokenPath { get; init; } = "/var/run/secrets/tokens/writ-agent";
    /// <summary>The k8s workload attestor (<c>k8s.*</c>).</summary>
    public WorkloadAttestation.Kubernetes.K8sWorkloadOptions Kubernetes { get; init; } = new();
    /// <summary>Image signature checks of the k8s workload attestor (<c>k8s.image_*</c>).</summary>
    public WorkloadAttestation.ImageSignatures.ImageSignatureOptions ImageSignatures { get; init; } = new();
    public TimeSpan AttestorTimeout { get; init; } = TimeSpan.FromSeconds(5);
    /// <summary>How often every workload instance served is re-checked (alive, same evidence); also re-checked on every call.</summary>
    public TimeSpan ReattestInterval { get; init; } = TimeSpan.FromSeconds(2);
    /// <summary>How long before expiry a cached SVID is no longer served when it cannot be renewed.</summary>
    public TimeSpan ExpiryMargin { get; init; } = TimeSpan.Zero;
    public TimeSpan MaxBackoff { get; init; } = TimeSpan.FromSeconds(30);
    /// <summary>How long start-up waits for the first full sync before serving anyway (the server may be away).</summary>
    public TimeSpan InitialSyncTimeout { get; init; } = TimeSpan.FromSeconds(5);
    /// <summary>Workload API connections open at once, all callers together (<c>workload_api.max_connections</c>); the
    /// agent's file-descriptor limit may lower it.</summary>
    public int MaxConnections { get; init; } = 8192;
    /// <summary>Workload API connections one uid may hold open (<c>workload_api.max_connections_per_uid</c>); never more than
    /// half of <see cref="MaxConnections"/>.</summary>
    public int MaxConnectionsPerUid { get; init; } = 1024;
    /// <summary>New Workload API connections plus calls per second per uid (<c>workload_api.rate_limit_per_uid</c>); 0: unlimited.</summary>
    public int RateLimitPerUid { get; init; } = 200;
    /// <summary>Loopback HOST:PORT of /metrics, /healthz and /readyz (<c>metrics_bind</c>, docs/telemetry.md); null: off.</summary>
    public System.Net.IPEndPoint? MetricsBind { get; init; }
    /// <summary>The request-time decision service (<c>authz_*</c>).</summary>
    public Authz.AuthzOptions Authz { get; init; } = new();
    /// <summary>Envoy SDS resource names (<c>sds.*</c>).</summary>
    public Sds.SdsOptions Sds { get; init; } = new();
    public string LogLevel { get; init; } = "info";
    public string LogFormat { get; init; } = "text";
}
