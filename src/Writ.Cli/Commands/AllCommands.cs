using Writ.Cli.CommandLine;

namespace Writ.Cli.Commands;

public static class AllCommands
{
    public static IReadOnlyList<CommandSpec> Build() =>
    [
        .. ServerCommands.All(),
        .. AdminCommands.All(),
        .. PolicyCommands.All(),
        .. WorkloadCommands.All(),
    ];
}
