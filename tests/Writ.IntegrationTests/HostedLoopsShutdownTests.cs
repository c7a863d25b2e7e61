using System.Net;
using Microsoft.Extensions.Logging;
using Writ.Agent;
using Writ.Agent.Hosting;
using Writ.Cli.Admin;
using Writ.IntegrationTests.Harness;
using Writ.Protocol.Admin;
using Writ.Protocol.Hosting;
using Writ.Server.Ca;
using Writ.Server.Configuration;
using Writ.Server.Hosting;
using Writ.Spiffe;

namespace Writ.IntegrationTests;

/// <summary>
/// A real server and a real agent attested to it, both in this process: every background loop runs as a hosted service,
/// and stopping each host ends every one of its loops within the shutdown grace, none failing on the way out.
/// </summary>
public sealed class HostedLoopsShutdownTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Stopping_the_agent_and_the_server_ends_every_background_loop_within_the_grace()
    {
        using var dir = new TempDir();
        var quiet = (Action<ILoggingBuilder>)(b => b.SetMinimumLevel(LogLevel.Warning));
        var td = TrustDomain.Parse("example.org");
        var serverOptions = new ServerOptions
        {
            TrustDomain = td, DataDir = dir["server"], Bind = new IPEndPoint(IPAddress.Loopback, 0), AdminSocket = dir["admin.sock"],
            StoreKind = "sqlite", StoreConnection = Path.Combine(dir["server"], "writ.db"), KeyManager = "memory", Ca = new CaOptions(),
            ShutdownGrace = TimeSpan.FromSeconds(5),
        };
        var server = await WritServerHost.StartAsync(serverOptions, TimeProvider.System, quiet, Ct);
        IReadOnlyList<GuardedBackgroundService> serverLoops;
        try
        {
            AgentHost agent;
            using (var admin = new AdminConnection(serverOptions.AdminSocket))
            {
                var token = await admin.CallAsync(s => s.CreateJoinTokenAsync(new CreateJoinTokenRequest(), cancellationToken: Ct));
                var bundle = await admin.CallAsync(s => s.GetBundleAsync(new GetBundleRequest(), cancellationToken: Ct));
                await File.WriteAllTextAsync(dir["bundle.pem"], bundle.Pem, Ct);
                agent = await AgentHost.StartAsync(new AgentOptions
                {
                    ServerAddress = server.AgentApiAddress, TrustDomain = td, DataDir = dir["agent"], SocketPath = dir["workload.sock"],
                    TrustBundlePath = dir["bundle.pem"], JoinToken = token.Token,
                }, TimeProvider.System, quiet, Ct);
            }
            var agentLoops = agent.Loops;
            Assert.Equal(["access reports", "instance reports", "jwt replay reports", "re-attestation", "renewal", "svid rotation", "sync", "workload refusal reports"],
                agentLoops.Select(l => l.Name).Order(StringComparer.Ordinal));
            await Task.WhenAll(agentLoops.Select(l => l.Running)).WaitAsync(TimeSpan.FromSeconds(30), Ct);
            Assert.All(agentLoops, l => Assert.False(l.Completion.IsCompleted, l.Name));

            // The agent's grace is the host's default (30 s): the deadline only bounds a hang.
            await agent.DisposeAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(30), Ct);
            Assert.All(agentLoops, l => Assert.True(l.Completion.IsCompleted, l.Name));
            Assert.All(agentLoops, l => Assert.Equal(0, l.Failures));

            serverLoops = server.Loops;
            Assert.Equal(["bundle watch", "ca rotation", "ci session sweep", "federated bundles", "federation refresh", "ledger checkpoints", "node rechecks", "policy reload", "revocation watch"], serverLoops.Select(l => l.Name).Order(StringComparer.Ordinal));
            await Task.WhenAll(serverLoops.Select(l => l.Running)).WaitAsync(TimeSpan.FromSeconds(30), Ct);
            Assert.All(serverLoops, l => Assert.False(l.Completion.IsCompleted, l.Name));
        }
        finally
        {
            await server.DisposeAsync().AsTask().WaitAsync(serverOptions.ShutdownGrace + TimeSpan.FromSeconds(10), Ct);
        }
        Assert.All(serverLoops, l => Assert.True(l.Completion.IsCompleted, l.Name));
        Assert.All(serverLoops, l => Assert.Equal(0, l.Failures));
    }
}
