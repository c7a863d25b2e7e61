using System.Net;
using Microsoft.Extensions.Logging;
using Writ.Agent;
using Writ.Agent.Hosting;
using Writ.Cli.Admin;
using Writ.Cli.Workload;
using Writ.IntegrationTests.Harness;
using Writ.Protocol.Admin;
using Writ.Server.Ca;
using Writ.Server.Configuration;
using Writ.Server.Hosting;
using Writ.Spiffe;
using ProtoEntry = Writ.Protocol.Agent.Entry;
using ProtoSelector = Writ.Protocol.Agent.Selector;

namespace Writ.IntegrationTests;

/// <summary>
/// The shared fan-out re-authenticates every stream after a wake from one read of the node records (issue #16). That
/// read may predate an agent that enrolled after it: the agent's stream must not be refused on it (the agent would take
/// "not attested" for an eviction, forget its SVID and stop). A real server and two real agents in this process.
/// </summary>
public sealed class SharedFanoutAuthTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task An_agent_enrolled_after_the_shared_node_read_keeps_its_stream_and_gets_its_entries()
    {
        using var dir = new TempDir();
        var quiet = (Action<ILoggingBuilder>)(b => b.SetMinimumLevel(LogLevel.Warning));
        var td = TrustDomain.Parse("example.org");
        var serverOptions = new ServerOptions
        {
            TrustDomain = td, DataDir = dir["server"], Bind = new IPEndPoint(IPAddress.Loopback, 0), AdminSocket = dir["admin.sock"],
            StoreKind = "sqlite", StoreConnection = Path.Combine(dir["server"], "writ.db"), KeyManager = "memory", Ca = new CaOptions(),
        };
        await using var server = await WritServerHost.StartAsync(serverOptions, TimeProvider.System, quiet, Ct);
        var feed = server.Server.SyncFeed;
        feed.NodeReadMaxAge = TimeSpan.FromMinutes(10);   // the shared read stays in use for the whole test: the case is certain
        using var admin = new AdminConnection(serverOptions.AdminSocket);
        var bundle = await admin.CallAsync(s => s.GetBundleAsync(new GetBundleRequest(), cancellationToken: Ct));
        await File.WriteAllTextAsync(dir["bundle.pem"], bundle.Pem, Ct);

        async Task<AgentHost> StartAgentAsync(string name)
        {
            var token = await admin.CallAsync(s => s.CreateJoinTokenAsync(new CreateJoinTokenRequest(), cancellationToken: Ct));
            return await AgentHost.StartAsync(new AgentOptions
            {
                ServerAddress = server.AgentApiAddress, TrustDomain = td, DataDir = dir[name], SocketPath = dir[name + ".sock"],
                TrustBundlePath = dir["bundle.pem"], JoinToken = token.Token,
            }, TimeProvider.System, quiet, Ct);
        }

        async Task CreateAsync(string path, string parent) =>
            await admin.CallAsync(s => s.CreateEntriesAsync(new CreateEntriesRequest
            {
                Entries = { new ProtoEntry { SpiffeId = td.IdString + path, ParentId = parent, Selectors = { new ProtoSelector { Type = "unix", Value = "uid:0" } } } },
            }, cancellationToken: Ct));

        await using var first = await StartAgentAsync("a");
        // A change wakes the first agent's stream: its re-authentication takes the shared read of the nodes.
        await CreateAsync("/a", first.AgentId);
        await UntilAsync(() => feed.NodeReads >= 1, "the first stream to re-authenticate from the shared read");
        var reads = feed.NodeReads;

        // The second agent enrols after that read and opens its stream (authenticated from the store).
        await using var second = await StartAgentAsync("b");
        // A change for it wakes its stream: re-authenticated from the shared read, which does not know it yet.
        await CreateAsync("/b", second.AgentId);
        using var client = new WorkloadClient(dir["b.sock"]);
        using var watch = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        watch.CancelAfter(TimeSpan.FromSeconds(30));
        var served = false;
        while (!served)
        {
            // No identity yet (the entry is on its way): the Workload API says PermissionDenied; ask again.
            try
            {
                using var call = client.Client.FetchX509SVID(new X509SVIDRequest(), WorkloadClient.Headers, cancellationToken: watch.Token);
                while (!served && await call.ResponseStream.MoveNext(watch.Token))
                    served = call.ResponseStream.Current.Svids.Any(s => s.SpiffeId == td.IdString + "/b");
            }
            catch (Grpc.Core.RpcException e) when (e.StatusCode == Grpc.Core.StatusCode.PermissionDenied && !watch.IsCancellationRequested)
            {
                await Task.Delay(50, watch.Token);
            }
        }
        Assert.Equal(reads, feed.NodeReads);        // the stale shared read was the one used...
        Assert.False(second.Completion.IsCompleted); // ...and the agent was not refused on it
    }

    private static async Task UntilAsync(Func<bool> condition, string what)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        deadline.CancelAfter(TimeSpan.FromSeconds(30));
        while (!condition())
        {
            try
            {
                await Task.Delay(20, deadline.Token);
            }
            catch (OperationCanceledException) when (!Ct.IsCancellationRequested)
            {
                Assert.Fail($"timed out waiting for {what}");
            }
        }
    }
}
