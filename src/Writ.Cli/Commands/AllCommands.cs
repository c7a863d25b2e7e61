using Writ.Cli.CommandLine;

namespace Writ.Cli.Commands;

public static class AllCommands
{
    public static IReadOnlyList<CommandSpec> Build() =>
    [
        .. QuickstartCommand.All(),
        .. ServerCommands.All(),
        .. AgentCommands.All(),
        .. AdminCommands.All(),
        .. RevokeCommands.All(),
        .. TpmCommands.All(),
        .. FederationCommands.All(),
        .. PolicyCommands.All(),
        .. DecisionCommands.All(),
        .. PolicyLifecycleCommands.All(),
        .. AuditCommands.All(),
        .. WorkloadCommands.All(),
        .. CiCommands.All(),
        .. BenchCommands.All(),
    ];
}
