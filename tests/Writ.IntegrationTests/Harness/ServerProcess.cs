using System.Diagnostics;

namespace Writ.IntegrationTests.Harness;

/// <summary>
/// A real `writ server run` process on a temp data dir, an ephemeral TCP port and its own admin socket.
/// Start waits for the ready line (with a deadline); Kill/Start restart it on the same data dir.
/// </summary>
public sealed class ServerProcess : IAsyncDisposable
{
    private Process? _process;

    public ServerProcess(string dataDir, string trustDomain = "example.org", params string[] extraArgs)
    {
        DataDir = dataDir;
        TrustDomain = trustDomain;
        ExtraArgs = extraArgs;
    }

    public string DataDir { get; }

    /// <summary>Extra environment variables of the server process (e.g. SSL_CERT_FILE), set before <see cref="StartAsync()"/>.</summary>
    public Dictionary<string, string> Environment { get; } = [];
    public string TrustDomain { get; }
    public string[] ExtraArgs { get; }
    /// <summary>The admin socket: `--admin-socket` from the extra arguments, else data_dir/admin.sock.</summary>
    public string AdminSocket
    {
        get
        {
            var i = Array.IndexOf(ExtraArgs, "--admin-socket");
            return i >= 0 ? ExtraArgs[i + 1] : Path.Combine(DataDir, "admin.sock");
        }
    }

    public string AgentApi { get; private set; } = "";

    /// <summary>Output of the current run (a restart starts new logs, so an old ready line is never mistaken for a new one).</summary>
    public LineLog Stdout { get; private set; } = new();
    public LineLog Stderr { get; private set; } = new();
    public bool HasExited => _process?.HasExited ?? true;

    public static async Task<ServerProcess> StartAsync(string dataDir, string trustDomain = "example.org", params string[] extraArgs)
    {
        var s = new ServerProcess(dataDir, trustDomain, extraArgs);
        await s.StartAsync().ConfigureAwait(false);
        return s;
    }

    public async Task StartAsync()
    {
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        Stdout = new LineLog();
        Stderr = new LineLog();
        var stdout = Stdout;
        var stderr = Stderr;
        foreach (var (k, v) in Environment)
        {
            psi.Environment[k] = v;
        }
        var socketArgs = ExtraArgs.Contains("--admin-socket") ? [] : new[] { "--admin-socket", AdminSocket };
        foreach (var a in (string[])[Repo.WritDll, "server", "run", "--trust-domain", TrustDomain, "--data-dir", DataDir,
                     "--bind", "127.0.0.1:0", .. socketArgs, .. ExtraArgs])
        {
            psi.ArgumentList.Add(a);
        }
        var p = Process.Start(psi) ?? throw new InvalidOperationException("could not start writ server");
        p.OutputDataReceived += (_, e) => stdout.Add(e.Data);
        p.ErrorDataReceived += (_, e) => stderr.Add(e.Data);
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        _process = p;
        string ready;
        try
        {
            ready = await stdout.WaitForAsync(l => l.StartsWith("ready ", StringComparison.Ordinal), TimeSpan.FromSeconds(60),
                () => p.HasExited).ConfigureAwait(false);
        }
        catch (Exception e) when (e is InvalidOperationException or TimeoutException)
        {
            throw new InvalidOperationException($"writ server did not start: {e.Message}\n--- stderr\n{stderr.Text}", e);
        }
        AgentApi = ready.Split(' ').First(w => w.StartsWith("agent_api=", StringComparison.Ordinal))["agent_api=".Length..];
    }

    /// <summary>Runs `writ ARGS --admin-socket <this server's>`.</summary>
    public Task<ProcResult> WritAsync(params string[] args) => Proc.WritAsync([.. args, "--admin-socket", AdminSocket]);

    /// <summary>SIGKILL: no clean shutdown, as a crash would be.</summary>
    public async Task KillAsync()
    {
        if (_process is { HasExited: false } p)
        {
            p.Kill(entireProcessTree: true);
            await p.WaitForExitAsync().ConfigureAwait(false);
        }
    }

    /// <summary>Sends SIGTERM and returns at once (see <see cref="WaitForExitAsync"/>).</summary>
    public void Terminate()
    {
        if (_process is { HasExited: false } p)
        {
            Proc.SendSignal(p.Id, "TERM");
        }
    }

    /// <summary>Waits (with a deadline) for the process to exit and returns its exit code.</summary>
    public Task<int> WaitForExitAsync(TimeSpan timeout) =>
        Proc.WaitForExitAsync(_process ?? throw new InvalidOperationException("the server was never started"), timeout, "the server", Stderr);

    public async Task StopAsync()
    {
        if (_process is { HasExited: false } p)
        {
            // SIGTERM, then wait for a clean exit.
            using var term = Process.Start("kill", ["-TERM", p.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            await p.WaitForExitAsync(cts.Token).ConfigureAwait(false);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await KillAsync().ConfigureAwait(false);
        _process?.Dispose();
    }
}
