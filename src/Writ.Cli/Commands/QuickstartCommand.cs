using System.Security.Cryptography;
using Writ.Agent;
using Writ.Agent.Hosting;
using Writ.Cli.Admin;
using Writ.Cli.CommandLine;
using Writ.Cli.Workload;
using Writ.Protocol.Admin;
using Writ.Server.Configuration;
using Writ.Server.Hosting;
using Writ.Spiffe;
using Writ.Spiffe.Bundles;
using Writ.Spiffe.X509;
using ProtoEntry = Writ.Protocol.Agent.Entry;
using ProtoSelector = Writ.Protocol.Agent.Selector;

namespace Writ.Cli.Commands;

/// <summary>
/// `writ quickstart`: a newcomer's first five minutes in one command. A server on SQLite and an agent (join token)
/// on local sockets in a state directory, two entries for this very process — one by uid, one by the SHA-256 of its
/// executable — and the SVIDs fetched through the Workload API as any workload would, verified and printed.
/// </summary>
public static class QuickstartCommand
{
    public static IEnumerable<CommandSpec> All() =>
    [
        new("quickstart", "Run a server and an agent locally and fetch this process's SVID through the Workload API.",
            [new("dir", "state directory, emptied first (default .writ/quickstart)", "DIR"),
             new("trust-domain", "trust domain (default quickstart.writ)", "TD"),
             new("keep-running", "keep the server and agent running after the demo (Ctrl-C to stop)", IsFlag: true)], RunAsync),
    ];

