using System.Security.Cryptography.X509Certificates;
using Writ.Agent;
using Writ.Agent.Hosting;
using Writ.Agent.NodeAttestation;
using Writ.Cli.CommandLine;
using Writ.Server.Configuration;
using Writ.Spiffe;

namespace Writ.Cli.Commands;

/// <summary>`writ agent run`: the agent's composition root.</summary>
public static class AgentCommands
{
    public const string EnvPrefix = "WRIT_AGENT_";

    /// <summary>The exit code when the server stops the agent (banned, evicted), at start-up or while running.</summary>
    public const int ExitStopped = 3;

    /// <summary>The agent stopped (or would not start) because the server refused it: banned, evicted, attestation refused.</summary>
    public const string StoppedCode = "WRIT-AGENT-STOPPED";

    /// <summary>The agent could not reach or authenticate the server at start-up.</summary>
    public const string ServerUnreachableCode = "WRIT-AGENT-SERVER-UNREACHABLE";

    public static readonly IReadOnlyList<ConfigKey> Keys =
    [
        new("server", "", "HOST:PORT of the server's agent API (required); several comma-separated (a:8081,b:8081), or a DNS name with several addresses: the agent fails over between them."),
        new("join_token", "", "Join token from 'writ token generate'; needed only for the first start (the SVID is kept in data_dir)."),
        new("node_attestor", "join_token", "How the node proves itself: join_token; x509pop (--x509pop-cert, --x509pop-key: a certificate of your machine PKI); tpm (a TPM 2.0: EK certificate, credential activation, PCR quotes; the agent key lives in the TPM and the agent attests on every start); or k8s_psat (the DaemonSet pod's projected service-account token, --k8s-psat-cluster)."),
        new("k8s_psat.cluster", "", "With node_attestor k8s_psat: the cluster's name as the server's k8s_clusters names it."),
        new("k8s_psat.token_path", "/var/run/secrets/tokens/writ-agent", "With node_attestor k8s_psat: the projected service-account token file (audience as the server expects, default writ)."),
        new("workload_attestors", "unix,cgroup", "Workload attestors, comma-separated: unix (uid, gid, executable), cgroup (container, cgroup path) and k8s (the pod through the kubelet: namespace, service account, labels, image digest and signature)."),
        new("k8s.kubelet_host", "127.0.0.1", "k8s attestor: the kubelet's host (the DaemonSet uses hostNetwork or the node IP from the downward API)."),
        new("k8s.kubelet_port", "10250", "k8s attestor: the kubelet's secure port (HTTPS, authenticated with k8s.token_path)."),
        new("k8s.kubelet_read_only_port", "0", "k8s attestor: the kubelet's read-only HTTP port where a cluster still has it (usually 10255); 0: the secure port is used."),
        new("k8s.kubelet_ca", "", "k8s attestor: PEM CA bundle of the kubelet's serving certificate. Default: the service account's ca.crt when it exists."),
        new("k8s.skip_kubelet_verification", "false", "k8s attestor: do not check the kubelet's certificate (its serving certificate is often self-signed); a warning is logged."),
        new("k8s.token_path", "/var/run/secrets/kubernetes.io/serviceaccount/token", "k8s attestor: the bearer token for the kubelet (re-read when it rotates)."),
        new("k8s.node_name", "", "k8s attestor: the node this agent runs on (downward API spec.nodeName); pods the kubelet lists for another node are ignored. Required with the k8s attestor."),
        new("k8s.pod_cache_ttl", "5s", "k8s attestor: how long a pod list is reused; an unknown pod refreshes it at once."),
        new("k8s.image_keys_dir", "", "k8s attestor: directory of the image-signing public keys the identity team registered, <name>.pub (PEM, ECDSA P-256 or Ed25519); a workload whose image digest one of them signed (cosign) gets k8s:image-signed-by:<name>. Empty: no signature checks."),
        new("k8s.image_signatures_dir", "", "k8s attestor: air-gapped clusters: a directory of cosign signatures to use instead of the registry (docs/kubernetes.md)."),
        new("k8s.registry_ca", "", "k8s attestor: PEM CA bundle registries' certificates must chain to; default: the system roots."),
        new("k8s.image_signature_cache_ttl", "10m", "k8s attestor: how long a signature lookup is reused; a failed lookup is retried sooner."),
        new("tpm", Writ.Tpm.Device.TpmAddress.DefaultDevice, "With node_attestor tpm: the TPM, a device (/dev/tpmrm0, the kernel resource manager) or tcp://HOST:PORT (a TCP TPM such as swtpm)."),
        new("tpm_event_log", "", "With node_attestor tpm: the measured-boot event log sent with quotes. Default: /sys/kernel/security/tpm0/binary_bios_measurements when the TPM is a device and that file exists; none for tcp."),
        new("x509pop.cert", "", "x509pop: PEM file of the node's certificate from the machine PKI, then its intermediates."),
        new("x509pop.key", "", "x509pop: PEM private key of that certificate (PKCS#8, EC or RSA; not encrypted)."),
        new("trust_bundle", "", "Bundle to authenticate the server on first start: PEM ('writ bundle show') or SPIFFE JSON. Later the agent keeps its own copy."),
        new("trust_domain", "", "The trust domain; default: read from the trust bundle's CA certificate."),
        new("data_dir", ".writ/agent", "Directory for the agent SVID (key 0600), its bundle and state."),
        new("socket", "", "Workload API socket. Default: <data_dir>/workload.sock. Usable by every local user."),
        new("attestor_timeout", "5s", "Time limit of each workload attestor per call."),
        new("reattest_interval", "2s", "How often every workload instance served is re-checked (alive, same executable, uid, container); exits are also seen at once through pidfds."),
        new("workload_api.max_connections", "8192", "Workload API connections open at once, all callers together (lowered to what the file-descriptor limit affords)."),
        new("workload_api.max_connections_per_uid", "1024", "Workload API connections one uid may hold open (at most half of max_connections)."),
        new("workload_api.rate_limit_per_uid", "200", "New Workload API connections plus calls per second per uid; 0: unlimited."),
        new("authz_bind", "", "Where the request-time decision service (Envoy ext_authz, envoy.service.auth.v3.Authorization/Check) listens: unix:PATH or a loopback HOST:PORT; empty: off (docs/relying-parties.md)."),
        new("authz_headers", "", "Request headers given to call policies as context.headers (\"name=value\"), comma-separated, case-insensitive; no other header reaches Cedar."),
        new("authz_allow_sample", "0.01", "Fraction (0 to 1) of allowed calls recorded in the ledger as access.allowed; every denial is recorded as access.denied."),
        new("authz_jwt_header", "authorization", "The request header carrying a caller's JWT-SVID (as 'Bearer TOKEN') when it presents no client certificate."),
        new("authz_default_resource", "", "The destination SPIFFE ID when Envoy names none (no writ_resource context extension, no destination principal)."),
        new("sds.default_svid_name", "default", "Envoy SDS: the name of the caller's default X.509-SVID (tls_certificate); each identity is also served under its SPIFFE ID."),
        new("sds.default_bundle_name", "ROOTCA", "Envoy SDS: the name of the validation_context holding this trust domain's bundle; a federated domain's is served under its spiffe://td name."),
        new("sds.default_all_bundles_name", "ALL", "Envoy SDS: the name of the validation_context holding every trust domain's roots."),
        new("metrics_bind", "", "Loopback HOST:PORT serving /metrics (Prometheus), /healthz and /readyz over plain HTTP, e.g. 127.0.0.1:9091; empty: off."),
        new("log_level", "info", "debug, info, warn or error."),
        new("log_format", "text", "text or json."),
    ];

