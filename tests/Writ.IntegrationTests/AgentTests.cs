using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using Grpc.Core;
using Writ.IntegrationTests.Harness;

namespace Writ.IntegrationTests;

/// <summary>
/// A real `writ agent run` serving real workload processes over its Unix socket: who gets an identity is decided from
/// the kernel (uid, executable), never from what the caller says; clients nobody here wrote interoperate.
/// </summary>
public sealed class AgentTests
{
    private static readonly TimeSpan SyncDeadline = TimeSpan.FromSeconds(15);

    [Fact]
    public async Task Identity_follows_the_kernel_uid_and_executable_hash()
    {
        await using var rig = await AgentRig.StartAsync();
        var dotnetSha = await WorkloadTools.ExecutableSha256Async("dotnet");
        var nodeSha = await WorkloadTools.ExecutableSha256Async("node");
        Assert.NotEqual(dotnetSha, nodeSha);
        await rig.CreateEntryAsync("spiffe://example.org/root-dotnet", ["unix:uid:0", $"unix:sha256:{dotnetSha}"]);

        // uid 0 running dotnet (writ): its identity, once the agent has synced the entry.
        var ok = await WorkloadTools.EventuallyAsync(async () =>
        {
            var r = await rig.WorkloadAsync("svid", "fetch", "--output", "json");
            return r.ExitCode == 0 ? r : throw new InvalidOperationException(r.ToString());
        }, SyncDeadline, "the root workload getting its SVID");
        using (var doc = JsonDocument.Parse(ok.Stdout))
        {
            var ids = doc.RootElement.GetProperty("svids").EnumerateArray().Select(s => s.GetProperty("spiffe_id").GetString()).ToList();
            Assert.Equal(["spiffe://example.org/root-dotnet"], ids);
        }

        // Same uid, another executable (node): the hash selector does not match.
        Assert.Equal("PERMISSION_DENIED", WorkloadTools.StatusName(await WorkloadTools.NodeClientAsync(null, "x509", rig.Agent.SocketPath)));
        // Another uid (nobody) reaches the socket but gets no identity.
        Assert.Equal("PERMISSION_DENIED", WorkloadTools.StatusName(await WorkloadTools.NodeClientAsync("nobody", "x509", rig.Agent.SocketPath)));

        // An entry for nobody's uid and node's hash: nobody's node gets exactly that identity, never root's.
        await rig.CreateEntryAsync("spiffe://example.org/nobody-node", ["unix:uid:65534", $"unix:sha256:{nodeSha}"]);
        var nobody = await WorkloadTools.EventuallyAsync(async () =>
        {
            var r = await WorkloadTools.NodeClientAsync("nobody", "x509", rig.Agent.SocketPath);
            return r.ExitCode == 0 ? r : throw new InvalidOperationException(r.ToString());
        }, SyncDeadline, "nobody's node getting its SVID");
        using (var doc = WorkloadTools.Json(nobody))
        {
            Assert.Equal(["spiffe://example.org/nobody-node"], doc.RootElement.GetProperty("svids").EnumerateArray().Select(s => s.GetString()).ToList());
        }
        // Root's node still matches neither entry (uid 0 ≠ 65534; node ≠ dotnet).
        Assert.Equal("PERMISSION_DENIED", WorkloadTools.StatusName(await WorkloadTools.NodeClientAsync(null, "x509", rig.Agent.SocketPath)));
        Assert.Contains("refused", rig.Agent.Stderr.Text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Each_unix_selector_matches_the_real_process_and_only_it()
    {
        await using var rig = await AgentRig.StartAsync();
        var nodePath = (await Proc.RunAsync("sh", ["-c", "readlink -f \"$(command -v node)\""])).Stdout.Trim();
        var nodeSha = await WorkloadTools.ExecutableSha256Async("node");
        string[] matching = ["unix:uid:65534", "unix:gid:65534", "unix:user:nobody", "unix:group:nogroup", $"unix:path:{nodePath}", $"unix:sha256:{nodeSha}"];
        string[][] notMatching = [["unix:uid:0"], ["unix:user:root"], ["unix:gid:0"], ["unix:path:/usr/bin/python3"], ["unix:sha256:" + new string('0', 64)],
            ["unix:uid:65534", "unix:path:/usr/bin/python3"]];   // every selector must match, not just one
        // The non-matching entries first: once the last matching one has reached the agent, they all have.
        for (var i = 0; i < notMatching.Length; i++)
        {
            await rig.CreateEntryAsync($"spiffe://example.org/sel/no-{i}", notMatching[i]);
        }
        for (var i = 0; i < matching.Length; i++)
        {
            await rig.CreateEntryAsync($"spiffe://example.org/sel/yes-{i}", [matching[i]]);
        }
        var expected = Enumerable.Range(0, matching.Length).Select(i => $"spiffe://example.org/sel/yes-{i}").Order(StringComparer.Ordinal).ToList();
        var got = await WorkloadTools.EventuallyAsync(async () =>
        {
            var r = await WorkloadTools.NodeClientAsync("nobody", "x509", rig.Agent.SocketPath);
            using var doc = WorkloadTools.Json(r);
            var ids = r.ExitCode == 0 ? doc.RootElement.GetProperty("svids").EnumerateArray().Select(e => e.GetString()!).Order(StringComparer.Ordinal).ToList() : [];
            return ids.Count == expected.Count ? ids : throw new InvalidOperationException(r.Stdout);
        }, SyncDeadline, "nobody's node getting its identities");
        Assert.Equal(expected, got);
    }

    [Fact]
    public async Task Default_socket_in_the_data_dir_is_usable_by_every_local_user_but_the_dir_is_not_listable()
    {
        await using var rig = await AgentRig.StartAsync(socketPath: "");
        Assert.Equal(Path.Combine(rig.Agent.DataDir, "workload.sock"), rig.Agent.SocketPath);
        await rig.CreateEntryAsync("spiffe://example.org/default-socket", ["unix:uid:0"]);
        await WaitForSvidAsync(rig);
        // nobody reaches the agent (and is refused an identity), rather than failing to connect.
        Assert.Equal("PERMISSION_DENIED", WorkloadTools.StatusName(await WorkloadTools.NodeClientAsync("nobody", "x509", rig.Agent.SocketPath)));
        // ... but cannot list the data dir or read the agent's key.
        var list = await Proc.RunAsync("runuser", ["-u", "nobody", "--", "ls", rig.Agent.DataDir], workingDir: "/");
        Assert.NotEqual(0, list.ExitCode);
        var key = await Proc.RunAsync("runuser", ["-u", "nobody", "--", "cat", Path.Combine(rig.Agent.DataDir, "agent-svid.key")], workingDir: "/");
        Assert.NotEqual(0, key.ExitCode);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(rig.Agent.DataDir, "agent-svid.key")));
    }

