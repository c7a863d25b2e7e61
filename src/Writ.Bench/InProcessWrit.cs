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

    public static async Task<InProcessWrit> StartAsync(string dir, BenchHost host, CancellationToken ct)
    {
        var td = TrustDomain.Parse("bench.writ");
        var sources = new ConfigSources(ServerConfigLoader.Keys);
        sources.Set("trust_domain", td.Name, "bench");
        sources.Set("data_dir", Path.Combine(dir, "server"), "bench");
        sources.Set("admin_socket", Path.Combine(dir, "server", "admin.sock"), "bench");   // not the machine-wide default
        sources.Set("bind", "127.0.0.1:0", "bench");
        sources.Set("key_manager", "memory", "bench");
        var serverOptions = ServerConfigLoader.Build(sources, out var errors)
            ?? throw new BenchFailedException(string.Join("; ", errors));
        var server = await WritServerHost.StartAsync(serverOptions, TimeProvider.System, host.Logging, ct).ConfigureAwait(false);
        IBenchAdmin? admin = null;
        try
        {
            admin = host.ConnectAdmin(serverOptions.AdminSocket);
            var token = await admin.CallAsync(s => s.CreateJoinTokenAsync(new CreateJoinTokenRequest(), cancellationToken: ct)).ConfigureAwait(false);
            var bundle = await admin.CallAsync(s => s.GetBundleAsync(new GetBundleRequest(), cancellationToken: ct)).ConfigureAwait(false);
            var bundleFile = Path.Combine(dir, "bundle.pem");
            await File.WriteAllTextAsync(bundleFile, bundle.Pem, ct).ConfigureAwait(false);
            var agentOptions = new Writ.Agent.AgentOptions
            {
                ServerAddress = server.AgentApiAddress,
                TrustDomain = td,
                DataDir = Path.Combine(dir, "agent"),
                SocketPath = Path.Combine(dir, "agent", "workload.sock"),
                TrustBundlePath = bundleFile,
                JoinToken = token.Token,
                // The benchmarks drive thousands of calls a second from one uid on purpose: they measure the API, not the
                // per-uid rate guard (workload_api.rate_limit_per_uid), which would refuse most of them.
                RateLimitPerUid = 0,
            };
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

    public async ValueTask DisposeAsync()
    {
        await Agent.DisposeAsync().ConfigureAwait(false);
        Admin.Dispose();
        await Server.DisposeAsync().ConfigureAwait(false);
    }
}
