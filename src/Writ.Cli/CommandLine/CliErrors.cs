using System.Text.Json;
using Writ.Protocol.Errors;

namespace Writ.Cli.CommandLine;

/// <summary>
/// The CLI's own stable codes (docs/errors.md, "CLI") and the one way an error reaches the user: one line on stderr,
/// <c>error: WRIT-…: message</c>, or with <c>--output json</c> anywhere on the command line
/// <c>{"error":{"code":"WRIT-…","message":"…"}}</c> (one line, also on stderr: stdout carries only results).
/// </summary>
public static class CliErrors
{
    public const string Usage = "WRIT-CLI-USAGE";
    public const string UnknownCommand = "WRIT-CLI-UNKNOWN-COMMAND";
    public const string UnknownOption = "WRIT-CLI-UNKNOWN-OPTION";
    public const string MissingOption = "WRIT-CLI-MISSING-OPTION";
    public const string Config = "WRIT-CLI-CONFIG";
    public const string File = "WRIT-CLI-FILE";
    public const string OutputUnsafe = "WRIT-CLI-OUTPUT-UNSAFE";
    public const string Failed = "WRIT-CLI-FAILED";
    public const string AdminSocket = "WRIT-CLI-ADMIN-SOCKET";
    public const string AdminSocketUntrusted = "WRIT-CLI-ADMIN-SOCKET-UNTRUSTED";
    public const string ServerUnreachable = "WRIT-CLI-SERVER-UNREACHABLE";
    public const string NotAdminApi = "WRIT-CLI-NOT-ADMIN-API";
    public const string ServerError = "WRIT-CLI-SERVER-ERROR";
    public const string AgentUnreachable = "WRIT-CLI-AGENT-UNREACHABLE";
    public const string AgentError = "WRIT-CLI-AGENT-ERROR";
    public const string Cancelled = "WRIT-CLI-CANCELLED";
    public const string PolicyInvalid = "WRIT-CLI-POLICY-INVALID";
    public const string PolicyCheckFailed = "WRIT-CLI-POLICY-CHECK-FAILED";
    public const string JwtInvalid = "WRIT-CLI-JWT-INVALID";

    private static readonly JsonSerializerOptions OneLineJson = new() { Encoder = Output.JsonOptions.Encoder };

    /// <summary>True when the command line asks for JSON output (<c>--output json</c> or <c>--output=json</c>), whatever the command.</summary>
    public static bool WantsJson(IReadOnlyList<string> args)
    {
        for (var i = 0; i < args.Count; i++)
        {
            if (args[i] == "--")
            {
                break;
            }
            if (args[i] == "--output=json" || (args[i] == "--output" && i + 1 < args.Count && args[i + 1] == "json"))
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>Prints one error in the form the command line asked for.</summary>
    public static void Print(CommandContext ctx, string code, string message)
    {
        var line = WritStatus.OneLine(message);
        ctx.Error.WriteLine(ctx.JsonErrors
            ? JsonSerializer.Serialize(new { error = new { code, message = line } }, OneLineJson)
            : $"error: {code}: {line}");
    }

    /// <summary>
    /// A failure reported in a message that may already start with a code (a server's or agent's refusal relayed by
    /// the agent): that code is kept, else <paramref name="fallback"/>.
    /// </summary>
    public static CommandFailedException Relayed(string message, string fallback, int exitCode = CommandRunner.ExitFailure)
    {
        var (code, text) = WritStatus.Split(message);
        return new CommandFailedException(text, exitCode, code ?? fallback);
    }
}
