using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using Writ.Cli.Workload;

namespace Writ.IntegrationTests.Harness;

/// <summary>
/// A real `writ agent run` process on its own data dir and Workload API socket. Start waits for the
/// `ready agent_id=... socket=...` line (with a deadline) or for the process to exit; a restart starts new logs.
/// </summary>
public sealed class AgentProcess : IAsyncDisposable
{
    private Process? _process;

    /// <param name="socketPath">The Workload API socket; null: the agent's default (data_dir/workload.sock).</param>
    public AgentProcess(string serverAddress, string dataDir, string? socketPath, string? trustBundle, string? joinToken, params string[] extraArgs)
    {
        ServerAddress = serverAddress;
        DataDir = dataDir;
        TrustBundle = trustBundle;
        JoinToken = joinToken;
        ExtraArgs = extraArgs;
        ExplicitSocket = socketPath is not null;
        SocketPath = socketPath ?? Path.Combine(dataDir, "workload.sock");
    }

    private bool ExplicitSocket { get; }

    public string ServerAddress { get; }
    public string DataDir { get; }
    public string? TrustBundle { get; set; }
    /// <summary>Passed on the next start only when set: an agent restart must not need it.</summary>
    public string? JoinToken { get; set; }
    public string[] ExtraArgs { get; }
    public string SocketPath { get; }
    public string AgentId { get; private set; } = "";
    public LineLog Stdout { get; private set; } = new();
    public LineLog Stderr { get; private set; } = new();
    public bool HasExited => _process?.HasExited ?? true;
    public int Pid => _process?.Id ?? throw new InvalidOperationException("the agent was never started");
    public int ExitCode => _process?.ExitCode ?? throw new InvalidOperationException("the agent was never started");

    /// <summary>Starts the process without waiting for it to be ready (for tests of refused starts).</summary>
    public void Launch()
    {
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        psi.Environment["DOTNET_NOLOGO"] = "1";
        Stdout = new LineLog();
        Stderr = new LineLog();
        var stdout = Stdout;
        var stderr = Stderr;
        List<string> args = [Repo.WritDll, "agent", "run", "--server", ServerAddress, "--data-dir", DataDir];
        if (ExplicitSocket)
        {
            args.AddRange(["--socket", SocketPath]);
        }
        if (TrustBundle is not null)
        {
            args.AddRange(["--trust-bundle", TrustBundle]);
        }
        if (JoinToken is not null)
        {
            args.AddRange(["--join-token", JoinToken]);
        }
        args.AddRange(ExtraArgs);
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        _process?.Dispose();
        var p = Process.Start(psi) ?? throw new InvalidOperationException("could not start writ agent");
        p.OutputDataReceived += (_, e) => stdout.Add(e.Data);
        p.ErrorDataReceived += (_, e) => stderr.Add(e.Data);
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        _process = p;
    }

    public async Task StartAsync()
    {
        Launch();
        var p = _process!;
        string ready;
        try
        {
            ready = await Stdout.WaitForAsync(l => l.StartsWith("ready ", StringComparison.Ordinal), TimeSpan.FromSeconds(60),
                () => p.HasExited).ConfigureAwait(false);
        }
        catch (Exception e) when (e is InvalidOperationException or TimeoutException)
        {
            throw new InvalidOperationException($"writ agent did not start: {e.Message}\n--- stderr\n{Stderr.Text}", e);
        }
        AgentId = ready.Split(' ').First(w => w.StartsWith("agent_id=", StringComparison.Ordinal))["agent_id=".Length..];
    }

    /// <summary>Waits (with a deadline) for the process to exit on its own and returns its exit code.</summary>
    public Task<int> WaitForExitAsync(TimeSpan timeout) =>
        Proc.WaitForExitAsync(_process ?? throw new InvalidOperationException("the agent was never started"), timeout, "the agent", Stderr);

    /// <summary>Sends SIGTERM (a clean stop) and returns at once; see <see cref="WaitForExitAsync"/>.</summary>
    public void Terminate()
    {
        if (_process is { HasExited: false } p)
        {
            Proc.SendSignal(p.Id, "TERM");
        }
    }

