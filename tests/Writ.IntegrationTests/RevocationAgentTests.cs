using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using System.Threading.Channels;
using Writ.Cli.Admin;
using Writ.IntegrationTests.Harness;
using Writ.Protocol.Admin;

namespace Writ.IntegrationTests;

/// <summary>
/// Revocation across real processes with a real agent: credentials of a workload instance stop being honoured once that
/// instance is gone — also when its files were copied to another user — and a relying party that checks the CRL sees it.
/// </summary>
public sealed class RevocationAgentTests
{
    [Fact]
    public async Task Attack_svid_files_copied_to_another_uid_are_refused_by_a_crl_checking_relying_party_once_the_workload_exits()
    {
        await using var rig = await AgentRig.StartAsync();
        await rig.CreateEntryAsync("spiffe://example.org/rv/copied", ["unix:uid:0"]);
        await AgentTests.WaitForSvidAsync(rig);
        using var dir = new TempDir();

        // The workload (a process of uid 0) fetches its SVID to files and exits.
        var fetched = await rig.WorkloadAsync("svid", "fetch", "--write", dir["workload"]);
        Assert.True(fetched.ExitCode == 0, fetched.ToString());
        using var leaf = X509CertificateLoader.LoadCertificateFromFile(dir["workload/svid.pem"]);

        // Someone copies the files to a place another user (nobody) can read.
        var loot = dir["loot"];
        Directory.CreateDirectory(loot);
        File.SetUnixFileMode(dir.Path, (UnixFileMode)0b111_101_101);
        File.SetUnixFileMode(loot, (UnixFileMode)0b111_101_101);
        foreach (var f in new[] { "svid.pem", "svid.key" })
        {
            File.Copy(Path.Combine(dir["workload"], f), Path.Combine(loot, f));
            File.SetUnixFileMode(Path.Combine(loot, f), (UnixFileMode)0b110_100_100);
        }

        // The workload is gone, so its serial is revoked (agent: pidfd/re-attestation -> ReportInstanceGone -> server).
        await WaitForCrlSerialAsync(rig.Server, leaf.SerialNumber, TimeSpan.FromSeconds(15));

        // A relying party (openssl s_server) that checks the CRL refuses the copied SVID presented by uid nobody.
        await File.WriteAllTextAsync(dir["crl.pem"], await CrlPemAsync(rig.Server), TestContext.Current.CancellationToken);
        var attack = await MutualTlsAsync(dir, rig.BundlePem, dir["crl.pem"], "nobody", Path.Combine(loot, "svid.pem"), Path.Combine(loot, "svid.key"));
        Assert.False(attack.Accepted, "the relying party accepted a copied SVID of a workload that had exited:\n" + attack.Log);
        Assert.Contains("certificate revoked", attack.Log, StringComparison.Ordinal);

        // Control: the same relying party, same CRL, accepts an SVID that was not revoked — the refusal above is the CRL's doing.
        var minted = await rig.Server.WritAsync("x509", "mint", "--spiffe-id", "spiffe://example.org/rv/control", "--write", dir["control"]);
        Assert.True(minted.ExitCode == 0, minted.ToString());
        File.SetUnixFileMode(dir["control"], (UnixFileMode)0b111_101_101);
        File.SetUnixFileMode(dir["control/svid.key"], (UnixFileMode)0b110_100_100);
        var control = await MutualTlsAsync(dir, rig.BundlePem, dir["crl.pem"], "nobody", dir["control/svid.pem"], dir["control/svid.key"]);
        Assert.True(control.Accepted, "the relying party refused a valid SVID: the test setup is broken:\n" + control.Log);

        // The agent no longer serves that serial to anyone, and the ledger says why.
        var list = await rig.Server.WritAsync("revoke", "list", "--output", "json");
        using var doc = JsonDocument.Parse(list.Stdout);
        var r = doc.RootElement.GetProperty("revocations").EnumerateArray().Single(x => x.GetProperty("serial").GetString() == leaf.SerialNumber);
        Assert.StartsWith("instance gone: exited", r.GetProperty("reason").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_killed_workloads_serial_reaches_the_crl_through_its_pidfd_not_the_periodic_recheck()
    {
        // The periodic re-check is 10 min away (the longest interval allowed): within the wait below only the pidfd can
        // notice the kill, so the test proves the immediate path without comparing times on a loaded machine.
        await using var rig = await AgentRig.StartAsync(agentArgs: ["--reattest-interval", "10m"]);
        await rig.CreateEntryAsync("spiffe://example.org/rv/killed", ["unix:uid:0"]);
        await AgentTests.WaitForSvidAsync(rig);
        await using var workload = await StreamingWorkload.StartAsync(rig.Agent.SocketPath);
        var serial = await workload.FirstSerialAsync();
        using var admin = new AdminConnection(rig.Server.AdminSocket);
        Assert.DoesNotContain(serial, await CrlSerialsAsync(admin));

        workload.Kill();
        await WaitForCrlSerialAsync(rig.Server, serial, TimeSpan.FromSeconds(60));
    }

    // ------------------------------------------------------------------ helpers

    private static async Task<string> CrlPemAsync(ServerProcess server)
    {
        var r = await server.WritAsync("bundle", "show", "--format", "crl");
        Assert.True(r.ExitCode == 0, r.ToString());
        return r.Stdout;
    }

    /// <summary>The serials (upper-case hex) the server's CRL lists, read over the admin API.</summary>
    private static async Task<HashSet<string>> CrlSerialsAsync(AdminConnection admin)
    {
        var b = await admin.Client.GetBundleAsync(new GetBundleRequest(), cancellationToken: TestContext.Current.CancellationToken);
        _ = CertificateRevocationListBuilder.Load(b.CrlDer.ToByteArray(), out _);   // a well-formed CRL
        return ReadSerials(b.CrlDer.ToByteArray());
    }

    /// <summary>The userCertificate serials of a DER CRL (RFC 5280 §5.1).</summary>
    internal static HashSet<string> ReadSerials(byte[] der)
    {
        var serials = new HashSet<string>(StringComparer.Ordinal);
        var outer = new System.Formats.Asn1.AsnReader(der, System.Formats.Asn1.AsnEncodingRules.DER).ReadSequence();
        var tbs = outer.ReadSequence();
        if (tbs.PeekTag().HasSameClassAndValue(System.Formats.Asn1.Asn1Tag.Integer))
        {
            tbs.ReadInteger();   // version
        }
        tbs.ReadSequence();      // signature algorithm
        tbs.ReadSequence();      // issuer
        tbs.ReadEncodedValue();  // thisUpdate
        if (tbs.HasData && !tbs.PeekTag().HasSameClassAndValue(System.Formats.Asn1.Asn1Tag.Sequence))
        {
            tbs.ReadEncodedValue();   // nextUpdate
        }
        if (tbs.HasData && tbs.PeekTag().HasSameClassAndValue(System.Formats.Asn1.Asn1Tag.Sequence))
        {
            var revoked = tbs.ReadSequence();
            while (revoked.HasData)
            {
                var entry = revoked.ReadSequence();
                serials.Add(Convert.ToHexString(entry.ReadIntegerBytes().Span));
            }
        }
        return serials;
    }

    private static async Task WaitForCrlSerialAsync(ServerProcess server, string serial, TimeSpan timeout)
    {
        using var admin = new AdminConnection(server.AdminSocket);
        var clock = Stopwatch.StartNew();
        while (!(await CrlSerialsAsync(admin)).Contains(serial))
        {
            Assert.True(clock.Elapsed < timeout, $"serial {serial} did not reach the CRL within {timeout.TotalSeconds:F0} s");
            await Task.Delay(50, TestContext.Current.CancellationToken);
        }
    }

    private sealed record TlsOutcome(bool Accepted, string Log);

    /// <summary>
    /// openssl s_server requiring a client certificate, verifying it against the bundle AND the CRL, and an openssl
    /// s_client run as <paramref name="user"/> presenting <paramref name="cert"/>/<paramref name="key"/>.
    /// </summary>
    private static async Task<TlsOutcome> MutualTlsAsync(TempDir dir, string bundlePem, string crlPem, string user, string cert, string key)
    {
        var name = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4));
        using (var serverKey = ECDsa.Create(ECCurve.NamedCurves.nistP256))
        {
            var req = new CertificateRequest("CN=relying-party", serverKey, HashAlgorithmName.SHA256);
            using var self = req.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddHours(1));
            await File.WriteAllTextAsync(dir[$"rp-{name}.pem"], self.ExportCertificatePem() + "\n");
            await File.WriteAllTextAsync(dir[$"rp-{name}.key"], serverKey.ExportPkcs8PrivateKeyPem() + "\n");
        }
        var port = FreePort();
        var server = new ProcessStartInfo("openssl") { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true, UseShellExecute = false };
        foreach (var a in new[]
                 {
                     "s_server", "-accept", $"127.0.0.1:{port}", "-cert", dir[$"rp-{name}.pem"], "-key", dir[$"rp-{name}.key"],
                     "-CAfile", bundlePem, "-Verify", "1", "-verify_return_error", "-crl_check", "-CRL", crlPem,
                 })
        {
            server.ArgumentList.Add(a);
        }
        using var rp = Process.Start(server) ?? throw new InvalidOperationException("cannot start openssl s_server");
        var log = new LineLog();
        rp.OutputDataReceived += (_, e) => log.Add(e.Data);
        rp.ErrorDataReceived += (_, e) => log.Add(e.Data);
        rp.BeginOutputReadLine();
        rp.BeginErrorReadLine();
        try
        {
            await WaitListeningAsync(port, rp);
            var client = await Proc.RunAsync("runuser", ["-u", user, "--", "openssl", "s_client", "-connect", $"127.0.0.1:{port}", "-cert", cert, "-key", key, "-brief"],
                stdin: "", workingDir: "/", timeout: TimeSpan.FromSeconds(20));
            // The server logs the client certificate it accepted, or why it refused it.
            await log.WaitForAsync(l => l.StartsWith("Client certificate", StringComparison.Ordinal) || l.Contains("verify error", StringComparison.Ordinal),
                TimeSpan.FromSeconds(10), () => rp.HasExited);
            var serverLog = log.Text;
            var text = serverLog + "\n--- client (" + user + ")\n" + client;
            var accepted = serverLog.Contains("Client certificate", StringComparison.Ordinal) && !serverLog.Contains("verify error", StringComparison.Ordinal);
            return new TlsOutcome(accepted, text);
        }
        finally
        {
            if (!rp.HasExited)
            {
                rp.Kill();
            }
        }
    }

    /// <summary>Until a TCP connection to the port succeeds (the probe is a failed handshake the server shrugs off).</summary>
    private static async Task WaitListeningAsync(int port, Process server)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            Assert.False(server.HasExited, "openssl s_server exited at start");
            try
            {
                using var probe = new TcpClient();
                await probe.ConnectAsync(IPAddress.Loopback, port, TestContext.Current.CancellationToken);
                return;
            }
            catch (SocketException) when (clock.Elapsed < TimeSpan.FromSeconds(10))
            {
                await Task.Delay(50, TestContext.Current.CancellationToken);
            }
        }
    }

    private static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    /// <summary>A workload process (node with the spec proto) holding a FetchX509SVID stream open.</summary>
    private sealed class StreamingWorkload : IAsyncDisposable
    {
        private readonly Process _process;
        private readonly Channel<string> _lines = Channel.CreateUnbounded<string>();
        private readonly LineLog _err = new();

        private StreamingWorkload(Process process) => _process = process;

        public static async Task<StreamingWorkload> StartAsync(string socket)
        {
            var psi = new ProcessStartInfo("node") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            psi.ArgumentList.Add(Path.Combine(WorkloadTools.InteropDir, "instance-watch.mjs"));
            psi.ArgumentList.Add(socket);
            var p = Process.Start(psi) ?? throw new InvalidOperationException("could not start node");
            var w = new StreamingWorkload(p);
            p.OutputDataReceived += (_, e) =>
            {
                if (e.Data is { } line)
                {
                    w._lines.Writer.TryWrite(line);
                }
            };
            p.ErrorDataReceived += (_, e) => w._err.Add(e.Data);
            p.BeginOutputReadLine();
            p.BeginErrorReadLine();
            await w.NextLineAsync();   // {"pid":N}
            return w;
        }

        private async Task<string> NextLineAsync()
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            try
            {
                return await _lines.Reader.ReadAsync(cts.Token);
            }
            catch (OperationCanceledException)
            {
                throw new TimeoutException("the workload printed nothing within 30 s\n--- stderr\n" + _err.Text);
            }
        }

        public async Task<string> FirstSerialAsync()
        {
            using var doc = JsonDocument.Parse(await NextLineAsync());
            Assert.True(doc.RootElement.GetProperty("ok").GetBoolean(), doc.RootElement.ToString());
            return doc.RootElement.GetProperty("serials").EnumerateArray().Single().GetString()!.ToUpper(CultureInfo.InvariantCulture);
        }

        public void Kill() => _process.Kill(entireProcessTree: true);

        public async ValueTask DisposeAsync()
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
            }
            await _process.WaitForExitAsync();
            _process.Dispose();
        }
    }
}
