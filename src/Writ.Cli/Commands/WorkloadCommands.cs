using Writ.Cli.CommandLine;

namespace Writ.Cli.Commands;

/// <summary>Workload-side commands that talk to an agent's Workload API: svid fetch|watch, jwt fetch|validate, bundle fetch.</summary>
public static class WorkloadCommands
{
    public static IEnumerable<CommandSpec> All() => [];
}