    [Fact]
    public async Task Calls_without_the_security_header_are_refused_with_InvalidArgument()
    {
        await using var rig = await AgentRig.StartAsync();
        await rig.CreateEntryAsync("spiffe://example.org/any-root", ["unix:uid:0"]);
        await WaitForSvidAsync(rig);

        var r = await WorkloadTools.NodeClientAsync(null, "noheader", rig.Agent.SocketPath);
        Assert.True(r.ExitCode == 0, r.ToString());
        using var doc = WorkloadTools.Json(r);
        foreach (var call in new[] { "x509", "x509_bundles", "jwt", "jwt_bundles", "validate" })
        {
            var e = doc.RootElement.GetProperty(call);
            Assert.True(e.ValueKind == JsonValueKind.Object, $"{call} answered without the header: {r.Stdout}");
            Assert.Equal("INVALID_ARGUMENT", e.GetProperty("name").GetString());
            Assert.Contains("workload.spiffe.io", e.GetProperty("details").GetString(), StringComparison.Ordinal);
        }

        // The same from .NET, header set to something other than "true".
        using var client = rig.Client();
        var wrong = new Metadata { { "workload.spiffe.io", "yes" } };
        var ex = await Assert.ThrowsAsync<RpcException>(async () => await client.Client.FetchJWTSVIDAsync(new JWTSVIDRequest { Audience = { "a" } }, wrong));
        Assert.Equal(StatusCode.InvalidArgument, ex.StatusCode);
    }

