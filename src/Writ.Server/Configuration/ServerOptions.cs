using System.Net;
using Writ.Server.Ca;
using Writ.Server.Keys;
using Writ.Spiffe;

namespace Writ.Server.Configuration;

/// <summary>The validated server configuration. Built once at start-up by <see cref="ServerConfigLoader"/>.</summary>
public sealed record ServerOptions
{
    public required TrustDomain TrustDomain { get; init; }
    public required string DataDir { get; init; }
    public required IPEndPoint Bind { get; init; }
    /// <summary>Loopback HOST:PORT of /metrics, /healthz and /readyz (docs/telemetry.md); null: no metrics listener.</summary>
    public IPEndPoint? MetricsBind { get; init; }
    public required string AdminSocket { get; init; }
    public required string StoreKind { get; init; }
    public required string StoreConnection { get; init; }
    public required string KeyManager { get; init; }
    public required CaOptions Ca { get; init; }
    public TimeSpan DefaultX509Ttl { get; init; } = TimeSpan.FromHours(1);
    public TimeSpan DefaultJwtTtl { get; init; } = TimeSpan.FromMinutes(5);
    public TimeSpan MaxTtl { get; init; } = TimeSpan.FromHours(24);
    public TimeSpan AgentTtl { get; init; } = TimeSpan.FromHours(1);
    public TimeSpan JoinTokenTtl { get; init; } = TimeSpan.FromMinutes(10);
    public TimeSpan RotationInterval { get; init; } = TimeSpan.FromSeconds(10);
    /// <summary>On SIGTERM: how long calls in flight may take to finish before their connections are cut.</summary>
    public TimeSpan ShutdownGrace { get; init; } = TimeSpan.FromSeconds(5);
    public string LogLevel { get; init; } = "info";
    public string LogFormat { get; init; } = "text";
    /// <summary>The SPIFFE bundle endpoint (<c>federation.bundle_endpoint.*</c>, issue #16); null: none.</summary>
    public Federation.BundleEndpointOptions? BundleEndpoint { get; init; }
    /// <summary>Flood limits on issuance and the ledger, and signed ledger checkpoints.</summary>
    public LedgerOptions Ledger { get; init; } = new();
    /// <summary>The x509pop node attestor; null: not enabled (no x509pop.ca_bundle).</summary>
    public NodeAttestation.X509Pop.X509PopOptions? X509Pop { get; init; }
    /// <summary>The tpm node attestor (enabled by tpm.ek_ca_dir or tpm.ek_hashes).</summary>
    public TpmOptions Tpm { get; init; } = TpmOptions.Disabled;

    /// <summary>The k8s_psat node attestor's clusters (<c>k8s_clusters</c>).</summary>
    public NodeAttestation.K8sPsat.K8sPsatOptions K8sPsat { get; init; } = NodeAttestation.K8sPsat.K8sPsatOptions.None;

    /// <summary>Trusted OIDC issuers of CI job tokens (<c>oidc_issuers</c>).</summary>
    public Oidc.OidcOptions Oidc { get; init; } = Writ.Server.Oidc.OidcOptions.None;

    /// <summary>Agentless CI job identities (<c>ci.*</c>).</summary>
    public Ci.CiOptions Ci { get; init; } = Writ.Server.Ci.CiOptions.Default;

    public SpiffeId ServerId => SpiffeId.FromSegments(TrustDomain, "writ", "server");
}

public static class ServerConfigLoader
{
    public const string EnvPrefix = "WRIT_SERVER_";

