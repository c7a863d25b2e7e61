using Writ.Cli.CommandLine;

namespace Writ.Cli.Commands;

public static class AllCommands
{
    public static IReadOnlyList<CommandSpec> Build() =>
    [
        .. PolicyCommands.All(),
        .. WorkloadCommands.All(),
    ];
}
