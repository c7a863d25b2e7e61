using System.Text;
using Writ.Protocol.Errors;

namespace Writ.Cli.CommandLine;

/// <summary>Finds the command named by the leading words of the argument list and runs it.</summary>
public sealed class CommandRunner(IReadOnlyList<CommandSpec> commands)
{
    public const int ExitOk = 0;
    public const int ExitFailure = 1;
    public const int ExitUsage = 2;

    public async Task<int> RunAsync(string[] args, CommandContext ctx)
    {
        if (args.Length == 0 || args[0] is "--help" or "-h" or "help")
        {
            ctx.Out.Write(Overview());
            return args.Length == 0 ? ExitUsage : ExitOk;
        }
        if (args[0] is "--version")
        {
            ctx.Out.WriteLine(typeof(CommandRunner).Assembly.GetName().Version?.ToString() ?? "0.0.0");
            return ExitOk;
        }
        ctx.JsonErrors = CliErrors.WantsJson(args);
        var (spec, used) = Match(args);
        if (spec is null)
        {
            var prefix = string.Join(' ', args.TakeWhile(a => !a.StartsWith('-')));
            var near = commands.Where(c => c.Path.StartsWith(args[0], StringComparison.Ordinal)).Select(c => c.Path).ToList();
            CliErrors.Print(ctx, CliErrors.UnknownCommand, near.Count > 0
                ? $"unknown command 'writ {prefix}'; did you mean one of: {string.Join(", ", near.Select(n => "writ " + n))}"
                : $"unknown command 'writ {prefix}'; run 'writ --help' for the list of commands");
            return ExitUsage;
        }
        var rest = args.Skip(used).ToArray();
        if (rest.Contains("--help") || rest.Contains("-h"))
        {
            ctx.Out.Write(Help(spec));
            return ExitOk;
        }
        try
        {
            var parsed = ParsedArgs.Parse(rest, spec);
            return await spec.Handler(parsed, ctx).ConfigureAwait(false);
        }
        catch (UsageException e)
        {
            CliErrors.Print(ctx, e.Code, e.Message);
            return ExitUsage;
        }
        catch (CommandFailedException e)
        {
            CliErrors.Print(ctx, e.Code, e.Message);
            return e.ExitCode;
        }
        catch (Writ.Protocol.StartupRefusedException e)
        {
            // A server or agent refused to start (data dir in use, port in use, ...) from any command that starts one,
            // quickstart included: the same one line with its stable code as 'server run' and 'agent run' print.
            CliErrors.Print(ctx, e.Code, e.Message);
            return ExitFailure;
        }
        catch (WritException e)
        {
            // A library's typed failure met in-process (a store the command opened itself, ...): its own code.
            CliErrors.Print(ctx, e.Code, e.Message);
            return ExitFailure;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // A file the command reads or writes: the operator's to fix, never a stack trace (or SIGABRT).
            CliErrors.Print(ctx, CliErrors.File, e.Message.Split('\n')[0].Trim());
            return ExitFailure;
        }
        catch (OperationCanceledException) when (ctx.Cancellation.IsCancellationRequested)
        {
            return 130;
        }
    }

    private (CommandSpec? Spec, int Used) Match(string[] args)
    {
        CommandSpec? best = null;
        foreach (var c in commands)
        {
            if (c.Words.Length <= args.Length && c.Words.Select((w, i) => w == args[i]).All(x => x)
                && (best is null || c.Words.Length > best.Words.Length))
            {
                best = c;
            }
        }
        return (best, best?.Words.Length ?? 0);
    }

    public string Overview()
    {
        var sb = new StringBuilder();
        sb.AppendLine("writ — workload identity: attested SPIFFE SVIDs, decided by policy.");
        sb.AppendLine();
        sb.AppendLine("Commands:");
        var width = commands.Max(c => c.Path.Length) + 2;
        foreach (var c in commands.OrderBy(c => c.Path, StringComparer.Ordinal))
        {
            sb.Append("  writ ").Append(c.Path.PadRight(width)).AppendLine(c.Summary);
        }
        sb.AppendLine();
        sb.AppendLine("Run 'writ COMMAND --help' for a command's options.");
        return sb.ToString();
    }

    public static string Help(CommandSpec spec)
    {
        var sb = new StringBuilder();
        sb.Append("writ ").Append(spec.Path);
        if (spec.Options.Count > 0)
        {
            sb.Append(" [options]");
        }
        if (spec.Positionals is { } p)
        {
            sb.Append(' ').Append(p);
        }
        sb.AppendLine().AppendLine().AppendLine(spec.Summary);
        if (spec.Options.Count > 0)
        {
            sb.AppendLine().AppendLine("Options:");
            foreach (var o in spec.Options)
            {
                var left = o.IsFlag ? $"--{o.Name}" : $"--{o.Name} {o.ValueName}";
                sb.Append("  ").Append(left.PadRight(32)).Append(o.Help);
                if (o.Repeatable)
                {
                    sb.Append(" (repeatable)");
                }
                if (o.Required)
                {
                    sb.Append(" (required)");
                }
                if (o.EnvVar is { } env)
                {
                    sb.Append($" [env {env}]");
                }
                sb.AppendLine();
            }
        }
        return sb.ToString();
    }
}

/// <summary>
/// An expected failure of a command (server refused, file missing, ...): one line with its stable code (a server's or
/// agent's own when it relays one, else a <see cref="CliErrors"/> code), no stack trace.
/// </summary>
public sealed class CommandFailedException(string message, int exitCode = CommandRunner.ExitFailure, string code = CliErrors.Failed)
    : WritException(code, WritErrorKind.FailedPrecondition, message)
{
    public int ExitCode { get; } = exitCode;
}
