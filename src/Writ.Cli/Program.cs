using Writ.Cli.CommandLine;
using Writ.Cli.Commands;

using var cts = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) =>
{
    e.Cancel = true;
    cts.Cancel();
};
using var term = System.Runtime.InteropServices.PosixSignalRegistration.Create(
    System.Runtime.InteropServices.PosixSignal.SIGTERM, ctx =>
    {
        ctx.Cancel = true;
        cts.Cancel();
    });
var runner = new CommandRunner(AllCommands.Build());
return await runner.RunAsync(args, new CommandContext(Console.Out, Console.Error, cts.Token)).ConfigureAwait(false);
