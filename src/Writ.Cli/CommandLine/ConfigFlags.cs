using Writ.Server.Configuration;

namespace Writ.Cli.CommandLine;

/// <summary>
/// The configuration rules `writ server run` and `writ agent run` share: every key is also a flag (`ca.key_type` →
/// `--ca-key-type`) and an environment variable (`PREFIX_CA_KEY_TYPE`); defaults &lt; `--config FILE` &lt; environment &lt; flags.
/// </summary>
public static class ConfigFlags
{
    public static IReadOnlyList<OptionSpec> Options(IReadOnlyList<ConfigKey> keys, string envPrefix) =>
        [new("config", "JSON config file (keys as in docs/configuration.md)", "FILE"),
         .. keys.Select(k => new OptionSpec(k.Flag, $"{k.Help} [env {k.EnvVar(envPrefix)}]", "VALUE"))];

    public static ConfigSources Collect(ParsedArgs args, IReadOnlyList<ConfigKey> keys, string envPrefix)
    {
        var sources = new ConfigSources(keys);
        if (args.Get("config") is { } file)
        {
            sources.AddJsonFile(file);
        }
        sources.AddEnvironment(envPrefix, Environment.GetEnvironmentVariable);
        foreach (var k in keys)
        {
            if (args.Get(k.Flag) is { } v)
            {
                sources.Set(k.Name, v, $"flag --{k.Flag}");
            }
        }
        return sources;
    }

    /// <summary>
    /// Prints every configuration problem, one `error:` line each; returns the usage exit code. A problem that starts
    /// with its own stable code (`WRIT-CONFIG-…: message`, or the agent's `WRIT-AGENT-SERVER-…`) is printed under that code, the rest under WRIT-CLI-CONFIG.
    /// </summary>
    public static int Report(CommandContext ctx, IReadOnlyList<string> errors)
    {
        foreach (var e in errors)
        {
            var colon = e.IndexOf(": ", StringComparison.Ordinal);
            var own = (e.StartsWith("WRIT-CONFIG-", StringComparison.Ordinal) || e.StartsWith("WRIT-AGENT-SERVER-", StringComparison.Ordinal)) && colon > 0 && !e[..colon].Contains(' ', StringComparison.Ordinal);
            CliErrors.Print(ctx, own ? e[..colon] : CliErrors.Config, own ? e[(colon + 2)..] : e);
        }
        return CommandRunner.ExitUsage;
    }
}