    [Fact]
    public async Task Node_grpc_js_client_fetches_and_validates_everything_and_openssl_verifies_the_chain()
    {
        await using var rig = await AgentRig.StartAsync();
        await rig.CreateEntryAsync("spiffe://example.org/interop/root", ["unix:uid:0"]);
        await WaitForSvidAsync(rig);
        var outDir = rig["node-out"];

        var r = await WorkloadTools.NodeClientAsync(null, "all", rig.Agent.SocketPath, "https://api.example.org", outDir);
        Assert.True(r.ExitCode == 0, r.ToString());
        using var doc = WorkloadTools.Json(r);
        var s = doc.RootElement;
        const string id = "spiffe://example.org/interop/root";
        Assert.Equal([id], s.GetProperty("x509_svids").EnumerateArray().Select(e => e.GetString()).ToList());
        Assert.Equal($"URI:{id}", s.GetProperty("x509_leaf_uri").GetString());
        Assert.Equal(["spiffe://example.org"], s.GetProperty("x509_bundle_trust_domains").EnumerateArray().Select(e => e.GetString()).ToList());
        Assert.Equal(["spiffe://example.org"], s.GetProperty("jwt_bundle_trust_domains").EnumerateArray().Select(e => e.GetString()).ToList());
        Assert.True(s.GetProperty("jwks_key_count").GetInt32() >= 1);
        Assert.Equal(id, s.GetProperty("jwt_svid_spiffe_id").GetString());
        Assert.Equal(id, s.GetProperty("validate_spiffe_id").GetString());
        Assert.Contains(id, s.GetProperty("validate_claims_sub").GetString(), StringComparison.Ordinal);
        Assert.Equal("INVALID_ARGUMENT", s.GetProperty("validate_wrong_audience").GetString());
        Assert.Equal(id, s.GetProperty("jose_sub").GetString());
        Assert.Equal("ES256", s.GetProperty("jose_alg").GetString());
        Assert.False(string.IsNullOrEmpty(s.GetProperty("jose_kid").GetString()));
        Assert.Equal("ERR_JWT_CLAIM_VALIDATION_FAILED", s.GetProperty("jose_wrong_audience").GetString());

        // openssl accepts the chain the node client got against the bundle it got from FetchX509Bundles, and the
        // bundle inside the X509SVIDResponse is the same.
        await AssertOpensslVerifiesAsync(Path.Combine(outDir, "bundle.pem"), Path.Combine(outDir, "svid.pem"));
        Assert.Equal(await File.ReadAllTextAsync(Path.Combine(outDir, "bundle.pem")), await File.ReadAllTextAsync(Path.Combine(outDir, "svid-bundle.pem")));
        // ... and the key belongs to the certificate (the node client also checked this with node:crypto).
        await AssertKeyMatchesAsync(Path.Combine(outDir, "svid.pem"), Path.Combine(outDir, "svid.key"));

        // The check can fail: the same chain against an unrelated CA is refused.
        var otherCa = rig["other-ca.pem"];
        var made = await Proc.RunAsync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", rig["other-ca.key"], "-out", otherCa, "-subj", "/CN=not-writ", "-days", "1"]);
        Assert.True(made.ExitCode == 0, made.ToString());
        var refused = await Proc.RunAsync("openssl", ["verify", "-CAfile", otherCa, Path.Combine(outDir, "svid.pem")]);
        Assert.NotEqual(0, refused.ExitCode);
    }

