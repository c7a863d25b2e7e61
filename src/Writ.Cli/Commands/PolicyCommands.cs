using Writ.Cli.CommandLine;

namespace Writ.Cli.Commands;

/// <summary>`writ policy ...`: Cedar policy tooling (validate, authorize, format, test).</summary>
public static class PolicyCommands
{
    public static IEnumerable<CommandSpec> All() => [];
}