    private static async Task<int> RunAsync(ParsedArgs a, CommandContext ctx)
    {
        var dir = Path.GetFullPath(a.Get("dir") ?? ".writ/quickstart");
        if (Directory.Exists(dir))
        {
            Directory.Delete(dir, recursive: true);
        }
        Directory.CreateDirectory(dir);
        var tdText = a.Get("trust-domain") ?? "quickstart.writ";
        if (!TrustDomain.TryParse(tdText, out var td, out var tdErr))
        {
            throw new UsageException($"--trust-domain '{tdText}' is invalid: {tdErr}");
        }
        var quiet = (Action<Microsoft.Extensions.Logging.ILoggingBuilder>)(b => ServerCommands.ConfigureLogging(b, "warn", "text"));

        var sources = new ConfigSources(ServerConfigLoader.Keys);
        sources.Set("trust_domain", td.Name, "quickstart");
        sources.Set("data_dir", Path.Combine(dir, "server"), "quickstart");
        sources.Set("admin_socket", Path.Combine(dir, "server", "admin.sock"), "quickstart");   // not the machine-wide default
        sources.Set("bind", "127.0.0.1:0", "quickstart");
        var serverOptions = ServerConfigLoader.Build(sources, out var errors)
            ?? throw new CommandFailedException(string.Join("; ", errors));
        ctx.Out.WriteLine($"1. Server: trust domain {td.Name}, SQLite in {serverOptions.DataDir}");
        await using var server = await WritServerHost.StartAsync(serverOptions, TimeProvider.System, quiet, ctx.Cancellation).ConfigureAwait(false);
        ctx.Out.WriteLine($"   agent API on {server.AgentApiAddress}, admin socket {serverOptions.AdminSocket}");

        using var admin = new AdminConnection(serverOptions.AdminSocket);
        var token = await admin.CallAsync(s => s.CreateJoinTokenAsync(new CreateJoinTokenRequest(), cancellationToken: ctx.Cancellation)).ConfigureAwait(false);
        var bundle = await admin.CallAsync(s => s.GetBundleAsync(new GetBundleRequest(), cancellationToken: ctx.Cancellation)).ConfigureAwait(false);
        var bundleFile = Path.Combine(dir, "bundle.pem");
        await File.WriteAllTextAsync(bundleFile, bundle.Pem, ctx.Cancellation).ConfigureAwait(false);
        ctx.Out.WriteLine($"2. Join token generated (single use) for {token.AgentSpiffeId}");

        var agentOptions = new AgentOptions
        {
            ServerAddress = server.AgentApiAddress,
            TrustDomain = td,
            DataDir = Path.Combine(dir, "agent"),
            SocketPath = Path.Combine(dir, "agent", "workload.sock"),
            TrustBundlePath = bundleFile,
            JoinToken = token.Token,
        };
        await using var agent = await AgentHost.StartAsync(agentOptions, TimeProvider.System, quiet, ctx.Cancellation).ConfigureAwait(false);
        ctx.Out.WriteLine($"3. Agent attested as {agent.AgentId}; Workload API on {agentOptions.SocketPath}");

        var uid = Writ.Server.Hosting.UnixPeer.EffectiveUid;
        var exe = Environment.ProcessPath ?? "/proc/self/exe";
        var sha = Convert.ToHexStringLower(await SHA256.HashDataAsync(File.OpenRead("/proc/self/exe"), ctx.Cancellation).ConfigureAwait(false));
        var entries = new CreateEntriesRequest
        {
            Entries =
            {
                Entry(td, $"/quickstart/uid-{uid}", agent.AgentId, "unix", $"uid:{uid}"),
                Entry(td, $"/quickstart/exe/{Path.GetFileName(exe)}", agent.AgentId, "unix", $"sha256:{sha}"),
            },
        };
        await admin.CallAsync(s => s.CreateEntriesAsync(entries, cancellationToken: ctx.Cancellation)).ConfigureAwait(false);
        ctx.Out.WriteLine($"4. Entries registered: unix:uid:{uid} and unix:sha256:{sha[..16]}… ({exe})");

        using var workload = new WorkloadClient(agentOptions.SocketPath);
        X509SVIDResponse response;
        using (var deadline = CancellationTokenSource.CreateLinkedTokenSource(ctx.Cancellation))
        {
            deadline.CancelAfter(TimeSpan.FromSeconds(30));
            response = await FetchWhenSyncedAsync(workload, entries.Entries.Count, deadline.Token).ConfigureAwait(false);
        }
        var trust = TrustBundle.ParsePem(td, bundle.Pem);
        ctx.Out.WriteLine($"5. This process (pid {Environment.ProcessId}) fetched {response.Svids.Count} X.509-SVID(s) over the Workload API:");
        ctx.Out.WriteLine();
        foreach (var s in response.Svids)
        {
            var chain = WorkloadClient.ParseCertificates(s.X509Svid.Span);
            var verdict = X509SvidValidator.Validate(chain, trust, DateTimeOffset.UtcNow);
            ctx.Out.WriteLine($"   SPIFFE ID:  {s.SpiffeId}");
            ctx.Out.WriteLine($"   Expires at: {Output.Time(new DateTimeOffset(chain[0].NotAfter.ToUniversalTime()))}");
            for (var i = 0; i < chain.Count; i++)
            {
                ctx.Out.WriteLine($"   Chain [{i}]:  {chain[i].Subject}  (issued by {chain[i].Issuer})");
            }
            ctx.Out.WriteLine($"   Verified against the trust bundle: {(verdict.IsValid ? "yes" : "NO: " + verdict.Error)}");
            ctx.Out.WriteLine();
        }
        ctx.Out.WriteLine($"Try it yourself: SPIFFE_ENDPOINT_SOCKET=unix://{agentOptions.SocketPath} writ svid fetch   (with --keep-running)");
        if (a.Flag("keep-running"))
        {
            ctx.Out.WriteLine("Server and agent keep running; Ctrl-C stops them.");
            try
            {
                await Task.Delay(Timeout.Infinite, ctx.Cancellation).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
            }
        }
        return 0;
    }

    /// <summary>The agent learns of new entries through its sync stream: wait (with a deadline) until all are served.</summary>
    private static async Task<X509SVIDResponse> FetchWhenSyncedAsync(WorkloadClient workload, int expected, CancellationToken ct)
    {
        while (true)
        {
            try
            {
                using var call = workload.Client.FetchX509SVID(new X509SVIDRequest(), WorkloadClient.Headers, cancellationToken: ct);
                while (await call.ResponseStream.MoveNext(ct).ConfigureAwait(false))
                {
                    if (call.ResponseStream.Current.Svids.Count >= expected)
                    {
                        return call.ResponseStream.Current;
                    }
                }
            }
            catch (Grpc.Core.RpcException e) when (e.StatusCode == Grpc.Core.StatusCode.PermissionDenied && !ct.IsCancellationRequested)
            {
                await Task.Delay(50, ct).ConfigureAwait(false);   // entries not synced yet
            }
            catch (Grpc.Core.RpcException) when (ct.IsCancellationRequested)
            {
                throw new CommandFailedException("the agent did not serve the SVIDs within 30 s; see the log above");
            }
        }
    }

    private static ProtoEntry Entry(TrustDomain td, string path, string parent, string type, string value) => new()
    {
        SpiffeId = SpiffeId.Parse(td.IdString + path).ToString(),
        ParentId = parent,
        Selectors = { new ProtoSelector { Type = type, Value = value } },
        X509TtlSeconds = 600,
    };
}