    /// <summary>SIGKILL: no clean shutdown, as a crash or an OOM kill would be.</summary>
    public async Task KillAsync()
    {
        if (_process is { HasExited: false } p)
        {
            p.Kill(entireProcessTree: true);
            await p.WaitForExitAsync().ConfigureAwait(false);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await KillAsync().ConfigureAwait(false);
        _process?.Dispose();
    }
}

/// <summary>
/// A stable address in front of a server that may be restarted on another port (as a DNS name or a load balancer
/// would be): accepts TCP connections and relays bytes to whatever <see cref="Target"/> says now. While there is no
/// target, connections are refused (closed at once), as a dead server's would be.
/// </summary>
public sealed class TcpRelay : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly CancellationTokenSource _stop = new();
    private readonly List<TcpClient> _open = [];
    private readonly Lock _lock = new();
    private readonly Task _accept;

    public TcpRelay(string target)
    {
        Target = target;
        _listener.Start();
        _accept = AcceptLoopAsync();
    }

    public string Address => $"127.0.0.1:{((IPEndPoint)_listener.LocalEndpoint).Port}";

    /// <summary>host:port to relay to; null cuts every open connection and refuses new ones.</summary>
    public string? Target { get; private set; }

    public void Retarget(string? target)
    {
        Target = target;
        lock (_lock)
        {
            foreach (var c in _open)
            {
                c.Dispose();
            }
            _open.Clear();
        }
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            TcpClient inbound;
            try
            {
                inbound = await _listener.AcceptTcpClientAsync(_stop.Token).ConfigureAwait(false);
            }
            catch (Exception) when (_stop.IsCancellationRequested)
            {
                return;
            }
            _ = RelayAsync(inbound);
        }
    }

    private async Task RelayAsync(TcpClient inbound)
    {
        var target = Target;
        if (target is null)
        {
            inbound.Dispose();
            return;
        }
        var outbound = new TcpClient();
        try
        {
            var sep = target.LastIndexOf(':');
            await outbound.ConnectAsync(target[..sep], int.Parse(target[(sep + 1)..], CultureInfo.InvariantCulture), _stop.Token).ConfigureAwait(false);
        }
        catch (Exception)
        {
            inbound.Dispose();
            outbound.Dispose();
            return;
        }
        lock (_lock)
        {
            _open.Add(inbound);
            _open.Add(outbound);
        }
        using (inbound)
        using (outbound)
        {
            var a = inbound.GetStream();
            var b = outbound.GetStream();
            try
            {
                await Task.WhenAny(a.CopyToAsync(b, _stop.Token), b.CopyToAsync(a, _stop.Token)).ConfigureAwait(false);
            }
            catch (Exception)
            {
                // either side went away: close both
            }
        }
        lock (_lock)
        {
            _open.Remove(inbound);
            _open.Remove(outbound);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        _listener.Stop();
        Retarget(null);
        try
        {
            await _accept.ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }
        _stop.Dispose();
    }
}

/// <summary>
/// A server, a relay in front of it, its trust bundle on disk and one agent attested with a fresh join token:
/// the usual stage of an agent test. Entries are created over the admin socket as an operator would.
/// </summary>
public sealed class AgentRig : IAsyncDisposable
{
    private readonly TempDir _dir = new();

    private AgentRig()
    {
    }

    public ServerProcess Server { get; private set; } = null!;
    public TcpRelay Relay { get; private set; } = null!;
    public AgentProcess Agent { get; private set; } = null!;
    public string BundlePem => _dir["bundle.pem"];
    public string Dir => _dir.Path;
    public string this[string name] => _dir[name];