    private static IReadOnlyList<OptionSpec> Options() => ConfigFlags.Options(Keys, EnvPrefix);

    public static IEnumerable<CommandSpec> All() =>
    [
        new("agent run", "Run the Writ agent: attest the node, sync, serve the SPIFFE Workload API.", Options(), RunAsync),
    ];

    public static AgentOptions? Load(ParsedArgs args, out IReadOnlyList<string> errors)
    {
        var c = ConfigFlags.Collect(args, Keys, EnvPrefix);
        var server = c.Get("server") ?? "";
        if (server.Length == 0)
        {
            c.Errors.Add("'server' is required: pass --server HOST:PORT (the server's agent API, see its 'ready' line)");
        }
        else if (!Writ.Agent.Sync.ServerAddress.TryParseList(server, out _, out var serverError))
        {
            c.Errors.Add(serverError!);   // "WRIT-AGENT-SERVER-…: …"
        }
        var dataDir = Path.GetFullPath(c.Get("data_dir") ?? ".writ/agent");
        var socket = c.Get("socket") is { Length: > 0 } s ? Path.GetFullPath(s) : Path.Combine(dataDir, "workload.sock");
        if (System.Text.Encoding.UTF8.GetByteCount(socket) > 107)
        {
            c.Errors.Add($"{c.Describe("socket")} '{socket}' is longer than a Unix socket path may be (107 bytes)");
        }
        var bundle = c.Get("trust_bundle") is { Length: > 0 } b ? Path.GetFullPath(b) : null;
        var bundleMissing = bundle is not null && !File.Exists(bundle);
        if (bundleMissing)
        {
            c.Errors.Add($"{c.Describe("trust_bundle")}: file '{bundle}' does not exist");
        }
        TrustDomain td = default;
        if (c.Get("trust_domain") is { Length: > 0 } tdText)
        {
            if (!TrustDomain.TryParse(tdText, out td, out var tdErr))
            {
                c.Errors.Add($"{c.Describe("trust_domain")} is invalid: {tdErr}");
            }
        }
        else if (bundle is not null && File.Exists(bundle) && TrustDomainFromBundle(bundle) is { } fromBundle)
        {
            td = fromBundle;
        }
        else if (File.Exists(Path.Combine(dataDir, "agent.json")) && TrustDomainFromState(dataDir) is { } fromState)
        {
            td = fromState;
        }
        else if (!bundleMissing)
        {
            // A missing bundle file was reported already; the trust domain would come from it.
            c.Errors.Add("'trust_domain' is required when the trust bundle does not name it: pass --trust-domain example.org");
        }
        var timeout = c.Duration("attestor_timeout", TimeSpan.FromMilliseconds(100), TimeSpan.FromMinutes(1));
        var reattest = c.Duration("reattest_interval", TimeSpan.FromMilliseconds(100), TimeSpan.FromMinutes(10));
        var maxConnections = Count(c, "workload_api.max_connections", 1);
        var maxPerUid = Count(c, "workload_api.max_connections_per_uid", 1);
        var rate = Count(c, "workload_api.rate_limit_per_uid", 0);
        var level = c.OneOf("log_level", "info", "debug", "warn", "error");
        var format = c.OneOf("log_format", "text", "json");
        var metricsBind = Writ.Server.Telemetry.MetricsBindOption.Parse(c, "metrics_bind");
        var nodeAttestor = c.OneOf("node_attestor", [.. NodeAttestorClients.Names]);
        var workloadAttestors = WorkloadAttestors(c);
        var kubernetes = KubernetesOptions(c, workloadAttestors.Contains("k8s"));
        var images = ImageSignatureOptions(c);
        var psatCluster = c.Get("k8s_psat.cluster") is { Length: > 0 } pc ? pc : null;
        if (nodeAttestor == "k8s_psat" && psatCluster is null)
        {
            c.Errors.Add("--node-attestor k8s_psat needs --k8s-psat-cluster NAME (the cluster's name in the server's k8s_clusters)");
        }
        var (x509PopCert, x509PopKey) = nodeAttestor == X509PopAttestorClient.TypeName ? X509PopFiles(c) : (null, null);
        if (!Writ.Tpm.Device.TpmAddress.TryParse(c.Get("tpm"), out var tpm, out var tpmError))
        {
            c.Errors.Add($"{c.Describe("tpm")}: {tpmError}");
        }
        var eventLog = c.Get("tpm_event_log") is { Length: > 0 } log ? Path.GetFullPath(log) : null;
        if (nodeAttestor == "tpm" && eventLog is not null && !File.Exists(eventLog))
        {
            c.Errors.Add($"{c.Describe("tpm_event_log")}: file '{eventLog}' does not exist");
        }
        var authz = AuthzOptionsOf(c);
        var sds = new Writ.Agent.Sds.SdsOptions
        {
            DefaultSvidName = SdsName(c, "sds.default_svid_name", "default"),
            DefaultBundleName = SdsName(c, "sds.default_bundle_name", "ROOTCA"),
            DefaultAllBundlesName = SdsName(c, "sds.default_all_bundles_name", "ALL"),
        };
        errors = c.Errors;
        if (c.Errors.Count > 0)
        {
            return null;
        }
        return new AgentOptions
        {
            ServerAddress = server,
            TrustDomain = td,
            DataDir = dataDir,
            SocketPath = socket,
            TrustBundlePath = bundle,
            JoinToken = c.Get("join_token") is { Length: > 0 } t ? t : null,
            NodeAttestor = nodeAttestor,
            X509PopCertPath = x509PopCert,
            X509PopKeyPath = x509PopKey,
            Tpm = tpm,
            TpmEventLog = eventLog,
            WorkloadAttestors = workloadAttestors,
            K8sPsatCluster = psatCluster,
            K8sPsatTokenPath = Path.GetFullPath(c.Get("k8s_psat.token_path") ?? "/var/run/secrets/tokens/writ-agent"),
            Kubernetes = kubernetes,
            ImageSignatures = images,
            AttestorTimeout = timeout,
            ReattestInterval = reattest,
            MaxConnections = maxConnections,
            MaxConnectionsPerUid = maxPerUid,
            RateLimitPerUid = rate,
            MetricsBind = metricsBind,
            Authz = authz,
            Sds = sds,
            LogLevel = level,
            LogFormat = format,
        };
    }

