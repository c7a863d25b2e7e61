using Microsoft.Extensions.Logging;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Console;
using Writ.Cli.CommandLine;
using Writ.Protocol.Errors;
using Writ.Server.Configuration;
using Writ.Server.Hosting;
using Writ.Server.Storage;

namespace Writ.Cli.Commands;

/// <summary>`writ server run|validate`: the server's composition root.</summary>
public static class ServerCommands
{
    /// <summary>The server could not start for a reason without a finer code (a store or file it could not use).</summary>
    public const string StartFailedCode = "WRIT-SERVER-START-FAILED";

    private static IReadOnlyList<OptionSpec> ConfigOptions() => ConfigFlags.Options(ServerConfigLoader.Keys, ServerConfigLoader.EnvPrefix);

    public static IEnumerable<CommandSpec> All() =>
    [
        new("server run", "Run the Writ server (CA, registration, agent API, admin API).", ConfigOptions(), RunAsync),
        new("server validate", "Check a server configuration and report every problem at once.", ConfigOptions(), ValidateAsync),
    ];

    /// <summary>Defaults, then the config file, then WRIT_SERVER_* variables, then flags.</summary>
    public static ServerOptions? Load(ParsedArgs args, out IReadOnlyList<string> errors)
    {
        var sources = ConfigFlags.Collect(args, ServerConfigLoader.Keys, ServerConfigLoader.EnvPrefix);
        return ServerConfigLoader.Build(sources, out errors);
    }

    private static Task<int> ValidateAsync(ParsedArgs args, CommandContext ctx)
    {
        var options = Load(args, out var errors);
        if (options is null)
        {
            var code = ConfigFlags.Report(ctx, errors);
            if (!ctx.JsonErrors)
            {
                ctx.Error.WriteLine($"{errors.Count} problem(s) in the server configuration; nothing was started");
            }
            return Task.FromResult(code);
        }
        ctx.Out.WriteLine($"configuration is valid: trust domain {options.TrustDomain.Name}, data dir {options.DataDir}, store {options.StoreKind}, agent API {options.Bind}, admin socket {options.AdminSocket}");
        return Task.FromResult(CommandRunner.ExitOk);
    }

    private static async Task<int> RunAsync(ParsedArgs args, CommandContext ctx)
    {
        var options = Load(args, out var errors);
        if (options is null)
        {
            return ConfigFlags.Report(ctx, errors);
        }
        WritServerHost host;
        try
        {
            host = await WritServerHost.StartAsync(options, TimeProvider.System, b => ConfigureLogging(b, options.LogLevel, options.LogFormat), ctx.Cancellation).ConfigureAwait(false);
        }
        catch (Writ.Protocol.StartupRefusedException e)
        {
            throw new CommandFailedException(e.Message, code: e.Code);
        }
        catch (Writ.Protocol.Errors.WritException e)
        {
            throw new CommandFailedException($"{e.Code}: the server could not start: {e.Message}");
        }
        catch (Exception e) when (e is StoreException or InvalidOperationException or IOException or UnauthorizedAccessException)
        {
            throw new CommandFailedException($"the server could not start: {e.Message}", code: e is WritException w ? w.Code : StartFailedCode);
        }
        catch (Exception e) when (e.GetBaseException() is System.Net.Sockets.SocketException se)
        {
            throw new CommandFailedException($"the server could not listen on {options.Bind}: {se.Message}; choose another --bind", code: StartupCodes.BindFailed);
        }
        await using (host.ConfigureAwait(false))
        {
            ctx.Out.WriteLine($"ready agent_api={host.AgentApiAddress} admin_socket={options.AdminSocket} trust_domain={options.TrustDomain.Name}"
                + (host.MetricsAddress is { } m ? $" metrics={m}" : "")
                + (host.BundleEndpointAddress is { } b ? $" bundle_endpoint={b}" : ""));
            ctx.Out.Flush();
            try
            {
                await Task.Delay(Timeout.Infinite, ctx.Cancellation).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
            }
        }
        return CommandRunner.ExitOk;
    }

    public static void ConfigureLogging(ILoggingBuilder b, string level, string format)
    {
        b.SetMinimumLevel(level switch
        {
            "debug" => LogLevel.Debug,
            "warn" => LogLevel.Warning,
            "error" => LogLevel.Error,
            _ => LogLevel.Information,
        });
        b.AddFilter("Microsoft", LogLevel.Warning);
        b.AddFilter("Grpc", LogLevel.Warning);
        if (format == "json")
        {
            b.AddJsonConsole(o =>
            {
                o.TimestampFormat = "yyyy-MM-dd'T'HH:mm:ss.fff'Z' ";
                o.UseUtcTimestamp = true;
            });
        }
        else
        {
            b.AddSimpleConsole(o =>
            {
                o.SingleLine = true;
                o.TimestampFormat = "yyyy-MM-dd'T'HH:mm:ss.fff'Z' ";
                o.UseUtcTimestamp = true;
            });
        }
        b.Services.Configure<ConsoleLoggerOptions>(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
    }
}