    /// <param name="socketPath">null: a socket in a public directory of the rig; "" : the agent's default.</param>
    /// <param name="trustDomain">The server's trust domain (the agent reads it from the bundle).</param>
    public static async Task<AgentRig> StartAsync(string[]? serverArgs = null, string[]? agentArgs = null, string? socketPath = null, string trustDomain = "example.org")
    {
        var rig = new AgentRig();
        try
        {
            rig.Server = await ServerProcess.StartAsync(rig._dir["server"], trustDomain, serverArgs ?? []);
            rig.Relay = new TcpRelay(rig.Server.AgentApi);
            var bundle = await rig.Server.WritAsync("bundle", "show", "--format", "pem");
            Assert.True(bundle.ExitCode == 0, bundle.ToString());
            await File.WriteAllTextAsync(rig.BundlePem, bundle.Stdout);
            var token = await TestAgent.NewJoinTokenAsync(rig.Server);
            // Every local user must be able to reach the socket: the temp dir (0700) is opened to others, the socket
            // lives in a directory of its own.
            File.SetUnixFileMode(rig.Dir, (UnixFileMode)0b111_101_101);
            rig.Agent = new AgentProcess(rig.Relay.Address, rig._dir["agent"], socketPath is null ? rig._dir["pub/w.sock"] : socketPath.Length == 0 ? null : socketPath, rig.BundlePem, token, agentArgs ?? []);
            await rig.Agent.StartAsync();
            return rig;
        }
        catch
        {
            await rig.DisposeAsync();
            throw;
        }
    }

    /// <summary>Restarts the server (after <see cref="ServerProcess.KillAsync"/>) on the same data dir behind the same address.</summary>
    public async Task RestartServerAsync()
    {
        await Server.StartAsync();
        Relay.Retarget(Server.AgentApi);
    }

    /// <summary>`writ entry create` parented to the agent; returns the entry id.</summary>
    public async Task<string> CreateEntryAsync(string spiffeId, IEnumerable<string> selectors, params string[] extra)
    {
        List<string> args = ["entry", "create", "--spiffe-id", spiffeId, "--parent-id", Agent.AgentId, "--output", "json"];
        foreach (var s in selectors)
        {
            args.AddRange(["--selector", s]);
        }
        var r = await Server.WritAsync([.. args, .. extra]);
        Assert.True(r.ExitCode == 0, r.ToString());
        using var doc = JsonDocument.Parse(r.Stdout);
        return doc.RootElement.GetProperty("id").GetString()!;
    }

    public async Task DeleteEntryAsync(string id)
    {
        var r = await Server.WritAsync("entry", "delete", id);
        Assert.True(r.ExitCode == 0, r.ToString());
    }

    /// <summary>A Workload API client in this (test) process: uid 0, the test host's executable.</summary>
    public WorkloadClient Client() => new(Agent.SocketPath);

    /// <summary>`writ ARGS --socket <the agent's>` as a separate workload process.</summary>
    public Task<ProcResult> WorkloadAsync(params string[] args) => Proc.WritAsync([.. args, "--socket", Agent.SocketPath]);

    public async ValueTask DisposeAsync()
    {
        if (Agent is not null)
        {
            await Agent.DisposeAsync();
        }
        if (Server is not null)
        {
            await Server.DisposeAsync();
        }
        if (Relay is not null)
        {
            await Relay.DisposeAsync();
        }
        _dir.Dispose();
    }
}

/// <summary>Workload-side tools of the agent tests: the Node interop client (as any user), executable hashes.</summary>
public static class WorkloadTools
{
    private static readonly Lazy<string> PublicInterop = new(CopyInteropForEveryone);

    public static string InteropDir => Path.Combine(Repo.Root, "tests", "interop");

    /// <summary>The spec's Workload API proto, as copied into the project (the one Writ itself is built from).</summary>
    public static string SpecProto => Path.Combine(Repo.Root, "src", "Writ.Protocol", "Protos", "workload.proto");

    /// <summary>Runs tests/interop/workload-client.mjs as root, or as another user (a 0755 copy, since others cannot read the repo).</summary>
    public static Task<ProcResult> NodeClientAsync(string? user, params string[] args)
    {
        if (user is null)
        {
            return Proc.RunAsync("node", [Path.Combine(InteropDir, "workload-client.mjs"), .. args]);
        }
        return Proc.RunAsync("runuser", ["-u", user, "--", "node", Path.Combine(PublicInterop.Value, "workload-client.mjs"), .. args], workingDir: "/");
    }