    /// <summary>The request-time decision service's keys (authz_*), each checked here so a wrong value is a configuration error.</summary>
    private static Writ.Agent.Authz.AuthzOptions AuthzOptionsOf(ConfigSources c)
    {
        if (!Writ.Agent.Authz.AuthzOptions.TryParseBind(c.Get("authz_bind"), out var bind, out var bindError))
        {
            c.Errors.Add($"{c.Describe("authz_bind")}: {bindError}");
        }
        if (!Writ.Agent.Authz.AuthzOptions.TryParseSample(c.Get("authz_allow_sample") ?? "0.01", out var sample))
        {
            c.Errors.Add($"{c.Describe("authz_allow_sample")}: '{c.Get("authz_allow_sample")}' is not a number from 0 to 1 (the fraction of allowed calls recorded)");
        }
        var headers = (c.Get("authz_headers") ?? "").Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
            .Select(h => h.ToLowerInvariant()).Distinct(StringComparer.Ordinal).ToList();
        foreach (var h in headers.Where(h => h.Any(ch => char.IsWhiteSpace(ch) || char.IsControl(ch) || ch == '=')))
        {
            c.Errors.Add($"{c.Describe("authz_headers")}: '{h}' is not a header name");
        }
        var jwtHeader = (c.Get("authz_jwt_header") is { Length: > 0 } jh ? jh : "authorization").ToLowerInvariant();
        string? resource = null;
        if (c.Get("authz_default_resource") is { Length: > 0 } r)
        {
            if (Writ.Spiffe.SpiffeId.TryParse(r, out var rid, out var rerr))
                resource = rid.ToString();
            else
                c.Errors.Add($"{c.Describe("authz_default_resource")}: '{r}' is not a SPIFFE ID: {rerr}");
        }
        return new Writ.Agent.Authz.AuthzOptions { Bind = bind, Headers = headers, AllowSample = sample, JwtHeader = jwtHeader, DefaultResource = resource };
    }

