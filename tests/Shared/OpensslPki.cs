using System.Diagnostics;
using System.Globalization;

namespace Writ.Tests.Shared;

/// <summary>
/// A machine PKI made by the <c>openssl</c> command line (not by .NET), for x509pop interop tests: <c>openssl ca</c> with
/// explicit start and end dates (so a test on a fake clock gets certificates valid at its time), a root CA, optionally
/// an intermediate, and node certificates with EC (SEC1 "EC PRIVATE KEY") or RSA (PKCS#8) keys. Every file lives in
/// <see cref="Dir"/>; nothing is cached.
/// </summary>
public sealed class OpensslPki
{
    private const string Config = """
        [ca]
        default_ca = ca_default
        [ca_default]
        dir = .
        database = index.txt
        new_certs_dir = .
        serial = serial
        default_md = sha256
        policy = policy_any
        unique_subject = no
        [policy_any]
        commonName = supplied
        [v3_ca]
        basicConstraints = critical,CA:TRUE
        keyUsage = critical,keyCertSign,cRLSign
        subjectKeyIdentifier = hash
        authorityKeyIdentifier = keyid
        [v3_node]
        basicConstraints = CA:FALSE
        keyUsage = critical,digitalSignature
        extendedKeyUsage = clientAuth
        subjectKeyIdentifier = hash
        authorityKeyIdentifier = keyid
        subjectAltName = ${ENV::WRIT_TEST_SAN}
        """;

    private int _serial;

    private OpensslPki(string dir, DateTimeOffset notBefore, DateTimeOffset notAfter)
    {
        Dir = dir;
        NotBefore = notBefore;
        NotAfter = notAfter;
    }

    public string Dir { get; }
    public DateTimeOffset NotBefore { get; }
    public DateTimeOffset NotAfter { get; }

    /// <summary>The root CA certificate (PEM): the x509pop.ca_bundle.</summary>
    public string RootPem => Path.Combine(Dir, "root.pem");

    /// <summary>Makes a root CA (EC P-256) valid from <paramref name="notBefore"/> to <paramref name="notAfter"/>, the dates of every certificate it issues.</summary>
    public static async Task<OpensslPki> CreateAsync(string dir, DateTimeOffset notBefore, DateTimeOffset notAfter)
    {
        Directory.CreateDirectory(dir);
        await File.WriteAllTextAsync(Path.Combine(dir, "ca.cnf"), Config);
        await File.WriteAllTextAsync(Path.Combine(dir, "index.txt"), "");
        await File.WriteAllTextAsync(Path.Combine(dir, "serial"), "1000\n");
        var pki = new OpensslPki(dir, notBefore, notAfter);
        await pki.RunAsync("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "root.key");
        await pki.RunAsync("req", "-new", "-key", "root.key", "-subj", "/O=Writ Test Fleet/CN=fleet-root", "-out", "root.csr");
        await pki.SignAsync("root.csr", "root.pem", "v3_ca", selfSign: true, issuer: "root");
        return pki;
    }

    /// <summary>An intermediate CA under the root; returns its name (the files NAME.pem and NAME.key).</summary>
    public async Task<string> IntermediateAsync(string name)
    {
        await RunAsync("ecparam", "-name", "secp384r1", "-genkey", "-noout", "-out", $"{name}.key");
        await RunAsync("req", "-new", "-key", $"{name}.key", "-subj", $"/CN={name}", "-out", $"{name}.csr");
        await SignAsync($"{name}.csr", $"{name}.pem", "v3_ca", selfSign: false, issuer: "root");
        return name;
    }

    /// <summary>
    /// A node certificate with CN <paramref name="cn"/> and DNS SAN <paramref name="cn"/>, issued by <paramref name="issuer"/>
    /// ("root" or an intermediate's name), with an EC P-256 (SEC1 PEM) or RSA 2048 (PKCS#8 PEM) key. Returns the paths of the
    /// certificate file (the node certificate, then the intermediate when there is one) and of the key.
    /// </summary>
    public async Task<(string CertPath, string KeyPath)> NodeAsync(string cn, bool rsa = false, string issuer = "root")
    {
        var key = Path.Combine(Dir, $"{cn}.key");
        if (rsa)
        {
            await RunAsync("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", $"{cn}.key");
        }
        else
        {
            await RunAsync("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", $"{cn}.key");
        }
        await RunAsync("req", "-new", "-key", $"{cn}.key", "-subj", $"/CN={cn}", "-out", $"{cn}.csr");
        await SignAsync($"{cn}.csr", $"{cn}.leaf.pem", "v3_node", selfSign: false, issuer: issuer, san: $"DNS:{cn}");
        var chain = await File.ReadAllTextAsync(Path.Combine(Dir, $"{cn}.leaf.pem"));
        if (issuer != "root")
        {
            chain += await File.ReadAllTextAsync(Path.Combine(Dir, $"{issuer}.pem"));
        }
        var certPath = Path.Combine(Dir, $"{cn}.pem");
        await File.WriteAllTextAsync(certPath, chain);
        return (certPath, key);
    }

    /// <summary>
    /// <c>openssl dgst -sign</c> over <paramref name="message"/> with <paramref name="keyPath"/>: SHA-256, and for an RSA
    /// key RSASSA-PSS with a 32-byte salt (what x509pop verifies).
    /// </summary>
    public async Task<byte[]> SignAsync(string keyPath, byte[] message, bool rsa)
    {
        var name = $"msg-{Interlocked.Increment(ref _serial)}";
        await File.WriteAllBytesAsync(Path.Combine(Dir, name), message);
        List<string> args = ["dgst", "-sha256", "-sign", keyPath];
        if (rsa)
        {
            args.AddRange(["-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:32"]);
        }
        args.AddRange(["-out", $"{name}.sig", name]);
        await RunAsync([.. args]);
        return await File.ReadAllBytesAsync(Path.Combine(Dir, $"{name}.sig"));
    }

    private Task SignAsync(string csr, string output, string extensions, bool selfSign, string issuer, string san = "DNS:unused.invalid")
    {
        List<string> args = ["ca", "-batch", "-config", "ca.cnf", "-notext", "-in", csr, "-out", output, "-extensions", extensions,
            "-startdate", Asn1Time(NotBefore), "-enddate", Asn1Time(NotAfter), "-keyfile", $"{issuer}.key"];
        args.AddRange(selfSign ? ["-selfsign"] : ["-cert", $"{issuer}.pem"]);
        return RunAsync([.. args], san);
    }

    private static string Asn1Time(DateTimeOffset t) => t.UtcDateTime.ToString("yyyyMMddHHmmss'Z'", CultureInfo.InvariantCulture);

    private Task RunAsync(params string[] args) => RunAsync(args, "DNS:unused.invalid");

    private async Task RunAsync(string[] args, string san)
    {
        var psi = new ProcessStartInfo("openssl") { WorkingDirectory = Dir, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        psi.Environment["WRIT_TEST_SAN"] = san;
        using var p = Process.Start(psi) ?? throw new InvalidOperationException("cannot start openssl");
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await p.WaitForExitAsync(deadline.Token);
        if (p.ExitCode != 0)
        {
            throw new InvalidOperationException($"openssl {string.Join(' ', args)} failed ({p.ExitCode}): {await stderr}{await stdout}");
        }
    }
}
