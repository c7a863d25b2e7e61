using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Writ.Tests.Shared;

/// <summary>
/// A manufacturer CA for software TPMs, as swtpm's own <c>swtpm_localca</c> makes it: an EK certificate of every
/// <see cref="Swtpm"/> made with this CA chains to <see cref="RootCertificatePath"/> through <see cref="IssuerCertificatePath"/>.
/// Each test makes its own (a temp directory), so tests never share the machine-wide <c>/var/lib/swtpm-localca</c> and
/// a "TPM from another manufacturer" is just another <see cref="SwtpmCa"/>.
/// </summary>
public sealed class SwtpmCa : IDisposable
{
    private SwtpmCa(string dir) => Directory = dir;

    /// <summary>The temp directory holding the CA (and its swtpm_setup configuration).</summary>
    public string Directory { get; }

    /// <summary>Where swtpm_localca keeps its keys and certificates; the CA is made by the first <see cref="Swtpm.StartAsync"/>.</summary>
    public string StateDirectory => Path.Combine(Directory, "ca");

    public string RootCertificatePath => Path.Combine(StateDirectory, "swtpm-localca-rootca-cert.pem");

    public string IssuerCertificatePath => Path.Combine(StateDirectory, "issuercert.pem");

    internal string SetupConfigPath => Path.Combine(Directory, "swtpm_setup.conf");

    internal SemaphoreSlim Lock { get; } = new(1, 1);

    public static SwtpmCa Create()
    {
        var dir = System.IO.Directory.CreateTempSubdirectory("writ-swtpm-ca-").FullName;
        var ca = new SwtpmCa(dir);
        System.IO.Directory.CreateDirectory(ca.StateDirectory);
        var state = ca.StateDirectory;
        File.WriteAllText(Path.Combine(dir, "swtpm-localca.conf"),
            $"statedir = {state}\nsigningkey = {state}/signkey.pem\nissuercert = {state}/issuercert.pem\ncertserial = {state}/certserial\n");
        File.WriteAllText(Path.Combine(dir, "swtpm-localca.options"), "--platform-manufacturer Writ\n--platform-version 2.1\n--platform-model test\n");
        File.WriteAllText(ca.SetupConfigPath,
            $"create_certs_tool = /usr/bin/swtpm_localca\ncreate_certs_tool_config = {dir}/swtpm-localca.conf\n"
            + $"create_certs_tool_options = {dir}/swtpm-localca.options\nactive_pcr_banks = sha256\n");
        return ca;
    }

    /// <summary>Copies the root and intermediate into <paramref name="dir"/> as a manufacturer-CA directory (<c>tpm.ek_ca_dir</c>).</summary>
    public string WriteCaDirectory(string dir)
    {
        System.IO.Directory.CreateDirectory(dir);
        File.Copy(RootCertificatePath, Path.Combine(dir, "swtpm-root.pem"), overwrite: true);
        File.Copy(IssuerCertificatePath, Path.Combine(dir, "swtpm-issuer.pem"), overwrite: true);
        return dir;
    }

    public void Dispose()
    {
        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
        }
        Lock.Dispose();
    }
}

/// <summary>
/// A real software TPM 2.0 (Debian's <c>swtpm</c>) on a free loopback port pair, with its own state directory: the TPM
/// command port speaks the raw command stream (<see cref="Address"/>, for Writ's <c>--tpm tcp://…</c>), the port after it
/// is swtpm's control channel that tpm2-tools' <c>swtpm</c> TCTI also needs (<see cref="Tcti"/>). Manufactured by
/// <c>swtpm_setup</c> with an RSA and an ECC EK certificate from <see cref="SwtpmCa"/> and the sha256 PCR bank active,
/// started with TPM2_Startup(CLEAR) done. Dispose stops it and deletes its state.
/// </summary>
public sealed class Swtpm : IAsyncDisposable
{
    private readonly Process _process;

    private Swtpm(Process process, string stateDir, int port)
    {
        _process = process;
        StateDirectory = stateDir;
        Port = port;
    }

    public string StateDirectory { get; }

    /// <summary>The TPM command port on 127.0.0.1.</summary>
    public int Port { get; }

    /// <summary>For Writ's <c>--tpm</c>.</summary>
    public string Address => $"tcp://127.0.0.1:{Port}";

    /// <summary>For tpm2-tools (<c>TPM2TOOLS_TCTI</c> or <c>-T</c>).</summary>
    public string Tcti => $"swtpm:host=127.0.0.1,port={Port}";

    /// <summary>Whether the swtpm, swtpm_setup and tpm2-tools binaries are installed (.ci/run installs them).</summary>
    public static bool Installed => File.Exists("/usr/bin/swtpm") && File.Exists("/usr/bin/swtpm_setup") && File.Exists("/usr/bin/tpm2_pcrread");