    public static readonly IReadOnlyList<ConfigKey> Keys =
    [
        new("trust_domain", "", "Trust domain this server is the authority for, e.g. example.org (required)."),
        new("data_dir", ".writ/server", "Directory for the database, key file and sockets."),
        new("bind", "127.0.0.1:8081", "HOST:PORT of the agent API (TLS, mTLS after attestation)."),
        new("metrics_bind", "", "Loopback HOST:PORT serving /metrics (Prometheus), /healthz and /readyz over plain HTTP, e.g. 127.0.0.1:9090; empty: off."),
        new("admin_socket", "", "Unix socket of the admin API (owner-only). Default: /run/writ/server.sock as root, else $XDG_RUNTIME_DIR/writ/server.sock, else <data_dir>/admin.sock."),
        new("store.kind", "sqlite", "sqlite (embedded, default) or postgres."),
        new("store.connection", "", "SQLite: database file (default <data_dir>/writ.db). PostgreSQL: an Npgsql connection string."),
        new("key_manager", "disk", "disk (keys in <data_dir>/keys.json, 0600; survive restarts) or memory."),
        new("ca.key_type", "ec-p256", "CA key type: ec-p256, ec-p384 or rsa-2048."),
        new("ca.ttl", "24h", "Lifetime of each CA authority; rotation prepares the next at 1/2 and activates it at 5/6."),
        new("ca.jwt_key_type", "ec-p256", "JWT signing key type: ec-p256, ec-p384 or rsa-2048."),
        new("ca.jwt_key_ttl", "24h", "Lifetime of each JWT signing key (rotated like the CA)."),
        new("ca.upstream.certificate", "", "PEM certificate of an upstream CA: the server CA becomes its intermediate."),
        new("ca.upstream.key", "", "PEM private key of the upstream CA (with ca.upstream.certificate)."),
        new("default_x509_ttl", "1h", "X.509-SVID lifetime when the entry sets none."),
        new("default_jwt_ttl", "5m", "JWT-SVID lifetime when the entry sets none."),
        new("max_ttl", "24h", "Largest TTL an entry or mint request may ask for."),
        new("agent_ttl", "1h", "Lifetime of agent SVIDs."),
        new("join_token_ttl", "10m", "Default lifetime of join tokens."),
        new("rotation_interval", "10s", "How often the CA rotation state machine runs."),
        new("shutdown_grace", "5s", "On SIGTERM: sync streams end at once; other calls in flight get this long before their connections are cut."),
        new("log_level", "info", "debug, info, warn or error."),
        new("log_format", "text", "text (one line per event) or json (one JSON object per line)."),
        new("jwt_issuer", "", "The iss claim of every JWT-SVID, e.g. https://oidc.example.org (what writ oidc-discovery run --issuer serves); empty: no iss."),
        new("sync.fanout", "shared", "shared (one store read per change, shared by every agent sync stream) or per_stream (each stream reads the store; for benchmarks)."),
        new("federation.bundle_endpoint.bind", "", "HOST:PORT serving this trust domain's SPIFFE bundle over HTTPS to federated domains; empty: off."),
        new("federation.bundle_endpoint.certificate", "", "https_web: PEM certificate chain the bundle endpoint serves; empty: https_spiffe (the server's own SVID)."),
        new("federation.bundle_endpoint.key", "", "https_web: PEM private key of federation.bundle_endpoint.certificate."),
        .. LedgerOptions.Keys,
        .. NodeAttestation.X509Pop.X509PopOptions.Keys,
        .. TpmOptions.Keys,
        .. NodeAttestation.K8sPsat.K8sPsatOptions.Keys,
        .. Oidc.OidcOptions.Keys,
        .. Ci.CiOptions.Keys,
    ];

    /// <summary>The machine-wide admin socket root's server listens on and root's CLI looks for by default.</summary>
    public const string RootAdminSocket = "/run/writ/server.sock";

    /// <summary>
    /// The well-known admin socket for a process of <paramref name="euid"/>, shared by `writ server run` and the admin
    /// commands so that neither needs flags: <see cref="RootAdminSocket"/> for root, the user's runtime directory
    /// (<c>$XDG_RUNTIME_DIR/writ/server.sock</c>, private to the user) otherwise, and null when a non-root user has none.
    /// Never relative to the working directory: a socket there may belong to anyone.
    /// </summary>
    public static string? DefaultAdminSocket(int euid, string? xdgRuntimeDir) =>
        euid == 0 ? RootAdminSocket
        : xdgRuntimeDir is { Length: > 0 } x && Path.IsPathFullyQualified(x) ? Path.Combine(x, "writ", "server.sock")
        : null;