    private static string SdsName(ConfigSources c, string key, string fallback)
    {
        var v = c.Get(key) is { Length: > 0 } s ? s : fallback;
        if (v.Any(char.IsControl))
        {
            c.Errors.Add($"{c.Describe(key)}: a resource name has no control characters");
        }
        return v;
    }

    /// <summary>The x509pop certificate and key files (both required), loaded once here so a wrong file is a configuration error.</summary>
    private static (string? Cert, string? Key) X509PopFiles(ConfigSources c)
    {
        var cert = c.Get("x509pop.cert") is { Length: > 0 } cp ? Path.GetFullPath(cp) : null;
        var key = c.Get("x509pop.key") is { Length: > 0 } kp ? Path.GetFullPath(kp) : null;
        if (cert is null || key is null)
        {
            c.Errors.Add("--node-attestor x509pop needs --x509pop-cert FILE (the node certificate, then intermediates) and --x509pop-key FILE (its private key)");
            return (null, null);
        }
        try
        {
            X509PopAttestorClient.Load(cert, key).Dispose();
        }
        catch (AgentFatalException e)
        {
            c.Errors.Add(e.Message);
        }
        return (cert, key);
    }

    /// <summary>A whole number from <paramref name="min"/> to 1,000,000 (a count or a rate), else an error naming the source.</summary>
    /// <summary>The workload attestors named by workload_attestors: each known, none twice.</summary>
    private static IReadOnlyList<string> WorkloadAttestors(ConfigSources c)
    {
        string[] known = ["unix", "cgroup", "k8s"];
        var names = (c.Get("workload_attestors") ?? "").Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        var result = new List<string>();
        foreach (var n in names)
        {
            if (!known.Contains(n, StringComparer.Ordinal))
            {
                c.Errors.Add($"{c.Describe("workload_attestors")}: unknown workload attestor '{n}': use {string.Join(", ", known)}");
            }
            else if (!result.Contains(n))
            {
                result.Add(n);
            }
        }
        if (result.Count == 0 && names.Length == 0)
        {
            c.Errors.Add($"{c.Describe("workload_attestors")} names no attestor: give at least one of {string.Join(", ", known)}");
        }
        return result;
    }

