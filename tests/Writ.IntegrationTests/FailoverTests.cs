using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Grpc.Core;
using Writ.Cli.Workload;
using Writ.IntegrationTests.Harness;

namespace Writ.IntegrationTests;

/// <summary>
/// Agents fail over between the servers of their <c>--server</c> list (docs/high-availability.md "Agents fail over"):
/// a lost server is replaced by the next listed one while workloads' streams stay open, and a listed endpoint that
/// cannot prove it is the server is skipped, never trusted.
/// </summary>
public sealed class FailoverTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(90);

    [Fact]
    public async Task Server_killed_and_back_behind_another_listed_address_the_workload_stream_stays_open_and_rotates()
    {
        using var dir = new TempDir();
        await using var server = await ServerProcess.StartAsync(dir["server"]);
        await using var a = new TcpRelay(server.AgentApi);
        await using var b = new TcpRelay(server.AgentApi);
        b.Retarget(null);   // listed but dead: an agent that starts there moves on to a
        await using var agent = await StartAgentAsync(dir, server, $"{a.Address},{b.Address}", "agent", "--metrics-bind", "127.0.0.1:0");
        await CreateEntryAsync(server, agent, "spiffe://example.org/failover", "--x509-ttl", "20s");

        using var client = new WorkloadClient(agent.SocketPath);
        using var stream = client.Client.FetchX509SVID(new X509SVIDRequest(), WorkloadClient.Headers, cancellationToken: TestContext.Current.CancellationToken);
        var first = await NextSerialAsync(stream);

        // The server dies (kill -9) and comes back on the same data dir, now reachable only through the other listed
        // address: the agent must leave a for b by itself.
        await server.KillAsync();
        a.Retarget(null);
        await server.StartAsync();
        b.Retarget(server.AgentApi);

        // The workload's stream was never broken: it receives the next rotation, signed through b. (An update with the
        // same SVID may come first: the agent re-sends what it serves when the resumed sync hands it the bundle again.)
        var next = first;
        var until = DateTime.UtcNow + Deadline;
        while (next == first && DateTime.UtcNow < until)
        {
            next = await NextSerialAsync(stream);
        }
        Assert.NotEqual(first, next);
        await agent.Stderr.WaitForAsync(l => l.Contains($"Connected to server {b.Address}", StringComparison.Ordinal), Deadline);
        Assert.Contains($"switching to server {b.Address}", agent.Stderr.Text, StringComparison.Ordinal);

        // A workload that exits now is reported gone through b (a is dead): the server revokes what it was issued.
        using var files = new TempDir();
        var fetched = await Proc.WritAsync("svid", "fetch", "--write", files.Path, "--socket", agent.SocketPath);
        Assert.True(fetched.ExitCode == 0, fetched.ToString());
        using var gone = X509CertificateLoader.LoadCertificateFromFile(Path.Combine(files.Path, "svid.pem"));
        await WorkloadTools.EventuallyAsync(async () =>
        {
            var list = await server.WritAsync("revoke", "list", "--output", "json");
            Assert.True(list.ExitCode == 0, list.ToString());
            using var doc = System.Text.Json.JsonDocument.Parse(list.Stdout);
            var r = doc.RootElement.GetProperty("revocations").EnumerateArray()
                .FirstOrDefault(x => string.Equals(x.GetProperty("serial").GetString(), gone.SerialNumber, StringComparison.OrdinalIgnoreCase));
            return r.ValueKind == System.Text.Json.JsonValueKind.Object && r.GetProperty("reason").GetString()!.StartsWith("instance gone", StringComparison.Ordinal)
                ? true : throw new InvalidOperationException("not revoked yet");
        }, Deadline, "the exited workload's serial revoked through the other server");

        // The switch is counted, and the current-server gauge names b.
        var metricsAt = System.Text.RegularExpressions.Regex.Match(agent.Stdout.Text, @"\bmetrics=(\S+)").Groups[1].Value;
        using var http = new HttpClient();
        var scraped = (await http.GetStringAsync($"http://{metricsAt}/metrics", TestContext.Current.CancellationToken)).Split('\n');
        Assert.Contains(scraped, l => l.StartsWith("writ_agent_server_failovers_total", StringComparison.Ordinal) && ValueOf(l) >= 1);
        Assert.Contains(scraped, l => l.StartsWith("writ_agent_server_current{", StringComparison.Ordinal)
            && l.Contains($"server=\"{b.Address}\"", StringComparison.Ordinal) && ValueOf(l) == 1);
        Assert.False(agent.HasExited, agent.Stderr.Text);
    }

    [Fact]
    public async Task Rogue_listed_endpoints_are_refused_and_skipped_and_never_get_a_byte_of_the_agent()
    {
        using var dir = new TempDir();
        await using var server = await ServerProcess.StartAsync(dir["server"]);
        await using var relay = new TcpRelay(server.AgentApi);
        // Rogue 1 claims the server's SPIFFE ID with a certificate the bundle does not vouch for; rogue 2 holds a real
        // SVID of the trust domain, but of a workload, not of the server.
        using var impostorCert = SelfSigned("spiffe://example.org/writ/server");
        await using var impostor = new RogueTlsServer(impostorCert, []);
        await using var first = await StartAgentAsync(dir, server, relay.Address, "first");
        await CreateEntryAsync(server, first, "spiffe://example.org/not-the-server");
        var (workloadSvid, intermediates) = await FetchSvidWithKeyAsync(first.SocketPath);
        using var _ = workloadSvid;
        await using var workload = new RogueTlsServer(workloadSvid, intermediates);

        // With only rogues listed, a new agent never attests: its join token is never sent to either.
        var token = await TestAgent.NewJoinTokenAsync(server);
        await using var stranded = new AgentProcess($"{impostor.Address},{workload.Address}", dir["stranded"], null, dir["bundle.pem"], token);
        stranded.Launch();
        Assert.Equal(1, await stranded.WaitForExitAsync(Deadline));
        Assert.Contains("WRIT-AGENT-SERVER-UNREACHABLE", stranded.Stderr.Text, StringComparison.Ordinal);
        Assert.True(impostor.Handshakes > 0 && workload.Handshakes > 0, $"both rogues must have been tried: {impostor.Handshakes}, {workload.Handshakes}");

        // With the real server among them, an agent works; when the real one dies it tries the rogues, refuses them,
        // and comes back to the real one when it returns — sending nothing to a rogue meanwhile.
        await using var agent = await StartAgentAsync(dir, server, $"{impostor.Address},{workload.Address},{relay.Address}", "mixed");
        await CreateEntryAsync(server, agent, "spiffe://example.org/mixed");
        using var client = new WorkloadClient(agent.SocketPath);
        await WorkloadTools.EventuallyAsync(() => client.FetchX509Async(CancellationToken.None), Deadline, "the mixed agent serving");
        var (impostorBefore, workloadBefore) = (impostor.Handshakes, workload.Handshakes);
        await server.KillAsync();
        relay.Retarget(null);
        await WorkloadTools.EventuallyAsync(() => Task.FromResult(impostor.Handshakes > impostorBefore && workload.Handshakes > workloadBefore
            ? true : throw new InvalidOperationException($"handshakes {impostor.Handshakes}, {workload.Handshakes}")), Deadline, "the agent trying both rogues");
        await server.StartAsync();
        relay.Retarget(server.AgentApi);
        await CreateEntryAsync(server, agent, "spiffe://example.org/after-rogues");
        await WorkloadTools.EventuallyAsync(async () =>
        {
            var r = await client.FetchX509Async(CancellationToken.None);
            return r.Svids.Any(s => s.SpiffeId == "spiffe://example.org/after-rogues") ? r : throw new InvalidOperationException("not yet");
        }, Deadline, "the agent back on the real server");
        Assert.Equal(0, impostor.ApplicationBytes);
        Assert.Equal(0, workload.ApplicationBytes);
        Assert.Contains("TLS refused", agent.Stderr.Text, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("127.0.0.1:8081,127.0.0.1:8081", "WRIT-AGENT-SERVER-DUPLICATE")]
    [InlineData("127.0.0.1:8081,,127.0.0.2:8081", "WRIT-AGENT-SERVER-EMPTY")]
    [InlineData("127.0.0.1:8081,https://b:8081", "WRIT-AGENT-SERVER-ADDRESS")]
    [InlineData("a:99999", "WRIT-AGENT-SERVER-ADDRESS")]
    public async Task A_bad_server_list_is_one_error_line_with_its_code_and_the_agent_does_not_start(string list, string code)
    {
        using var dir = new TempDir();
        var r = await Proc.WritAsync("agent", "run", "--server", list, "--trust-domain", "example.org", "--data-dir", dir["agent"]);
        Expect.OneLineError(r, code + ":");
        Assert.Equal(2, r.ExitCode);
        Assert.False(Directory.Exists(dir["agent"]), "a refused configuration must change nothing");
    }

    /// <summary>The value of one Prometheus sample line (after the labels; a timestamp may follow).</summary>
    private static double ValueOf(string line) =>
        double.Parse(line[(line.LastIndexOf('}') + 1)..].Trim().Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture);

    private static async Task<AgentProcess> StartAgentAsync(TempDir dir, ServerProcess server, string servers, string name = "agent", params string[] extra)
    {
        if (!File.Exists(dir["bundle.pem"]))
        {
            var bundle = await server.WritAsync("bundle", "show", "--format", "pem");
            Assert.True(bundle.ExitCode == 0, bundle.ToString());
            await File.WriteAllTextAsync(dir["bundle.pem"], bundle.Stdout);
        }
        var token = await TestAgent.NewJoinTokenAsync(server);
        var agent = new AgentProcess(servers, dir[name], null, dir["bundle.pem"], token, extra);
        await agent.StartAsync();
        return agent;
    }

    private static async Task CreateEntryAsync(ServerProcess server, AgentProcess agent, string spiffeId, params string[] extra)
    {
        var r = await server.WritAsync(["entry", "create", "--spiffe-id", spiffeId, "--parent-id", agent.AgentId, "--selector", "unix:uid:0", .. extra]);
        Assert.True(r.ExitCode == 0, r.ToString());
    }

    private static async Task<string> NextSerialAsync(AsyncServerStreamingCall<X509SVIDResponse> stream)
    {
        using var cts = new CancellationTokenSource(Deadline);
        Assert.True(await stream.ResponseStream.MoveNext(cts.Token), "the workload's stream ended");
        var svid = Assert.Single(stream.ResponseStream.Current.Svids);
        return WorkloadClient.ParseCertificates(svid.X509Svid.Span)[0].SerialNumber;
    }

    /// <summary>A workload SVID of the trust domain with its key (what a compromised workload could present).</summary>
    private static async Task<(X509Certificate2 Leaf, X509Certificate2[] Intermediates)> FetchSvidWithKeyAsync(string socket)
    {
        using var client = new WorkloadClient(socket);
        var r = await WorkloadTools.EventuallyAsync(async () =>
        {
            var x = await client.FetchX509Async(CancellationToken.None);
            return x.Svids.Count > 0 ? x : throw new InvalidOperationException("no SVID yet");
        }, Deadline, "a workload SVID");
        var chain = WorkloadClient.ParseCertificates(r.Svids[0].X509Svid.Span);
        using var key = ECDsa.Create();
        key.ImportPkcs8PrivateKey(r.Svids[0].X509SvidKey.Span, out _);
        using var withKey = chain[0].CopyWithPrivateKey(key);
        return (X509CertificateLoader.LoadPkcs12(withKey.Export(X509ContentType.Pkcs12), null), [.. chain.Skip(1)]);
    }

    private static X509Certificate2 SelfSigned(string spiffeId)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var req = new CertificateRequest("CN=writ-server", key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddUri(new Uri(spiffeId));
        req.CertificateExtensions.Add(san.Build());
        req.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        using var cert = req.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddHours(1));
        return X509CertificateLoader.LoadPkcs12(cert.Export(X509ContentType.Pkcs12), null);
    }

    /// <summary>
    /// A TLS server on loopback that presents a given certificate and speaks h2: counts the TLS handshakes clients start
    /// and every application byte it receives after one (an agent that trusted it would send the HTTP/2 preface).
    /// </summary>
    private sealed class RogueTlsServer : IAsyncDisposable
    {
        private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
        private readonly CancellationTokenSource _stop = new();
        private readonly SslStreamCertificateContext _context;
        private readonly Task _accept;
        private int _handshakes;
        private long _bytes;

        public RogueTlsServer(X509Certificate2 cert, X509Certificate2[] intermediates)
        {
            _context = SslStreamCertificateContext.Create(cert, new X509Certificate2Collection(intermediates), offline: true);
            _listener.Start();
            _accept = AcceptAsync();
        }

        public string Address => $"127.0.0.1:{((IPEndPoint)_listener.LocalEndpoint).Port}";
        public int Handshakes => Volatile.Read(ref _handshakes);
        public long ApplicationBytes => Interlocked.Read(ref _bytes);

        private async Task AcceptAsync()
        {
            while (!_stop.IsCancellationRequested)
            {
                TcpClient c;
                try
                {
                    c = await _listener.AcceptTcpClientAsync(_stop.Token);
                }
                catch (Exception) when (_stop.IsCancellationRequested)
                {
                    return;
                }
                _ = ServeAsync(c);
            }
        }

        private async Task ServeAsync(TcpClient c)
        {
            using (c)
            await using (var tls = new SslStream(c.GetStream()))
            {
                Interlocked.Increment(ref _handshakes);
                try
                {
                    await tls.AuthenticateAsServerAsync(new SslServerAuthenticationOptions
                    {
                        ServerCertificateContext = _context,
                        ApplicationProtocols = [SslApplicationProtocol.Http2],
                        ClientCertificateRequired = false,
                    }, _stop.Token);
                    var buffer = new byte[4096];
                    int n;
                    while ((n = await tls.ReadAsync(buffer, _stop.Token)) > 0)
                    {
                        Interlocked.Add(ref _bytes, n);
                    }
                }
                catch (Exception)
                {
                    // the client refused us (as it must): nothing was received
                }
            }
        }

        public async ValueTask DisposeAsync()
        {
            await _stop.CancelAsync();
            _listener.Stop();
            try
            {
                await _accept;
            }
            catch (OperationCanceledException)
            {
            }
            _stop.Dispose();
        }
    }
}
