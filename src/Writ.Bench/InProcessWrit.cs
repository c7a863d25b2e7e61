using Writ.Agent.Hosting;
using Writ.Protocol.Admin;
using Writ.Server.Configuration;
using Writ.Server.Hosting;
using Writ.Spiffe;

namespace Writ.Bench;

/// <summary>
/// A server (SQLite in <paramref name="dir"/>, memory keys, a free loopback port) and an agent attested to it with a
/// join token, both in this process with the host's logging, and an admin connection from the host: what the in-process benches
/// (workload-api, revocation) measure against. Disposed in reverse order.
/// </summary>
internal sealed class InProcessWrit(TrustDomain trustDomain, WritServerHost server, IBenchAdmin admin, AgentHost agent, string workloadSocket) : IAsyncDisposable
{
    public TrustDomain TrustDomain { get; } = trustDomain;
    public WritServerHost Server { get; } = server;
    public IBenchAdmin Admin { get; } = admin;
    public AgentHost Agent { get; } = agent;

    /// <summary>The agent's Workload API socket.</summary>
    public string WorkloadSocket { get; } = workloadSocket;

    /// <param name="serverConfig">Extra server configuration keys (e.g. the tpm.* keys).</param>
    /// <param name="tpm">When set, the agent attests with this TPM (node attestor tpm) instead of a join token.</param>
    public static async Task<InProcessWrit> StartAsync(string dir, BenchHost host, CancellationToken ct,
        IReadOnlyDictionary<string, string>? serverConfig = null, Writ.Tpm.Device.TpmAddress? tpm = null)
    {
        var td = TrustDomain.Parse("bench.writ");
        var sources = new ConfigSources(ServerConfigLoader.Keys);
        sources.Set("trust_domain", td.Name, "bench");
        sources.Set("data_dir", Path.Combine(dir, "server"), "bench");
        sources.Set("admin_socket", Path.Combine(dir, "server", "admin.sock"), "bench");   // not the machine-wide default
        sources.Set("bind", "127.0.0.1:0", "bench");
        sources.Set("key_manager", "memory", "bench");
        foreach (var (key, value) in serverConfig ?? new Dictionary<string, string>())
        {
            sources.Set(key, value, "bench");
        }
        var serverOptions = ServerConfigLoader.Build(sources, out var errors)
            ?? throw new BenchFailedException(string.Join("; ", errors));
        var server = await WritServerHost.StartAsync(serverOptions, TimeProvider.System, host.Logging, ct).ConfigureAwait(false);
        IBenchAdmin? admin = null;
        try
        {
            admin = host.ConnectAdmin(serverOptions.AdminSocket);
            var agentOptions = await AgentOptionsAsync(td, server, admin, dir, "agent", tpm, ct).ConfigureAwait(false);
            var agent = await AgentHost.StartAsync(agentOptions, TimeProvider.System, host.Logging, ct).ConfigureAwait(false);
            return new InProcessWrit(td, server, admin, agent, agentOptions.SocketPath);
        }
        catch
        {
            admin?.Dispose();
            await server.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>
    /// Options of an agent of <paramref name="server"/> in <paramref name="dir"/>/<paramref name="name"/>: attested with
    /// <paramref name="tpm"/> when given, else with a new join token.
    /// </summary>
    public static async Task<Writ.Agent.AgentOptions> AgentOptionsAsync(TrustDomain td, WritServerHost server, IBenchAdmin admin, string dir, string name,
        Writ.Tpm.Device.TpmAddress? tpm, CancellationToken ct)
    {
        string? token = null;
        if (tpm is null)
        {
            token = (await admin.CallAsync(s => s.CreateJoinTokenAsync(new CreateJoinTokenRequest(), cancellationToken: ct)).ConfigureAwait(false)).Token;
        }
        var bundleFile = Path.Combine(dir, "bundle.pem");
        if (!File.Exists(bundleFile))
        {
            var bundle = await admin.CallAsync(s => s.GetBundleAsync(new GetBundleRequest(), cancellationToken: ct)).ConfigureAwait(false);
            await File.WriteAllTextAsync(bundleFile, bundle.Pem, ct).ConfigureAwait(false);
        }
        return new Writ.Agent.AgentOptions
        {
            ServerAddress = server.AgentApiAddress,
            TrustDomain = td,
            DataDir = Path.Combine(dir, name),
            SocketPath = Path.Combine(dir, name, "workload.sock"),
            TrustBundlePath = bundleFile,
            JoinToken = token,
            NodeAttestor = tpm is null ? "join_token" : "tpm",
            Tpm = tpm ?? Writ.Tpm.Device.TpmAddress.Device(Writ.Tpm.Device.TpmAddress.DefaultDevice),
            // The benchmarks drive thousands of calls a second from one uid on purpose: they measure the API, not the
            // per-uid rate guard (workload_api.rate_limit_per_uid), which would refuse most of them.
            RateLimitPerUid = 0,
        };
    }

    public async ValueTask DisposeAsync()
    {
        await Agent.DisposeAsync().ConfigureAwait(false);
        Admin.Dispose();
        await Server.DisposeAsync().ConfigureAwait(false);
    }
}