    public static JsonDocument Json(ProcResult r)
    {
        try
        {
            return JsonDocument.Parse(r.Stdout);
        }
        catch (JsonException)
        {
            throw new InvalidOperationException("the node client printed no JSON:\n" + r);
        }
    }

    /// <summary>The gRPC status name a failed node client call reported (e.g. PERMISSION_DENIED).</summary>
    public static string StatusName(ProcResult r)
    {
        Assert.True(r.ExitCode == 1, "expected a gRPC error:\n" + r);
        using var doc = Json(r);
        return doc.RootElement.GetProperty("name").GetString()!;
    }

    /// <summary>SHA-256 (hex) of the file a command on PATH resolves to, as the agent hashes /proc/PID/exe.</summary>
    public static async Task<string> ExecutableSha256Async(string command)
    {
        var which = await Proc.RunAsync("sh", ["-c", $"readlink -f \"$(command -v {command})\""]);
        var path = which.Stdout.Trim();
        Assert.True(which.ExitCode == 0 && File.Exists(path), $"cannot resolve {command}: {which}");
        await using var f = File.OpenRead(path);
        return Convert.ToHexStringLower(await System.Security.Cryptography.SHA256.HashDataAsync(f));
    }

    /// <summary>A plain gRPC channel over a Unix socket (for services beside the Workload API, e.g. reflection).</summary>
    public static Grpc.Net.Client.GrpcChannel UnixChannel(string socketPath) =>
        Grpc.Net.Client.GrpcChannel.ForAddress("http://localhost", new Grpc.Net.Client.GrpcChannelOptions
        {
            HttpHandler = new SocketsHttpHandler
            {
                ConnectCallback = async (_, ct) =>
                {
                    var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                    try
                    {
                        await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), ct);
                        return new NetworkStream(socket, ownsSocket: true);
                    }
                    catch
                    {
                        socket.Dispose();
                        throw;
                    }
                },
            },
        });

    private static string CopyInteropForEveryone()
    {
        var dest = Directory.CreateTempSubdirectory("writ-interop-").FullName;
        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            try
            {
                Directory.Delete(dest, recursive: true);
            }
            catch (IOException)
            {
            }
        };
        File.SetUnixFileMode(dest, (UnixFileMode)0b111_101_101);
        foreach (var file in Directory.EnumerateFiles(InteropDir, "*", SearchOption.AllDirectories))
        {
            var rel = Path.GetRelativePath(InteropDir, file);
            var target = Path.Combine(dest, rel);
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(file, target);
        }
        // The client loads the spec proto beside itself in a copy (the repository's is not readable by others).
        File.Copy(SpecProto, Path.Combine(dest, "workloadapi.proto"));
        foreach (var d in Directory.EnumerateDirectories(dest, "*", SearchOption.AllDirectories))
        {
            File.SetUnixFileMode(d, (UnixFileMode)0b111_101_101);
        }
        foreach (var f in Directory.EnumerateFiles(dest, "*", SearchOption.AllDirectories))
        {
            File.SetUnixFileMode(f, (UnixFileMode)0b110_100_100);
        }
        return dest;
    }

    /// <summary>Retries an action until it stops throwing or the deadline passes (for state the agent learns asynchronously).</summary>
    public static async Task<T> EventuallyAsync<T>(Func<Task<T>> attempt, TimeSpan timeout, string what)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            try
            {
                return await attempt();
            }
            catch (Exception e) when (DateTime.UtcNow < deadline && e is not (OperationCanceledException or Xunit.Sdk.IAssertionException))
            {
                await Task.Delay(50);
            }
            catch (Exception e) when (e is not (OperationCanceledException or Xunit.Sdk.IAssertionException))
            {
                throw new TimeoutException($"{what} did not happen within {timeout.TotalSeconds}s: {e.Message}", e);
            }
        }
    }
}

