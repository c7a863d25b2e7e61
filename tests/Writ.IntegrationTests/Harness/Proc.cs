using System.Diagnostics;
using System.Text;

namespace Writ.IntegrationTests.Harness;

public sealed record ProcResult(int ExitCode, string Stdout, string Stderr)
{
    public override string ToString() => $"exit {ExitCode}\n--- stdout\n{Stdout}\n--- stderr\n{Stderr}";
}

/// <summary>Runs programs (writ, openssl, node, runuser) to completion with a deadline.</summary>
public static class Proc
{
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(60);

    public static async Task<ProcResult> RunAsync(string file, IEnumerable<string> args, string? stdin = null,
        IDictionary<string, string?>? env = null, string? workingDir = null, TimeSpan? timeout = null)
    {
        var psi = new ProcessStartInfo(file)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
            WorkingDirectory = workingDir ?? Directory.GetCurrentDirectory(),
        };
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        psi.Environment["DOTNET_NOLOGO"] = "1";
        psi.Environment.Remove("WRIT_ADMIN_SOCKET");
        if (env is not null)
        {
            foreach (var (k, v) in env)
            {
                if (v is null)
                {
                    psi.Environment.Remove(k);
                }
                else
                {
                    psi.Environment[k] = v;
                }
            }
        }
        using var p = Process.Start(psi) ?? throw new InvalidOperationException($"could not start {file}");
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (stdin is not null)
        {
            await p.StandardInput.WriteAsync(stdin).ConfigureAwait(false);
        }
        p.StandardInput.Close();
        using var cts = new CancellationTokenSource(timeout ?? DefaultTimeout);
        try
        {
            await p.WaitForExitAsync(cts.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} {string.Join(' ', args)} did not finish within {(timeout ?? DefaultTimeout).TotalSeconds}s");
        }
        return new ProcResult(p.ExitCode, await stdout.ConfigureAwait(false), await stderr.ConfigureAwait(false));
    }

    /// <summary>Waits (with a deadline) for a long-running process to exit and returns its exit code.</summary>
    public static async Task<int> WaitForExitAsync(Process p, TimeSpan timeout, string what, LineLog stderr)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await p.WaitForExitAsync(cts.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException($"{what} did not exit within {timeout.TotalSeconds}s\n--- stderr\n{stderr.Text}");
        }
        return p.ExitCode;
    }

    /// <summary>kill -SIGNAL PID (e.g. "TERM"), waiting only for `kill` itself.</summary>
    public static void SendSignal(int pid, string signal)
    {
        using var kill = Process.Start("kill", [$"-{signal}", pid.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
        kill.WaitForExit();
    }

    /// <summary>Runs `writ ARGS` (the built writ.dll under `dotnet`).</summary>
    public static Task<ProcResult> WritAsync(params string[] args) => RunAsync("dotnet", [Repo.WritDll, .. args]);

    public static Task<ProcResult> WritAsync(IDictionary<string, string?> env, params string[] args) => RunAsync("dotnet", [Repo.WritDll, .. args], env: env);
}

/// <summary>Collects a long-running process's output lines so tests can wait for one.</summary>
public sealed class LineLog
{
    private readonly List<string> _lines = [];
    private readonly Lock _lock = new();
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public void Add(string? line)
    {
        if (line is null)
        {
            return;
        }
        TaskCompletionSource old;
        lock (_lock)
        {
            _lines.Add(line);
            old = _changed;
            _changed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }
        old.TrySetResult();
    }

    public string Text
    {
        get
        {
            lock (_lock)
            {
                return string.Join('\n', _lines);
            }
        }
    }

    public async Task<string> WaitForAsync(Func<string, bool> match, TimeSpan timeout, Func<bool>? abort = null)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            Task changed;
            lock (_lock)
            {
                if (_lines.FirstOrDefault(match) is { } hit)
                {
                    return hit;
                }
                changed = _changed.Task;
            }
            if (abort?.Invoke() == true)
            {
                throw new InvalidOperationException("process exited before the expected line; output:\n" + Text);
            }
            var left = deadline - DateTime.UtcNow;
            if (left <= TimeSpan.Zero)
            {
                throw new TimeoutException($"expected line not seen within {timeout.TotalSeconds}s; output:\n{Text}");
            }
            await Task.WhenAny(changed, Task.Delay(left < TimeSpan.FromMilliseconds(200) ? left : TimeSpan.FromMilliseconds(200))).ConfigureAwait(false);
        }
    }
}