    private static Writ.Agent.WorkloadAttestation.Kubernetes.K8sWorkloadOptions KubernetesOptions(ConfigSources c, bool enabled)
    {
        var port = Count(c, "k8s.kubelet_port", 1);
        var readOnly = Count(c, "k8s.kubelet_read_only_port", 0);
        if (port > 65535 || readOnly > 65535)
        {
            c.Errors.Add("k8s.kubelet_port and k8s.kubelet_read_only_port must be TCP ports (1-65535; 0 turns the read-only port off)");
        }
        var ca = c.Get("k8s.kubelet_ca") is { Length: > 0 } cp ? Path.GetFullPath(cp) : null;
        if (enabled && ca is not null && !File.Exists(ca))
        {
            c.Errors.Add($"{c.Describe("k8s.kubelet_ca")}: file '{ca}' does not exist");
        }
        var node = c.Get("k8s.node_name") is { Length: > 0 } nn ? nn : null;
        if (enabled && node is null)
        {
            c.Errors.Add("the k8s workload attestor needs --k8s-node-name NAME (the node the agent runs on; in a DaemonSet from the downward API, spec.nodeName)");
        }
        return new Writ.Agent.WorkloadAttestation.Kubernetes.K8sWorkloadOptions
        {
            KubeletHost = c.Get("k8s.kubelet_host") ?? "127.0.0.1",
            KubeletPort = port,
            KubeletReadOnlyPort = readOnly,
            KubeletCaPath = ca,
            SkipKubeletVerification = c.Bool("k8s.skip_kubelet_verification"),
            TokenPath = Path.GetFullPath(c.Get("k8s.token_path") ?? Writ.Agent.WorkloadAttestation.Kubernetes.K8sWorkloadOptions.DefaultTokenPath),
            NodeName = node,
            PodCacheTtl = c.Duration("k8s.pod_cache_ttl", TimeSpan.Zero, TimeSpan.FromMinutes(10)),
        };
    }

    private static Writ.Agent.WorkloadAttestation.ImageSignatures.ImageSignatureOptions ImageSignatureOptions(ConfigSources c)
    {
        string? Dir(string key)
        {
            if (c.Get(key) is not { Length: > 0 } d)
            {
                return null;
            }
            var full = Path.GetFullPath(d);
            if (!Directory.Exists(full))
            {
                c.Errors.Add($"{c.Describe(key)}: directory '{full}' does not exist");
            }
            return full;
        }
        var registryCa = c.Get("k8s.registry_ca") is { Length: > 0 } rc ? Path.GetFullPath(rc) : null;
        if (registryCa is not null && !File.Exists(registryCa))
        {
            c.Errors.Add($"{c.Describe("k8s.registry_ca")}: file '{registryCa}' does not exist");
        }
        return new Writ.Agent.WorkloadAttestation.ImageSignatures.ImageSignatureOptions
        {
            KeysDir = Dir("k8s.image_keys_dir"),
            SignaturesDir = Dir("k8s.image_signatures_dir"),
            RegistryCaPath = registryCa,
            CacheTtl = c.Duration("k8s.image_signature_cache_ttl", TimeSpan.Zero, TimeSpan.FromHours(24)),
        };
    }

