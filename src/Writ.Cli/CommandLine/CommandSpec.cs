namespace Writ.Cli.CommandLine;

public sealed record OptionSpec(
    string Name,
    string Help,
    string ValueName = "VALUE",
    bool IsFlag = false,
    bool Repeatable = false,
    bool Required = false,
    string? EnvVar = null);

/// <summary>One `writ ...` command: its words, its options and what it does. Handlers return the exit code.</summary>
public sealed record CommandSpec(
    string Path,
    string Summary,
    IReadOnlyList<OptionSpec> Options,
    Func<ParsedArgs, CommandContext, Task<int>> Handler,
    string? Positionals = null)
{
    public string[] Words { get; } = Path.Split(' ', StringSplitOptions.RemoveEmptyEntries);

    public OptionSpec? FindOption(string name) => Options.FirstOrDefault(o => o.Name == name);
}

/// <summary>What a handler may use: output streams and cancellation. Tests run handlers in-process through this.</summary>
public sealed class CommandContext(TextWriter stdout, TextWriter stderr, CancellationToken cancellation)
{
    public TextWriter Out { get; } = stdout;
    public TextWriter Error { get; } = stderr;
    public CancellationToken Cancellation { get; } = cancellation;

    /// <summary>Errors as JSON (<c>--output json</c> on the command line; set by the runner), see <see cref="CliErrors"/>.</summary>
    public bool JsonErrors { get; set; }

    /// <summary>Opens standard input (read by commands that wait for it to close, e.g. `writ jwt fetch --hold`).</summary>
    public Func<Stream> OpenInput { get; init; } = Console.OpenStandardInput;
}
