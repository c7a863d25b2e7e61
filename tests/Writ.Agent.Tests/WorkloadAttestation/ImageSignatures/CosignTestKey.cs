using System.Diagnostics;

namespace Writ.Agent.Tests.WorkloadAttestation.ImageSignatures;

/// <summary>
/// A signing key made and used by the <c>openssl</c> command line (not by our code), as an identity team's cosign key:
/// ECDSA P-256 (<c>openssl ecparam -genkey</c>, signatures by <c>openssl dgst -sha256 -sign</c>: DER over SHA-256) or
/// Ed25519 (<c>openssl genpkey -algorithm ed25519</c>, signatures by <c>openssl pkeyutl -sign -rawin</c>). The public key
/// is written as <c>&lt;name&gt;.pub</c> (PEM SubjectPublicKeyInfo) into the keys directory when registered.
/// </summary>
internal sealed class CosignTestKey
{
    private readonly string _dir;
    private readonly bool _ed25519;
    private int _n;

    private CosignTestKey(string dir, string name, bool ed25519)
    {
        _dir = dir;
        Name = name;
        _ed25519 = ed25519;
    }

    public string Name { get; }

    public string PrivatePem => Path.Combine(_dir, Name + ".key.pem");

    public string PublicPem => Path.Combine(_dir, Name + ".pub");

    /// <summary>Makes the key in <paramref name="workDir"/> and, when <paramref name="keysDir"/> is given, registers it there.</summary>
    public static async Task<CosignTestKey> CreateAsync(string workDir, string name, bool ed25519, string? keysDir)
    {
        var dir = Path.Combine(workDir, "openssl-" + name);
        Directory.CreateDirectory(dir);
        var key = new CosignTestKey(dir, name, ed25519);
        if (ed25519)
            await OpensslAsync(dir, "genpkey", "-algorithm", "ed25519", "-out", key.PrivatePem);
        else
            await OpensslAsync(dir, "ecparam", "-genkey", "-name", "prime256v1", "-noout", "-out", key.PrivatePem);
        await OpensslAsync(dir, "pkey", "-in", key.PrivatePem, "-pubout", "-out", key.PublicPem);
        if (keysDir is not null)
            File.Copy(key.PublicPem, Path.Combine(keysDir, name + ".pub"));
        return key;
    }

    /// <summary>The base64 signature of <paramref name="payload"/>, as cosign puts it in the layer annotation.</summary>
    public async Task<string> SignAsync(byte[] payload)
    {
        var n = Interlocked.Increment(ref _n);
        var input = Path.Combine(_dir, $"payload-{n}.json");
        var output = Path.Combine(_dir, $"sig-{n}.bin");
        await File.WriteAllBytesAsync(input, payload);
        if (_ed25519)
            await OpensslAsync(_dir, "pkeyutl", "-sign", "-rawin", "-inkey", PrivatePem, "-in", input, "-out", output);
        else
            await OpensslAsync(_dir, "dgst", "-sha256", "-sign", PrivatePem, "-out", output, input);
        return Convert.ToBase64String(await File.ReadAllBytesAsync(output));
    }

    public static async Task OpensslAsync(string dir, params string[] args)
    {
        var psi = new ProcessStartInfo("openssl") { WorkingDirectory = dir, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args)
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi) ?? throw new InvalidOperationException("cannot start openssl");
        var stderr = p.StandardError.ReadToEndAsync();
        await p.StandardOutput.ReadToEndAsync();
        await p.WaitForExitAsync();
        if (p.ExitCode != 0)
            throw new InvalidOperationException($"openssl {string.Join(' ', args)} failed: {await stderr}");
    }
}