/// <summary>A long-running command (e.g. `writ svid watch`) whose output lines a test waits for.</summary>
public sealed class BackgroundProcess : IAsyncDisposable
{
    private readonly Process _process;
    private bool _disposed;

    private BackgroundProcess(Process process)
    {
        _process = process;
    }

    public LineLog Stdout { get; } = new();
    public LineLog Stderr { get; } = new();
    public bool HasExited => _process.HasExited;
    public int Pid => _process.Id;

    /// <summary>Closes the process's stdin: a held workload instance (`writ jwt fetch --hold`) then exits.</summary>
    public void CloseInput() => _process.StandardInput.Close();

    /// <summary>SIGKILL, without waiting.</summary>
    public void Kill() => _process.Kill(entireProcessTree: true);

    public static BackgroundProcess Start(string file, params string[] args) => StartIn(null, file, args);

    /// <summary>As <see cref="Start"/>, in <paramref name="workingDir"/> (null: this process's).</summary>
    public static BackgroundProcess StartIn(string? workingDir, string file, params string[] args) => StartWith(workingDir, null, file, args);

    /// <summary>As <see cref="StartIn"/>, with these environment variables set (null: removed).</summary>
    public static BackgroundProcess StartWith(string? workingDir, IDictionary<string, string?>? env, string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,   // open until CloseInput or dispose (held workload instances wait for its end)
            UseShellExecute = false,
        };
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        psi.Environment["DOTNET_NOLOGO"] = "1";
        if (workingDir is not null)
        {
            psi.WorkingDirectory = workingDir;
        }
        foreach (var (k, v) in env ?? new Dictionary<string, string?>())
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
        var p = Process.Start(psi) ?? throw new InvalidOperationException($"could not start {file}");
        var bp = new BackgroundProcess(p);
        p.OutputDataReceived += (_, e) => bp.Stdout.Add(e.Data);
        p.ErrorDataReceived += (_, e) => bp.Stderr.Add(e.Data);
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        return bp;
    }

    public static BackgroundProcess Writ(params string[] args) => Start("dotnet", [Repo.WritDll, .. args]);

    /// <summary>Starts a server-like process and waits for its first stdout line that matches (a ready line); on failure kills it and says why.</summary>
    public static async Task<(BackgroundProcess Process, string Line)> StartAndWaitAsync(Func<string, bool> match, TimeSpan timeout,
        string? workingDir, IDictionary<string, string?>? env, string file, params string[] args)
    {
        var p = StartWith(workingDir, env, file, args);
        try
        {
            return (p, await p.Stdout.WaitForAsync(match, timeout, () => p.HasExited).ConfigureAwait(false));
        }
        catch (Exception e) when (e is InvalidOperationException or TimeoutException)
        {
            await p.DisposeAsync().ConfigureAwait(false);
            throw new InvalidOperationException($"{file} {string.Join(' ', args)} did not get ready: {e.Message}\n--- stderr\n{p.Stderr.Text}", e);
        }
    }

    /// <summary>SIGTERM, as `systemctl stop` sends; asserts a clean exit 0 within 30 s, then releases the process.</summary>
    public async Task StopAsync()
    {
        using (var kill = Process.Start("kill", ["-TERM", Pid.ToString(System.Globalization.CultureInfo.InvariantCulture)]))
        {
            await kill!.WaitForExitAsync().ConfigureAwait(false);
        }
        var code = await WaitForExitAsync(TimeSpan.FromSeconds(30)).ConfigureAwait(false);
        Assert.True(code == 0, $"exited {code} on SIGTERM\n{Stderr.Text}");
        await DisposeAsync().ConfigureAwait(false);
    }

    public async Task<int> WaitForExitAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await _process.WaitForExitAsync(cts.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException($"the process did not exit within {timeout.TotalSeconds}s\n--- stdout\n{Stdout.Text}\n--- stderr\n{Stderr.Text}");
        }
        return _process.ExitCode;
    }

    public async ValueTask DisposeAsync()
    {
        if (_disposed)
        {
            return;
        }
        _disposed = true;
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync().ConfigureAwait(false);
        }
        _process.Dispose();
    }
}