    /// <summary>Builds options from the sources. Returns null with every error when anything is invalid.</summary>
    public static ServerOptions? Build(ConfigSources c, out IReadOnlyList<string> errors)
    {
        TrustDomain td = default;
        var tdText = c.Get("trust_domain");
        if (string.IsNullOrEmpty(tdText))
        {
            c.Errors.Add("'trust_domain' is required: pass --trust-domain example.org, set WRIT_SERVER_TRUST_DOMAIN, or put \"trust_domain\" in the config file");
        }
        else if (!TrustDomain.TryParse(tdText, out td, out var tdErr))
        {
            c.Errors.Add($"{c.Describe("trust_domain")} is not a valid trust domain: {tdErr}");
        }

        var dataDir = Path.GetFullPath(c.Get("data_dir") ?? ".writ/server");
        IPEndPoint bind = new(IPAddress.Loopback, 8081);
        var bindText = c.Get("bind") ?? "";
        if (!IPEndPoint.TryParse(bindText, out var parsedBind) || parsedBind.Port == 0 && !bindText.EndsWith(":0", StringComparison.Ordinal))
        {
            c.Errors.Add($"{c.Describe("bind")} must be HOST:PORT with an IP address, e.g. 127.0.0.1:8081, got '{bindText}'");
        }
        else
        {
            bind = parsedBind;
        }
        var metricsBind = Telemetry.MetricsBindOption.Parse(c, "metrics_bind");
        var admin = c.Get("admin_socket") is { Length: > 0 } a ? Path.GetFullPath(a)
            : DefaultAdminSocket(Hosting.UnixPeer.EffectiveUid, Environment.GetEnvironmentVariable("XDG_RUNTIME_DIR")) ?? Path.Combine(dataDir, "admin.sock");
        if (System.Text.Encoding.UTF8.GetByteCount(admin) > 107)
        {
            c.Errors.Add($"{c.Describe("admin_socket")} '{admin}' is longer than a Unix socket path may be (107 bytes): choose a shorter path");
        }
        var storeKind = c.OneOf("store.kind", "sqlite", "postgres");
        var storeConn = c.Get("store.connection") ?? "";
        if (storeKind == "sqlite" && storeConn.Length == 0)
        {
            storeConn = Path.Combine(dataDir, "writ.db");
        }
        if (storeKind == "postgres" && storeConn.Length == 0)
        {
            c.Errors.Add("'store.connection' is required with store.kind postgres: give an Npgsql connection string, e.g. Host=127.0.0.1;Username=writ;Database=writ");
        }
        var km = c.OneOf("key_manager", "disk", "memory");
        var caKey = KeyType(c, "ca.key_type");
        var jwtKey = KeyType(c, "ca.jwt_key_type");
        var caTtl = c.Duration("ca.ttl", TimeSpan.FromMinutes(1), TimeSpan.FromDays(3650));
        var jwtKeyTtl = c.Duration("ca.jwt_key_ttl", TimeSpan.FromMinutes(1), TimeSpan.FromDays(3650));
        UpstreamCaOptions? upstream = null;
        var upCert = c.Get("ca.upstream.certificate");
        var upKey = c.Get("ca.upstream.key");
        if (!string.IsNullOrEmpty(upCert) || !string.IsNullOrEmpty(upKey))
        {
            if (string.IsNullOrEmpty(upCert) || string.IsNullOrEmpty(upKey))
            {
                c.Errors.Add("'ca.upstream.certificate' and 'ca.upstream.key' go together: give both or neither");
            }
            else
            {
                foreach (var (k, p) in new[] { ("ca.upstream.certificate", upCert), ("ca.upstream.key", upKey) })
                {
                    if (!File.Exists(p))
                    {
                        c.Errors.Add($"{c.Describe(k)}: file '{p}' does not exist");
                    }
                }
                upstream = new UpstreamCaOptions(Path.GetFullPath(upCert), Path.GetFullPath(upKey));
            }
        }
        var x509Ttl = c.Duration("default_x509_ttl", TimeSpan.FromSeconds(10), TimeSpan.FromDays(365));
        var jwtTtl = c.Duration("default_jwt_ttl", TimeSpan.FromSeconds(10), TimeSpan.FromDays(365));
        var maxTtl = c.Duration("max_ttl", TimeSpan.FromSeconds(10), TimeSpan.FromDays(3650));
        var agentTtl = c.Duration("agent_ttl", TimeSpan.FromSeconds(30), TimeSpan.FromDays(365));
        var tokenTtl = c.Duration("join_token_ttl", TimeSpan.FromSeconds(10), TimeSpan.FromDays(365));
        var rot = c.Duration("rotation_interval", TimeSpan.FromMilliseconds(100), TimeSpan.FromHours(1));
        var grace = c.Duration("shutdown_grace", TimeSpan.Zero, TimeSpan.FromMinutes(5));
        var log = c.OneOf("log_level", "info", "debug", "warn", "error");
        var logFormat = c.OneOf("log_format", "text", "json");
        var ledger = LedgerOptions.Build(c);
        var x509Pop = NodeAttestation.X509Pop.X509PopOptions.Build(c);
        var tpm = TpmOptions.Build(c);
        var k8sPsat = NodeAttestation.K8sPsat.K8sPsatOptions.Build(c);
        var oidc = Oidc.OidcOptions.Build(c);
        var ci = Ci.CiOptions.Build(c);
        var bundleEndpoint = Federation.BundleEndpointOptions.Build(c);
        if (x509Ttl > maxTtl)
        {
            c.Errors.Add($"{c.Describe("default_x509_ttl")} is larger than max_ttl ({ConfigSources.Format(maxTtl)}): lower it or raise max_ttl");
        }
        if (jwtTtl > maxTtl)
        {
            c.Errors.Add($"{c.Describe("default_jwt_ttl")} is larger than max_ttl ({ConfigSources.Format(maxTtl)}): lower it or raise max_ttl");
        }
        errors = c.Errors;
        if (c.Errors.Count > 0)
        {
            return null;
        }
        return new ServerOptions
        {
            TrustDomain = td,
            DataDir = dataDir,
            Bind = bind,
            MetricsBind = metricsBind,
            AdminSocket = admin,
            StoreKind = storeKind,
            StoreConnection = storeConn,
            KeyManager = km,
            Ca = new CaOptions { KeyType = caKey, JwtKeyType = jwtKey, CaTtl = caTtl, JwtKeyTtl = jwtKeyTtl, Upstream = upstream },
            DefaultX509Ttl = x509Ttl,
            DefaultJwtTtl = jwtTtl,
            MaxTtl = maxTtl,
            AgentTtl = agentTtl,
            JoinTokenTtl = tokenTtl,
            RotationInterval = rot,
            ShutdownGrace = grace,
            LogLevel = log,
            LogFormat = logFormat,
            Ledger = ledger,
            X509Pop = x509Pop,
            Tpm = tpm,
            K8sPsat = k8sPsat,
            Oidc = oidc,
            Ci = ci,
            BundleEndpoint = bundleEndpoint,
        };
    }

    private static KeyType KeyType(ConfigSources c, string name)
    {
        if (KeyTypes.TryParse(c.Get(name), out var t))
        {
            return t;
        }
        c.Errors.Add($"{c.Describe(name)} must be ec-p256, ec-p384 or rsa-2048, got '{c.Get(name)}'");
        return Writ.Server.Keys.KeyType.EcP256;
    }
}
