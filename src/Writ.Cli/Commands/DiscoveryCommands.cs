using Writ.Cli.Admin;
using Writ.Cli.CommandLine;
using Writ.Protocol.Admin;
using Writ.Protocol.Errors;
using Writ.Server.Discovery;

namespace Writ.Cli.Commands;

/// <summary>`writ oidc-discovery run`: OIDC discovery for JWT-SVIDs beside a server (docs/federation.md#oidc-discovery).</summary>
public static class DiscoveryCommands
{
    public static IEnumerable<CommandSpec> All() =>
    [
        new("oidc-discovery run", "Serve /.well-known/openid-configuration and the JWT-SVID keys (JWKS) of a server over HTTPS, for OIDC verifiers.",
        [
            new("admin-socket", "the server's admin socket (default: as for the admin commands)", "PATH", EnvVar: AdminConnection.SocketEnvVar),
            new("bind", "HOST:PORT to serve on, e.g. 0.0.0.0:8443 or oidc.example.org:443", "HOST:PORT", Required: true),
            new("tls-cert", "PEM certificate (then intermediates) to serve HTTPS with; reloaded when the file changes", "FILE"),
            new("tls-key", "PEM private key of --tls-cert", "FILE"),
            new("issuer", "the issuer URL verifiers use (the server's jwt_issuer); default https://HOST[:PORT] of --bind", "URL"),
            new("refresh-interval", "how often the keys are read from the server (default 5s)", "DURATION"),
            new("log-level", "debug, info (default), warn or error", "LEVEL"),
        ], RunAsync),
    ];

    private static async Task<int> RunAsync(ParsedArgs args, CommandContext ctx)
    {
        DiscoveryOptions options;
        try
        {
            options = DiscoveryOptions.Build(args.Require("bind"), args.Get("issuer"), args.Get("tls-cert"), args.Get("tls-key"), args.GetDuration("refresh-interval"));
        }
        catch (WritException e)
        {
            throw new UsageException(e.Message, e.Code);
        }
        var level = args.Get("log-level") ?? "info";
        if (level is not ("debug" or "info" or "warn" or "error"))
        {
            throw new UsageException($"--log-level must be debug, info, warn or error, got '{level}'");
        }
        var socket = AdminConnection.ResolveSocket(args.Get("admin-socket"), Environment.GetEnvironmentVariable(AdminConnection.SocketEnvVar));
        // The connection is made on first use and again after a failure: the provider may start before the server (or
        // outlive a restart of it) and keeps serving the last keys it read meanwhile. The socket's owner and the answering
        // process are checked on every connection (AdminConnection), as for every admin command.
        AdminConnection? admin = null;
        async Task<BundleReading> FetchAsync(CancellationToken ct)
        {
            try
            {
                admin ??= new AdminConnection(socket);
                var r = await admin.CallAsync(s => s.GetBundleAsync(new GetBundleRequest(), deadline: DateTime.UtcNow.AddSeconds(10), cancellationToken: ct)).ConfigureAwait(false);
                return new BundleReading(r.TrustDomain, r.SpiffeBundleJson);
            }
            catch
            {
                admin?.Dispose();
                admin = null;
                throw;
            }
        }
        try
        {
            await using var host = await DiscoveryHost.StartAsync(options, socket, FetchAsync, TimeProvider.System,
                b => ServerCommands.ConfigureLogging(b, level, "text"), ctx.Cancellation).ConfigureAwait(false);
            ctx.Out.WriteLine($"ready issuer={host.Issuer} address={string.Join(',', host.Addresses)}");
            ctx.Out.Flush();
            try
            {
                await Task.Delay(Timeout.Infinite, ctx.Cancellation).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
            }
        }
        finally
        {
            admin?.Dispose();
        }
        return CommandRunner.ExitOk;
    }
}
