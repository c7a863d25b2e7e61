using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Writ.Agent.PeerTracking;

namespace Writ.Agent.Tests.TestSupport;

/// <summary>A temporary directory removed at dispose.</summary>
internal sealed class TempDir : IDisposable
{
    public TempDir()
    {
        Path = Directory.CreateTempSubdirectory("writ-attest-").FullName;
    }

    public string Path { get; }

    public string Combine(params string[] parts) => System.IO.Path.Combine([Path, .. parts]);

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }
}

/// <summary>A child process killed (and reaped) at dispose.</summary>
internal sealed class Child : IDisposable
{
    private Child(Process process)
    {
        Process = process;
    }

    public Process Process { get; }

    public int Pid => Process.Id;

    public static Child Start(string fileName, params string[] args) => StartExpecting(fileName, fileName, args);

    /// <summary>Starts a program and waits until the process runs <paramref name="expectedExe"/> (after any exec chain).</summary>
    public static Child StartExpecting(string expectedExe, string fileName, params string[] args)
    {
        var psi = new ProcessStartInfo(fileName)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string a in args)
        {
            psi.ArgumentList.Add(a);
        }

        var p = Process.Start(psi) ?? throw new InvalidOperationException($"could not start {fileName}");
        var child = new Child(p);
        // Wait until the exec has happened (the exe link names the requested program), so tests
        // never look at the forked-but-not-yet-exec'd dotnet child.
        string expected = Resolve(expectedExe);
        Wait.Until(() => ExeOf(p.Id) is { } exe && (exe == expected || exe.StartsWith(expected + " ", StringComparison.Ordinal) || p.HasExited), "child exec");
        return child;
    }

    /// <summary>realpath(3): every symlink in every component resolved (as the kernel shows /proc/pid/exe).</summary>
    public static string Resolve(string path)
    {
        string full = System.IO.Path.GetFullPath(path);
        string? parent = System.IO.Path.GetDirectoryName(full);
        if (parent is null)
        {
            return full;
        }

        parent = Resolve(parent);
        string combined = System.IO.Path.Combine(parent, System.IO.Path.GetFileName(full));
        return new FileInfo(combined).LinkTarget is { } target
            ? Resolve(System.IO.Path.IsPathRooted(target) ? target : System.IO.Path.Combine(parent, target))
            : combined;
    }

    public static string? ExeOf(int pid)
    {
        try
        {
            return new FileInfo($"/proc/{pid}/exe").LinkTarget;
        }
        catch (IOException)
        {
            return null;
        }
    }

    public void KillAndWait()
    {
        if (!Process.HasExited)
        {
            Process.Kill(entireProcessTree: true);
        }

        Process.WaitForExit();
    }

    public void Dispose()
    {
        try
        {
            KillAndWait();
        }
        catch (InvalidOperationException)
        {
        }

        Process.Dispose();
    }
}

internal static class Wait
{
    public static void Until(Func<bool> condition, string what, int timeoutMs = 15000)
    {
        if (!SpinWait.SpinUntil(condition, timeoutMs))
        {
            throw new TimeoutException($"timed out waiting for {what}");
        }
    }
}

/// <summary>A fake /proc tree for parsing cases.</summary>
internal sealed class FakeProc : IProcFs, IDisposable
{
    private readonly TempDir _dir = new();

    public FakeProc(string bootId = "6b1d2c1e-0000-4000-8000-000000000001")
    {
        Directory.CreateDirectory(_dir.Combine("sys", "kernel", "random"));
        BootId = bootId;
    }

    public string Root => _dir.Path;

    public string BootId
    {
        set => File.WriteAllText(_dir.Combine("sys", "kernel", "random", "boot_id"), value + "\n");
    }

    public void Write(int pid, string file, string content)
    {
        Directory.CreateDirectory(_dir.Combine(pid.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        File.WriteAllText(_dir.Combine(pid.ToString(System.Globalization.CultureInfo.InvariantCulture), file), content);
    }

    public static string StatLine(int pid, string comm, char state, ulong start) =>
        $"{pid} ({comm}) {state} 1 {pid} {pid} 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 {start} 2314240 200 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n";

    public void Dispose() => _dir.Dispose();
}

/// <summary>Captures log entries so tests can assert that failures were logged.</summary>
internal sealed class ListLogger : ILogger
{
    private readonly List<(LogLevel Level, string Message)> _entries = [];

    public IReadOnlyList<(LogLevel Level, string Message)> Entries
    {
        get
        {
            lock (_entries)
            {
                return [.. _entries];
            }
        }
    }

    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => true;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        lock (_entries)
        {
            _entries.Add((logLevel, formatter(state, exception)));
        }
    }
}

/// <summary>A jitter source pinned to one value: <see cref="NextDouble"/> answers it, <c>Next(min, max)</c> answers min.</summary>
internal sealed class PinnedRandom(double value) : Random
{
    public override double NextDouble() => value;

    public override int Next(int minValue, int maxValue) => minValue;

    protected override double Sample() => value;
}