    [Fact]
    public async Task Svid_fetch_write_produces_files_openssl_accepts_with_a_private_key_file()
    {
        await using var rig = await AgentRig.StartAsync();
        await rig.CreateEntryAsync("spiffe://example.org/written", ["unix:uid:0"]);
        await WaitForSvidAsync(rig);
        var dir = rig["written"];
        var r = await rig.WorkloadAsync("svid", "fetch", "--write", dir);
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Contains("spiffe://example.org/written", r.Stdout, StringComparison.Ordinal);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(dir, "svid.key")));
        Assert.DoesNotContain(Directory.GetFiles(dir), f => f.EndsWith(".tmp", StringComparison.Ordinal));   // atomic: no leftovers
        await AssertOpensslVerifiesAsync(Path.Combine(dir, "bundle.pem"), Path.Combine(dir, "svid.pem"));
        await AssertKeyMatchesAsync(Path.Combine(dir, "svid.pem"), Path.Combine(dir, "svid.key"));
        var chain = new X509Certificate2Collection();
        chain.ImportFromPemFile(Path.Combine(dir, "svid.pem"));
        Assert.Contains("URI:spiffe://example.org/written", (await Proc.RunAsync("openssl", ["x509", "-noout", "-ext", "subjectAltName", "-in", Path.Combine(dir, "svid.pem")])).Stdout, StringComparison.Ordinal);
        Assert.False(chain[0].Extensions.OfType<X509BasicConstraintsExtension>().Single().CertificateAuthority);

        // The bundle the agent serves is the server's.
        var bundle = await rig.WorkloadAsync("bundle", "fetch");
        Assert.True(bundle.ExitCode == 0, bundle.ToString());
        var serverBundle = await rig.Server.WritAsync("bundle", "show", "--format", "pem");
        Assert.Equal(Certs(serverBundle.Stdout), Certs(bundle.Stdout));

        // SPIFFE_ENDPOINT_SOCKET is honoured (no --socket).
        var viaEnv = await Proc.WritAsync(new Dictionary<string, string?> { ["SPIFFE_ENDPOINT_SOCKET"] = "unix://" + rig.Agent.SocketPath }, "svid", "fetch");
        Assert.True(viaEnv.ExitCode == 0, viaEnv.ToString());
        Assert.Contains("spiffe://example.org/written", viaEnv.Stdout, StringComparison.Ordinal);

        // A JWT-SVID through the CLI validates through the CLI while the instance it was issued to (the fetching
        // process, held open) runs, and not for another audience; once that process exits it is revoked.
        await using var holder = await HeldWorkload.JwtAsync(rig, "--audience", "https://db.example.org");
        var token = holder.Output;
        var valid = await rig.WorkloadAsync("jwt", "validate", "--audience", "https://db.example.org", "--token", token);
        Assert.True(valid.ExitCode == 0, valid.ToString());
        Assert.Contains("spiffe://example.org/written", valid.Stdout, StringComparison.Ordinal);
        Expect.OneLineError(await rig.WorkloadAsync("jwt", "validate", "--audience", "https://evil.example.org", "--token", token), "audience");
        await holder.ReleaseAsync();
        await HeldWorkload.WaitUntilRevokedAsync(rig, "https://db.example.org", token, TimeSpan.FromSeconds(15));
    }

    [Fact]
    public async Task Bad_input_gets_one_line_errors()
    {
        await using var rig = await AgentRig.StartAsync();
        await rig.CreateEntryAsync("spiffe://example.org/bad-input", ["unix:uid:0"]);
        await WaitForSvidAsync(rig);

        Expect.OneLineError(await rig.WorkloadAsync("jwt", "fetch", "--audience", ""), "audience");
        Expect.OneLineError(await rig.WorkloadAsync("jwt", "fetch", "--audience", "a", "--spiffe-id", "not-an-id"), "spiffe_id");
        Expect.OneLineError(await rig.WorkloadAsync("jwt", "fetch", "--audience", "a", "--spiffe-id", "spiffe://example.org/someone-else"), "someone-else");

        var missing = rig["nowhere/agent.sock"];
        var noAgent = await Proc.WritAsync("svid", "fetch", "--socket", missing);
        Expect.OneLineError(noAgent, missing);
        var noAgentEnv = await Proc.WritAsync(new Dictionary<string, string?> { ["SPIFFE_ENDPOINT_SOCKET"] = "unix://" + missing }, "svid", "fetch");
        Expect.OneLineError(noAgentEnv, missing);
        Expect.OneLineError(await Proc.WritAsync("svid", "fetch", "--socket", "tcp:127.0.0.1:1"), "unix");

        // A socket file nobody listens on (a dead agent's leftover) is still named.
        var stale = rig["stale.sock"];
        using (var s = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified))
        {
            s.Bind(new System.Net.Sockets.UnixDomainSocketEndPoint(stale));
        }
        Expect.OneLineError(await Proc.WritAsync("svid", "fetch", "--socket", stale), stale);

        var noServer = await Proc.WritAsync("agent", "run", "--trust-bundle", rig.BundlePem, "--data-dir", rig["a2"]);
        Expect.OneLineError(noServer, "--server");
        Assert.Equal(2, noServer.ExitCode);
        var noBundle = await Proc.WritAsync("agent", "run", "--server", rig.Server.AgentApi, "--trust-bundle", rig["missing.pem"], "--data-dir", rig["a3"], "--join-token", "x");
        Expect.OneLineError(noBundle, rig["missing.pem"]);
        Assert.Equal(2, noBundle.ExitCode);
        var badServer = await Proc.WritAsync("agent", "run", "--server", "not a host", "--trust-bundle", rig.BundlePem, "--data-dir", rig["a4"]);
        Expect.OneLineError(badServer, "HOST:PORT");
        Assert.Equal(2, badServer.ExitCode);
        var noToken = await Proc.WritAsync("agent", "run", "--server", rig.Server.AgentApi, "--trust-bundle", rig.BundlePem, "--data-dir", rig["a5"], "--socket", rig["a5.sock"]);
        Expect.OneLineError(noToken, "--join-token");
        var badToken = await Proc.WritAsync("agent", "run", "--server", rig.Server.AgentApi, "--trust-bundle", rig.BundlePem, "--data-dir", rig["a6"], "--socket", rig["a6.sock"], "--join-token", "forged");
        Expect.OneLineError(badToken, "join token");
        // A bundle from another CA: the server cannot be authenticated, and the message says so in plain words.
        var made = await Proc.RunAsync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", rig["wrong-ca.key"], "-out", rig["wrong-ca.pem"], "-subj", "/CN=impostor", "-days", "1",
            "-addext", "subjectAltName=URI:spiffe://example.org", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign"]);
        Assert.True(made.ExitCode == 0, made.ToString());
        var wrongCa = await Proc.WritAsync("agent", "run", "--server", rig.Server.AgentApi, "--trust-bundle", rig["wrong-ca.pem"], "--data-dir", rig["a8"],
            "--socket", rig["a8.sock"], "--join-token", await TestAgent.NewJoinTokenAsync(rig.Server));
        Expect.OneLineError(wrongCa, "trust bundle");
        var nobodyThere = await Proc.WritAsync("agent", "run", "--server", "127.0.0.1:1", "--trust-bundle", rig.BundlePem, "--data-dir", rig["a9"],
            "--socket", rig["a9.sock"], "--join-token", "x");
        Expect.OneLineError(nobodyThere, "127.0.0.1:1");

        // Two agents on one socket: the second refuses instead of stealing it.
        var twice = await Proc.WritAsync("agent", "run", "--server", rig.Server.AgentApi, "--trust-bundle", rig.BundlePem, "--data-dir", rig["a7"],
            "--socket", rig.Agent.SocketPath, "--join-token", await TestAgent.NewJoinTokenAsync(rig.Server));
        Expect.OneLineError(twice, rig.Agent.SocketPath);
        Assert.Equal(0, (await rig.WorkloadAsync("svid", "fetch")).ExitCode);   // the first agent still serves
    }

    [Fact]
    public async Task Grpc_reflection_lists_the_workload_api()
    {
        await using var rig = await AgentRig.StartAsync();
        using var channel = WorkloadTools.UnixChannel(rig.Agent.SocketPath);
        var reflection = new Grpc.Reflection.V1Alpha.ServerReflection.ServerReflectionClient(channel);
        using var call = reflection.ServerReflectionInfo();
        await call.RequestStream.WriteAsync(new Grpc.Reflection.V1Alpha.ServerReflectionRequest { ListServices = "" });
        await call.RequestStream.CompleteAsync();
        Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None));
        var services = call.ResponseStream.Current.ListServicesResponse.Service.Select(s => s.Name).ToList();
        Assert.Contains("SpiffeWorkloadAPI", services);

        // The descriptor is the spec's: no package, the five methods.
        using var call2 = reflection.ServerReflectionInfo();
        await call2.RequestStream.WriteAsync(new Grpc.Reflection.V1Alpha.ServerReflectionRequest { FileContainingSymbol = "SpiffeWorkloadAPI" });
        await call2.RequestStream.CompleteAsync();
        Assert.True(await call2.ResponseStream.MoveNext(CancellationToken.None));
        var files = call2.ResponseStream.Current.FileDescriptorResponse.FileDescriptorProto
            .Select(b => Google.Protobuf.Reflection.FileDescriptorProto.Parser.ParseFrom(b)).ToList();
        var service = files.SelectMany(f => f.Service.Select(s => (f.Package, s))).Single(x => x.s.Name == "SpiffeWorkloadAPI");
        Assert.Equal("", service.Package);
        var specMethods = System.Text.RegularExpressions.Regex.Matches(
                await File.ReadAllTextAsync(WorkloadTools.SpecProto), @"^\s*rpc\s+(\w+)", System.Text.RegularExpressions.RegexOptions.Multiline)
            .Select(m => m.Groups[1].Value).Order(StringComparer.Ordinal).ToList();
        Assert.Contains("FetchX509SVID", specMethods);
        Assert.Equal(specMethods, service.s.Method.Select(m => m.Name).Order(StringComparer.Ordinal).ToList());
    }

    internal static async Task WaitForSvidAsync(AgentRig rig)
    {
        using var client = rig.Client();
        await WorkloadTools.EventuallyAsync(() => client.FetchX509Async(CancellationToken.None), SyncDeadline, "the agent serving the new entry");
    }

    internal static async Task AssertOpensslVerifiesAsync(string bundle, string chain)
    {
        var verify = await Proc.RunAsync("openssl", ["verify", "-CAfile", bundle, chain]);
        Assert.True(verify.ExitCode == 0, verify.ToString());
        Assert.Contains(": OK", verify.Stdout, StringComparison.Ordinal);
    }

    internal static async Task AssertKeyMatchesAsync(string cert, string key)
    {
        var certKey = await Proc.RunAsync("openssl", ["x509", "-noout", "-pubkey", "-in", cert]);
        var keyPub = await Proc.RunAsync("openssl", ["pkey", "-pubout", "-in", key]);
        Assert.True(certKey.ExitCode == 0 && keyPub.ExitCode == 0, certKey + "\n" + keyPub);
        Assert.Equal(certKey.Stdout, keyPub.Stdout);
    }

    private static List<string> Certs(string pem)
    {
        var c = new X509Certificate2Collection();
        c.ImportFromPem(pem);
        return [.. c.Select(x => x.Thumbprint).Order(StringComparer.Ordinal)];
    }
}
