using System.Diagnostics;
using System.Globalization;

namespace Writ.Cli.Workload;

/// <summary>
/// The <c>--on-change</c> command of <c>writ svid watch</c>: run through <c>/bin/sh -c</c> after the files of an update are
/// in place, one run at a time (the caller awaits each run before the next update is written), its output forwarded to
/// stderr line by line (stdout stays the watch's own), stdin empty. A run that outlives <see cref="Timeout"/> is killed
/// with its process tree. A failure is one warning line on stderr with a stable code; the watch goes on.
/// </summary>
public sealed class OnChangeCommand
{
    public const string FailedCode = "WRIT-WATCH-COMMAND-FAILED";
    public const string TimeoutCode = "WRIT-WATCH-COMMAND-TIMEOUT";

    /// <summary>How long the forwarded output may still drain after the command exited (a daemon it started may keep the pipe).</summary>
    private static readonly TimeSpan DrainLimit = TimeSpan.FromSeconds(2);

    private readonly TextWriter _log;
    private readonly Lock _logLock = new();

    public OnChangeCommand(string command, TimeSpan timeout, TextWriter log)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(command);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(timeout, TimeSpan.Zero);
        Command = command;
        Timeout = timeout;
        _log = log ?? throw new ArgumentNullException(nameof(log));
    }

    public string Command { get; }

    public TimeSpan Timeout { get; }

    /// <summary>The shell the command runs under.</summary>
    public string Shell { get; init; } = "/bin/sh";

    /// <summary>
    /// Runs the command once for update number <paramref name="update"/> and returns its exit code, or null when it was
    /// killed (timeout, cancellation) or could not be started. Never throws for the command's own failures.
    /// </summary>
    public async Task<int?> RunAsync(long update, IReadOnlyDictionary<string, string> environment, CancellationToken ct)
    {
        var psi = new ProcessStartInfo(Shell)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add("-c");
        psi.ArgumentList.Add(Command);
        foreach (var (k, v) in environment)
        {
            psi.Environment[k] = v;
        }
        Process process;
        try
        {
            process = Process.Start(psi) ?? throw new InvalidOperationException("no process");
        }
        catch (Exception e) when (e is System.ComponentModel.Win32Exception or InvalidOperationException)
        {
            Warn(FailedCode, $"the --on-change command could not be started for update {update} ({e.Message.Split('\n')[0].Trim()}); the files are in place; the watch goes on");
            return null;
        }
        using (process)
        {
            process.StandardInput.Close();
            var forward = Task.WhenAll(ForwardAsync(process.StandardOutput), ForwardAsync(process.StandardError));
            using var limit = CancellationTokenSource.CreateLinkedTokenSource(ct);
            limit.CancelAfter(Timeout);
            try
            {
                await process.WaitForExitAsync(limit.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                try
                {
                    process.Kill(entireProcessTree: true);
                }
                catch (InvalidOperationException)
                {
                    // exited meanwhile
                }
                await process.WaitForExitAsync(CancellationToken.None).ConfigureAwait(false);
                await Task.WhenAny(forward, Task.Delay(DrainLimit, CancellationToken.None)).ConfigureAwait(false);
                if (!ct.IsCancellationRequested)
                {
                    Warn(TimeoutCode, $"the --on-change command ran longer than {Seconds(Timeout)} for update {update} and was killed; the files are in place; the watch goes on (raise --on-change-timeout if it needs longer)");
                }
                return null;
            }
            await Task.WhenAny(forward, Task.Delay(DrainLimit, CancellationToken.None)).ConfigureAwait(false);
            if (process.ExitCode != 0)
            {
                Warn(FailedCode, $"the --on-change command exited with status {process.ExitCode.ToString(CultureInfo.InvariantCulture)} for update {update}; the files are in place; the watch goes on");
            }
            return process.ExitCode;
        }
    }

    private async Task ForwardAsync(StreamReader reader)
    {
        while (await reader.ReadLineAsync(CancellationToken.None).ConfigureAwait(false) is { } line)
        {
            lock (_logLock)
            {
                _log.WriteLine(line);
                _log.Flush();
            }
        }
    }

    private void Warn(string code, string message)
    {
        lock (_logLock)
        {
            _log.WriteLine($"warning: {code}: {message}");
            _log.Flush();
        }
    }

    private static string Seconds(TimeSpan t) => t.TotalSeconds.ToString("0.###", CultureInfo.InvariantCulture) + "s";
}
