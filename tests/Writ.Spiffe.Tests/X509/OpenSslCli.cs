using System.Diagnostics;
using System.Security.Cryptography.X509Certificates;

namespace Writ.Spiffe.Tests.X509;

/// <summary>Runs the real `openssl` (a client nobody here wrote) for the X.509 interop tests.</summary>
internal static class OpenSslCli
{
    /// <summary>Exit code and stdout+stderr of `openssl ARGS`, with a 30 s deadline.</summary>
    public static (int Code, string Output) Run(IEnumerable<string> args)
    {
        var psi = new ProcessStartInfo("openssl") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        using var p = Process.Start(psi) ?? throw new InvalidOperationException("cannot start openssl");
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromSeconds(30)))
        {
            p.Kill();
            throw new TimeoutException("openssl did not finish within 30 s");
        }
        return (p.ExitCode, stdout.Result + stderr.Result);
    }

    /// <summary>Writes the certificate as PEM to DIR/NAME and returns the path.</summary>
    public static string WritePem(string dir, string name, X509Certificate2 cert)
    {
        var path = Path.Combine(dir, name);
        File.WriteAllText(path, cert.ExportCertificatePem() + "\n");
        return path;
    }
}