    private static int Count(ConfigSources c, string name, int min)
    {
        var v = c.Get(name);
        if (!int.TryParse(v, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var n) || n < min || n > 1_000_000)
        {
            c.Errors.Add($"{c.Describe(name)} must be a whole number from {min} to 1000000, got '{v}'");
            return min;
        }
        return n;
    }

    /// <summary>The trust domain a CA certificate names in its URI SAN (spiffe://td), as Writ's CAs do.</summary>
    private static TrustDomain? TrustDomainFromBundle(string path)
    {
        try
        {
            var text = File.ReadAllText(path);
            if (text.TrimStart().StartsWith('{'))
            {
                return null;
            }
            var certs = new X509Certificate2Collection();
            certs.ImportFromPem(text);
            foreach (var cert in certs)
            {
                if (Writ.Spiffe.X509.X509Authorities.TrustDomainOf(cert) is { } td)
                {
                    return td;
                }
            }
        }
        catch (Exception e) when (e is IOException or System.Security.Cryptography.CryptographicException)
        {
        }
        return null;
    }

    private static TrustDomain? TrustDomainFromState(string dataDir)
    {
        try
        {
            using var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(dataDir, "agent.json")));
            return SpiffeId.TryParse(doc.RootElement.GetProperty("SpiffeId").GetString(), out var id, out _) ? id.TrustDomain : null;
        }
        catch (Exception e) when (e is IOException or System.Text.Json.JsonException or KeyNotFoundException or InvalidOperationException)
        {
            return null;
        }
    }

    /// <summary>
    /// Why the first call to the server failed, in the operator's terms (the transport's exception chain names
    /// .NET types and says "see inner exception", which helps nobody at a terminal).
    /// </summary>
    private static string DescribeUnreachable(AgentOptions o, Grpc.Core.RpcException e)
    {
        for (var x = e.Status.DebugException; x is not null; x = x.InnerException)
        {
            if (x is System.Security.Authentication.AuthenticationException)
            {
                return $"the server at {o.ServerAddress} could not be authenticated: its certificate is not " +
                    $"{Writ.Agent.Sync.ServerChannel.ServerId(o.TrustDomain)} issued by a CA in the trust bundle; " +
                    "check --trust-bundle (from 'writ bundle show' on that server) and --server";
            }
            if (x is System.Net.Sockets.SocketException se)
            {
                return $"cannot reach the server at {o.ServerAddress} ({se.SocketErrorCode}): check --server and that the server is running";
            }
        }
        return $"cannot reach the server at {o.ServerAddress} ({e.StatusCode}): check --server and --trust-bundle";
    }

    private static async Task<int> RunAsync(ParsedArgs args, CommandContext ctx)
    {
        var options = Load(args, out var errors);
        if (options is null)
        {
            return ConfigFlags.Report(ctx, errors);
        }
        AgentHost host;
        try
        {
            host = await AgentHost.StartAsync(options, TimeProvider.System,
                b => ServerCommands.ConfigureLogging(b, options.LogLevel, options.LogFormat), ctx.Cancellation).ConfigureAwait(false);
        }
        catch (Writ.Protocol.StartupRefusedException e)
        {
            throw new CommandFailedException(e.Message, code: e.Code);
        }
        catch (AgentFatalException e)
        {
            // Refused at start-up as it would be while running (a restarted banned or evicted agent): the same exit 3.
            throw CliErrors.Relayed(e.Message, StoppedCode, e.Stopped ? ExitStopped : CommandRunner.ExitFailure);
        }
        catch (Grpc.Core.RpcException e)
        {
            throw new CommandFailedException(DescribeUnreachable(options, e), code: ServerUnreachableCode);
        }
        await using (host.ConfigureAwait(false))
        {
            ctx.Out.WriteLine($"ready agent_id={host.AgentId} socket={options.SocketPath}" + (host.MetricsAddress is { } m ? $" metrics={m}" : ""));
            ctx.Out.Flush();
            var stopped = await Task.WhenAny(host.Completion, Task.Delay(Timeout.Infinite, ctx.Cancellation)).ConfigureAwait(false);
            if (stopped == host.Completion && await host.Completion.ConfigureAwait(false) is { } reason)
            {
                throw CliErrors.Relayed(reason, StoppedCode, ExitStopped);
            }
        }
        return CommandRunner.ExitOk;
    }
}