    /// <summary>Manufactures a TPM with EK certificates from <paramref name="ca"/> (or, with null, none) and starts it.</summary>
    public static async Task<Swtpm> StartAsync(SwtpmCa? ca, CancellationToken ct = default)
    {
        if (!Installed)
            throw new InvalidOperationException("swtpm, swtpm-tools and tpm2-tools are not installed: apt-get install swtpm swtpm-tools tpm2-tools (.ci/run does)");
        var stateDir = Directory.CreateTempSubdirectory("writ-swtpm-").FullName;
        if (ca is not null)
        {
            // swtpm_localca keeps a serial number file: one manufacture at a time per CA.
            await ca.Lock.WaitAsync(ct).ConfigureAwait(false);
            try
            {
                await RunAsync("swtpm_setup", ["--tpm2", "--tpmstate", stateDir, "--config", ca.SetupConfigPath, "--create-ek-cert", "--create-platform-cert",
                    "--ecc", "--pcr-banks", "sha256", "--overwrite"], ct).ConfigureAwait(false);
            }
            finally
            {
                ca.Lock.Release();
            }
        }
        else
        {
            await RunAsync("swtpm_setup", ["--tpm2", "--tpmstate", stateDir, "--pcr-banks", "sha256", "--overwrite", "--config", "/dev/null"], ct).ConfigureAwait(false);
        }
        for (var attempt = 0; ; attempt++)
        {
            var port = FreePortPair();
            var psi = new ProcessStartInfo("swtpm")
            {
                RedirectStandardError = true,
                RedirectStandardOutput = true,
                UseShellExecute = false,
            };
            foreach (var a in (string[])["socket", "--tpm2", "--tpmstate", $"dir={stateDir}", "--server", $"type=tcp,port={port},bindaddr=127.0.0.1",
                         "--ctrl", $"type=tcp,port={port + 1},bindaddr=127.0.0.1", "--flags", "not-need-init,startup-clear"])
                psi.ArgumentList.Add(a);
            var p = Process.Start(psi)!;
            var stderr = p.StandardError.ReadToEndAsync(ct);
            _ = p.StandardOutput.ReadToEndAsync(ct);
            var deadline = DateTime.UtcNow.AddSeconds(20);
            while (DateTime.UtcNow < deadline && !p.HasExited)
            {
                if (await CanConnectAsync(port + 1, ct).ConfigureAwait(false))
                    return new Swtpm(p, stateDir, port);
                await Task.Delay(20, ct).ConfigureAwait(false);
            }
            if (!p.HasExited)
                p.Kill(entireProcessTree: true);
            await p.WaitForExitAsync(ct).ConfigureAwait(false);
            if (attempt >= 3)
                throw new InvalidOperationException($"swtpm did not start: {await stderr.ConfigureAwait(false)}");
        }
    }

    /// <summary>Runs a tpm2-tools command against this TPM; throws with its stderr on a non-zero exit. Returns stdout.</summary>
    public Task<string> Tpm2Async(string tool, IEnumerable<string> args, CancellationToken ct = default, string? workingDirectory = null) =>
        RunAsync(tool, ["-T", Tcti, .. args], ct, workingDirectory);

    /// <summary>Extends PCR <paramref name="index"/> of the sha256 bank with SHA-256 of <paramref name="data"/> (as a measured component would).</summary>
    public Task ExtendPcrAsync(int index, string data, CancellationToken ct = default)
    {
        var digest = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(data)));
        return RunAsync("tpm2_pcrextend", ["-T", Tcti, $"{index}:sha256={digest}"], ct);
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (!_process.HasExited)
                _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync().ConfigureAwait(false);
        }
        catch (InvalidOperationException)
        {
        }
        _process.Dispose();
        try
        {
            Directory.Delete(StateDirectory, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    private static async Task<string> RunAsync(string file, IEnumerable<string> args, CancellationToken ct, string? workingDirectory = null)
    {
        var psi = new ProcessStartInfo(file)
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
            UseShellExecute = false,
            WorkingDirectory = workingDirectory ?? Environment.CurrentDirectory,
        };
        foreach (var a in args)
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync(ct);
        var stderr = p.StandardError.ReadToEndAsync(ct);
        await p.WaitForExitAsync(ct).ConfigureAwait(false);
        if (p.ExitCode != 0)
            throw new InvalidOperationException($"{file} {string.Join(' ', psi.ArgumentList)} exited {p.ExitCode}: {await stderr.ConfigureAwait(false)}");
        return await stdout.ConfigureAwait(false);
    }

    private static async Task<bool> CanConnectAsync(int port, CancellationToken ct)
    {
        using var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            await s.ConnectAsync(IPAddress.Loopback, port, ct).ConfigureAwait(false);
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    private static readonly Lock PortLock = new();

    /// <summary>Two consecutive free loopback ports (swtpm's server and control channel).</summary>
    private static int FreePortPair()
    {
        lock (PortLock)
        {
            for (var i = 0; i < 200; i++)
            {
                using var a = new TcpListener(IPAddress.Loopback, 0);
                a.Start();
                var port = ((IPEndPoint)a.LocalEndpoint).Port;
                if (port >= 65535)
                    continue;
                try
                {
                    using var b = new TcpListener(IPAddress.Loopback, port + 1);
                    b.Start();
                    return port;
                }
                catch (SocketException)
                {
                }
            }
        }
        throw new InvalidOperationException("no two consecutive free loopback ports");
    }
}
