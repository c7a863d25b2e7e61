using System.Diagnostics;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Writ.IntegrationTests.Harness;

namespace Writ.IntegrationTests.RelyingParties;

/// <summary>
/// Issue #17, servers that only read files: Debian's nginx doing mTLS with the files `writ svid watch --write DIR --crl
/// --on-change "nginx -s reload"` keeps current. A workload's SVID gets through; another trust domain's certificate, a
/// forgery under the real CA's name and a revoked SVID are refused; nginx's own certificate rotates under load with no
/// failed request.
/// </summary>
public sealed class NginxTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task Nginx_lets_a_workload_svid_through_and_refuses_foreign_forged_and_revoked_ones()
    {
        Assert.True(File.Exists(NginxServer.Binary), "nginx is not installed: apt-get install nginx (.ci/run does)");
        await using var rig = await AgentRig.StartAsync();
        await rig.CreateEntryAsync("spiffe://example.org/nginx", ["unix:uid:0"], "--dns", "localhost");
        await rig.CreateEntryAsync("spiffe://example.org/client", ["unix:uid:65534"]);
        await using var stage = await Stage.StartAsync(rig);
        var nginx = stage.Nginx;
        var client = stage.ClientDir;
        var ca = Path.Combine(stage.NginxDir, "bundle.pem");

        // The workload's SVID gets through; nginx saw a verified certificate and passed its serial to the app.
        var ok = await nginx.CurlAsync(ca, Path.Combine(client, "svid.pem"), Path.Combine(client, "svid.key"));
        Assert.True(ok.Status == 200, ok.ToString());
        var clientSerial = LeafSerial(Path.Combine(client, "svid.pem"));
        Assert.Contains($"app: verify=SUCCESS serial={clientSerial}", ok.Body, StringComparison.OrdinalIgnoreCase);

        // No certificate, another trust domain's, and a forgery naming the real CA and the client's SPIFFE ID: refused.
        var none = await nginx.CurlAsync(ca, null, null);
        Assert.True(none.Status == 400 && none.Body.Contains("No required SSL certificate", StringComparison.Ordinal), none.ToString());
        using var realCa = X509Certificate2.CreateFromPem(await File.ReadAllTextAsync(ca));
        foreach (var (name, issuer, id) in new[]
        {
            ("foreign", "CN=other.org CA", "spiffe://other.org/client"),
            ("forged", realCa.Subject, "spiffe://example.org/client"),
        })
        {
            var (cert, key) = ForeignSvid(rig[name], issuer, id);
            var refused = await nginx.CurlAsync(ca, cert, key);
            Assert.True(refused.Status == 400 && refused.Body.Contains("SSL certificate error", StringComparison.Ordinal), $"{name}: {refused}");
            Assert.DoesNotContain("app:", refused.Body, StringComparison.Ordinal);
        }

        // Revoked: a copy of the client's current SVID is refused once the CRL reached nginx (the client's watcher gets
        // a fresh SVID meanwhile, which still gets through).
        var stolen = rig["stolen"];
        Directory.CreateDirectory(stolen);
        File.Copy(Path.Combine(client, "svid.pem"), Path.Combine(stolen, "svid.pem"));
        File.Copy(Path.Combine(client, "svid.key"), Path.Combine(stolen, "svid.key"));
        var started = Stopwatch.StartNew();
        var revoke = await rig.Server.WritAsync("revoke", "--serial", clientSerial, "--reason", "nginx test");
        Assert.True(revoke.ExitCode == 0, revoke.ToString());
        var revokedAt = started.Elapsed;
        var refusedRevoked = await WorkloadTools.EventuallyAsync(async () =>
        {
            var r = await nginx.CurlAsync(ca, Path.Combine(stolen, "svid.pem"), Path.Combine(stolen, "svid.key"));
            return r.Status == 400 ? r : throw new InvalidOperationException("the revoked SVID still gets through: " + r);
        }, Deadline, "nginx refusing the revoked SVID");
        var refusedAfter = started.Elapsed;
        Assert.Contains("SSL certificate error", refusedRevoked.Body, StringComparison.Ordinal);
        TestContext.Current.SendDiagnosticMessage(
            $"revocation -> nginx refuses: {(refusedAfter - revokedAt).TotalMilliseconds:F0} ms after `writ revoke` returned ({refusedAfter.TotalMilliseconds:F0} ms after it started)");
        Assert.Contains("certificate revoked", nginx.ErrorLog, StringComparison.Ordinal);
        var renewed = await WorkloadTools.EventuallyAsync(async () =>
        {
            var serial = LeafSerial(Path.Combine(client, "svid.pem"));
            var r = await nginx.CurlAsync(ca, Path.Combine(client, "svid.pem"), Path.Combine(client, "svid.key"));
            return serial != clientSerial && r.Status == 200 ? r : throw new InvalidOperationException("no fresh client SVID through nginx yet: " + r);
        }, Deadline, "the client's fresh SVID getting through");
        Assert.Contains("app: verify=SUCCESS", renewed.Body, StringComparison.Ordinal);
        Assert.False(stage.Watch.HasExited, stage.Watch.Stderr.Text);
    }

    [Fact]
    public async Task Nginx_serves_its_rotating_certificate_with_no_failed_request_during_a_rotation_loop()
    {
        Assert.True(File.Exists(NginxServer.Binary), "nginx is not installed: apt-get install nginx (.ci/run does)");
        await using var rig = await AgentRig.StartAsync();
        // The shortest TTL the server accepts: the agent rotates it at about half its life.
        await rig.CreateEntryAsync("spiffe://example.org/nginx", ["unix:uid:0"], "--dns", "localhost", "--x509-ttl", "10s");
        await rig.CreateEntryAsync("spiffe://example.org/client", ["unix:uid:65534"], "--x509-ttl", "1h");
        await using var stage = await Stage.StartAsync(rig);
        var ca = Path.Combine(stage.NginxDir, "bundle.pem");
        var cert = Path.Combine(stage.ClientDir, "svid.pem");
        var key = Path.Combine(stage.ClientDir, "svid.key");

        var served = new List<string>();
        var requests = 0;
        var until = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (served.Distinct().Count() < 3)
        {
            Assert.True(DateTime.UtcNow < until, $"nginx served {served.Distinct().Count()} certificate(s) in 60 s after {requests} requests: {string.Join(", ", served.Distinct())}\n{stage.Watch.Stderr.Text}");
            var r = await stage.Nginx.CurlAsync(ca, cert, key);
            requests++;
            Assert.True(r.Status == 200 && r.ServedSerial is not null, $"request {requests} failed during the rotation loop: {r}\n{stage.Nginx.ErrorLog}");
            served.Add(r.ServedSerial!);
        }
        var changes = served.Zip(served.Skip(1)).Count(p => p.First != p.Second);
        TestContext.Current.SendDiagnosticMessage($"rotation loop: {requests} requests, 0 failed, {changes} served-certificate changes");
        Assert.True(changes >= 2, string.Join(", ", served));
        // Each served certificate was one the watcher wrote: the serials are Writ's, one per rotation.
        var written = stage.Watch.Stdout.Text;
        foreach (var s in served.Distinct())
        {
            Assert.Contains(s, written.Replace(":", "", StringComparison.Ordinal), StringComparison.OrdinalIgnoreCase);
        }
    }

    /// <summary>
    /// The stage both tests share: nginx's watcher (root, the nginx identity) keeping DIR current and reloading nginx, the
    /// client's watcher (nobody, the client identity) keeping its own files, and nginx started once the files exist.
    /// </summary>
    private sealed class Stage : IAsyncDisposable
    {
        public required string NginxDir { get; init; }
        public required string ClientDir { get; init; }
        public required BackgroundProcess Watch { get; init; }
        public required BackgroundProcess ClientWatch { get; init; }
        public required NginxServer Nginx { get; init; }

        public static async Task<Stage> StartAsync(AgentRig rig)
        {
            await AgentTests.WaitForSvidAsync(rig);
            var nginxDir = rig["nginx-files"];
            var clientDir = rig["client-files"];
            Directory.CreateDirectory(clientDir);
            var chown = await Proc.RunAsync("chown", ["65534:65534", clientDir]);
            Assert.True(chown.ExitCode == 0, chown.ToString());
            var nginx = new NginxServer(rig["nginx"], nginxDir);
            var watch = BackgroundProcess.Writ("svid", "watch", "--write", nginxDir, "--crl", "--on-change", nginx.ReloadCommand, "--socket", rig.Agent.SocketPath);
            var clientWatch = BackgroundProcess.Start("runuser", "-u", "nobody", "--", "dotnet", Repo.WritDll, "svid", "watch", "--write", clientDir, "--socket", rig.Agent.SocketPath);
            var stage = new Stage { NginxDir = nginxDir, ClientDir = clientDir, Watch = watch, ClientWatch = clientWatch, Nginx = nginx };
            try
            {
                await watch.Stdout.WaitForAsync(l => l.Contains("written to", StringComparison.Ordinal) && l.Contains("CRL(s)", StringComparison.Ordinal), Deadline, () => watch.HasExited);
                await clientWatch.Stdout.WaitForAsync(l => l.Contains("written to", StringComparison.Ordinal), Deadline, () => clientWatch.HasExited);
                await nginx.StartAsync();
                return stage;
            }
            catch
            {
                await stage.DisposeAsync();
                throw;
            }
        }

        public async ValueTask DisposeAsync()
        {
            await Nginx.DisposeAsync();
            await Watch.DisposeAsync();
            await ClientWatch.DisposeAsync();
        }
    }

    /// <summary>An SVID-shaped certificate for <paramref name="spiffeId"/> from a CA of the test's own named <paramref name="issuer"/>, as PEM files.</summary>
    private static (string Cert, string Key) ForeignSvid(string dir, string issuer, string spiffeId)
    {
        Directory.CreateDirectory(dir);
        using var caKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var caReq = new CertificateRequest(issuer, caKey, HashAlgorithmName.SHA256);
        caReq.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        caReq.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        var now = DateTimeOffset.UtcNow;
        using var caCert = caReq.CreateSelfSigned(now.AddMinutes(-5), now.AddHours(1));
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var req = new CertificateRequest("", key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddUri(new Uri(spiffeId));
        req.CertificateExtensions.Add(san.Build(critical: true));
        req.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        req.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        req.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.2")], false));
        using var leaf = req.Create(caCert, now.AddMinutes(-5), now.AddMinutes(30), RandomNumberGenerator.GetBytes(16));
        var certFile = Path.Combine(dir, "svid.pem");
        var keyFile = Path.Combine(dir, "svid.key");
        File.WriteAllText(certFile, leaf.ExportCertificatePem() + "\n" + caCert.ExportCertificatePem() + "\n");
        File.WriteAllText(keyFile, key.ExportPkcs8PrivateKeyPem() + "\n");
        return (certFile, keyFile);
    }

    internal static string LeafSerial(string pemFile)
    {
        using var leaf = X509Certificate2.CreateFromPem(File.ReadAllText(pemFile));
        return leaf.SerialNumber;
    }
}
