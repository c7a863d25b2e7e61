using Envoy.Service.Auth.V3;
using Grpc.Core;
using Writ.IntegrationTests.Harness;

namespace Writ.IntegrationTests.RelyingParties;

/// <summary>
/// The agent's Envoy ext_authz service, as Envoy would call it (a client generated from Envoy's own protos, over the
/// authz Unix socket), deciding for a real workload process with the call policy pushed with `writ policy push`.
/// </summary>
public sealed class ExtAuthzTests
{
    private const string Api = "spiffe://example.org/api";
    private const string Web = "spiffe://example.org/web";

    private static async Task<AgentRig> StartAsync(string authzSocket) => await StartBoundAsync("unix:" + authzSocket);

    private static async Task<AgentRig> StartBoundAsync(string bind)
    {
        var rig = await AgentRig.StartAsync(agentArgs: ["--authz-bind", bind]);
        try
        {
            await rig.CreateEntryAsync(Web, ["unix:uid:0"]);
            // The default policy set (issuance still works), plus who may call whom.
            var shown = await rig.Server.WritAsync("policy", "show");
            Assert.True(shown.ExitCode == 0, shown.ToString());
            var file = rig["call-policy.cedar"];
            await File.WriteAllTextAsync(file, shown.Stdout + """

                @id("web-calls-api")
                permit(principal, action == Writ::Action::"call", resource)
                  when { principal.trust_domain == "example.org" && resource.spiffe_id == "spiffe://example.org/api" };
                """);
            var pushed = await rig.Server.WritAsync("policy", "push", "--file", file);
            Assert.True(pushed.ExitCode == 0, pushed.ToString());
            return rig;
        }
        catch
        {
            await rig.DisposeAsync();
            throw;
        }
    }

    private static CheckRequest JwtCheck(string token, string path = "/v1/items")
    {
        var check = new CheckRequest
        {
            Attributes = new AttributeContext
            {
                Request = new AttributeContext.Types.Request
                {
                    Http = new AttributeContext.Types.HttpRequest { Method = "GET", Path = path, Host = "api.internal" },
                },
            },
        };
        check.Attributes.Request.Http.Headers["authorization"] = "Bearer " + token;
        check.Attributes.ContextExtensions["writ_resource"] = Api;
        return check;
    }

    /// <summary>What Envoy sends for an mTLS caller with include_peer_certificate: the URL-encoded PEM of its leaf.</summary>
    private static CheckRequest CertificateCheck(string leafPem, string resource = Api)
    {
        var check = new CheckRequest
        {
            Attributes = new AttributeContext
            {
                Source = new AttributeContext.Types.Peer { Certificate = Uri.EscapeDataString(leafPem) },
                Request = new AttributeContext.Types.Request
                {
                    Http = new AttributeContext.Types.HttpRequest { Method = "GET", Path = "/v1/items", Host = "api.internal" },
                },
            },
        };
        check.Attributes.ContextExtensions["writ_resource"] = resource;
        return check;
    }

    /// <summary>The leaf (first PEM block) and the bound JWT-SVID of a workload held by the Node client (software nobody here wrote).</summary>
    private static (string LeafPem, string Token) Credentials(HeldWorkload caller, string outDir)
    {
        var pem = File.ReadAllText(Path.Combine(outDir, "svid.pem"));
        var end = pem.IndexOf("-----END CERTIFICATE-----", StringComparison.Ordinal) + "-----END CERTIFICATE-----".Length;
        using var json = System.Text.Json.JsonDocument.Parse(caller.Output);
        Assert.True(json.RootElement.GetProperty("ok").GetBoolean(), caller.Output);
        return (pem[..end] + "\n", json.RootElement.GetProperty("token").GetString()!);
    }

    [Fact]
    public async Task A_caller_whose_process_is_gone_is_refused_on_its_next_request()
    {
        using var dir = new TempDir();
        var authz = dir["authz.sock"];
        await using var rig = await StartAsync(authz);
        Assert.Equal((UnixFileMode)0b110_110_000, File.GetUnixFileMode(authz));
        using var channel = WorkloadTools.UnixChannel(authz);
        var client = new Authorization.AuthorizationClient(channel);

        var outDir = dir["caller"];
        await using var caller = await HeldWorkload.NodeFetchAsync(rig, Api, outDir);
        var (leaf, token) = Credentials(caller, outDir);
        // Allowed once the pushed call policy reached the agent (sync), with the decision headers Envoy forwards.
        var ok = await WorkloadTools.EventuallyAsync(async () =>
        {
            var r = await client.CheckAsync(CertificateCheck(leaf), cancellationToken: TestContext.Current.CancellationToken);
            return r.Status.Code == 0 ? r : throw new InvalidOperationException(r.DeniedResponse?.Body ?? r.Status.Message);
        }, TimeSpan.FromSeconds(30), "the call to be allowed");
        Assert.Contains(ok.OkResponse.Headers, h => h.Header.Key == "x-writ-caller" && h.Header.Value == Web);
        Assert.Contains(ok.OkResponse.Headers, h => h.Header.Key == "x-writ-decision-id" && h.Header.Value.StartsWith("c-", StringComparison.Ordinal));

        // Not permitted by policy: a 403 with one line and the decision id.
        var denied = await client.CheckAsync(CertificateCheck(leaf, "spiffe://example.org/db"), cancellationToken: TestContext.Current.CancellationToken);
        Assert.Equal(7, denied.Status.Code);
        Assert.Matches(@"^WRIT-AUTHZ-DENIED: .* \(decision c-[0-9a-f]{20}\)\n$", denied.DeniedResponse.Body);

        // The caller's certificate-bound JWT-SVID without its certificate: a stolen copy looks just like this.
        var bare = await client.CheckAsync(JwtCheck(token), cancellationToken: TestContext.Current.CancellationToken);
        Assert.Equal(7, bare.Status.Code);
        Assert.StartsWith("WRIT-AUTHZ-JWT-NEEDS-CERTIFICATE: ", bare.DeniedResponse.Body, StringComparison.Ordinal);

        // The caller's process ends mid-session: its very next request is refused (the agent learns of the exit from
        // its pidfd; the server's revocation follows). Waited for with a deadline, never a sleep.
        await caller.ReleaseAsync();
        var refused = await WorkloadTools.EventuallyAsync(async () =>
        {
            var r = await client.CheckAsync(CertificateCheck(leaf), cancellationToken: TestContext.Current.CancellationToken);
            return r.Status.Code == 7 ? r : throw new InvalidOperationException("still allowed");
        }, TimeSpan.FromSeconds(15), "the gone caller to be refused");
        Assert.Matches(@"^WRIT-AUTHZ-(INSTANCE-GONE|REVOKED): .* \(decision c-[0-9a-f]{20}\)\n$", refused.DeniedResponse.Body);
        Assert.Equal(Envoy.Type.V3.StatusCode.Forbidden, refused.DeniedResponse.Status.Code);

        // The denial is in the server's ledger under its decision id (reported in the background by the agent).
        var decisionId = System.Text.RegularExpressions.Regex.Match(refused.DeniedResponse.Body, @"decision (c-[0-9a-f]{20})").Groups[1].Value;
        await WorkloadTools.EventuallyAsync(async () =>
        {
            var r = await rig.Server.WritAsync("audit", "list", "--kind", "access.", "--limit", "5000", "--output", "json");
            Assert.True(r.ExitCode == 0, r.ToString());
            return r.Stdout.Contains(decisionId, StringComparison.Ordinal) ? r : throw new InvalidOperationException("not in the ledger yet");
        }, TimeSpan.FromSeconds(30), "the denial to reach the ledger");
    }

    [Fact]
    public async Task Ext_authz_is_not_reachable_on_the_Workload_API_socket_under_another_letter_case()
    {
        // Attacker: a local workload calls ext_authz on the Workload API socket with the service name in other letter case.
        // The listener separation compares the path ordinally; ASP.NET's routing matches it case-insensitively.
        using var dir = new TempDir();
        await using var rig = await StartAsync(dir["authz.sock"]);
        using var workloadChannel = WorkloadTools.UnixChannel(rig.Agent.SocketPath);
        var marshaller = Marshallers.Create<CheckRequest>(m => Google.Protobuf.MessageExtensions.ToByteArray(m), CheckRequest.Parser.ParseFrom);
        var responses = Marshallers.Create<CheckResponse>(m => Google.Protobuf.MessageExtensions.ToByteArray(m), CheckResponse.Parser.ParseFrom);
        var method = new Method<CheckRequest, CheckResponse>(MethodType.Unary, "Envoy.Service.Auth.V3.Authorization", "Check", marshaller, responses);
        var e = await Assert.ThrowsAsync<RpcException>(() => workloadChannel.CreateCallInvoker().AsyncUnaryCall(method, null,
            new CallOptions(cancellationToken: TestContext.Current.CancellationToken), new CheckRequest()).ResponseAsync);
        Assert.Equal(StatusCode.Unimplemented, e.StatusCode);
    }

    [Fact]
    public async Task Each_socket_serves_only_its_own_service()
    {
        using var dir = new TempDir();
        var authz = dir["authz.sock"];
        await using var rig = await StartAsync(authz);

        // ext_authz is not reachable on the Workload API socket …
        using (var workloadChannel = WorkloadTools.UnixChannel(rig.Agent.SocketPath))
        {
            var onWorkload = new Authorization.AuthorizationClient(workloadChannel);
            var e = await Assert.ThrowsAsync<RpcException>(() => onWorkload.CheckAsync(new CheckRequest(), cancellationToken: TestContext.Current.CancellationToken).ResponseAsync);
            Assert.Equal(StatusCode.Unimplemented, e.StatusCode);
            Assert.Contains("WRIT-AUTHZ-WRONG-LISTENER", e.Status.Detail, StringComparison.Ordinal);
        }

        // … and neither the Workload API nor the relying-party API is reachable on the ext_authz socket.
        using var authzChannel = WorkloadTools.UnixChannel(authz);
        var headers = new Metadata { { "workload.spiffe.io", "true" } };
        var rp = new Writ.Protocol.RelyingParty.RelyingParty.RelyingPartyClient(authzChannel);
        var e2 = await Assert.ThrowsAsync<RpcException>(() => rp.AuthorizeAsync(new Writ.Protocol.RelyingParty.AuthorizeRequest(), headers,
            cancellationToken: TestContext.Current.CancellationToken).ResponseAsync);
        Assert.Equal(StatusCode.Unimplemented, e2.StatusCode);
        var workload = new SpiffeWorkloadAPI.SpiffeWorkloadAPIClient(authzChannel);
        var e3 = await Assert.ThrowsAsync<RpcException>(() => workload.FetchJWTSVIDAsync(new JWTSVIDRequest { Audience = { Api } }, headers,
            cancellationToken: TestContext.Current.CancellationToken).ResponseAsync);
        Assert.Equal(StatusCode.Unimplemented, e3.StatusCode);

        // The ext_authz service itself answers there, and a request missing everything is a denial, not an error.
        var check = await new Authorization.AuthorizationClient(authzChannel).CheckAsync(new CheckRequest(), cancellationToken: TestContext.Current.CancellationToken);
        Assert.Equal(7, check.Status.Code);
        Assert.StartsWith("WRIT-AUTHZ-", check.DeniedResponse.Body, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_relying_party_API_gives_the_same_decision_and_streams_revocations()
    {
        using var dir = new TempDir();
        await using var rig = await StartAsync(dir["authz.sock"]);
        // The test process is the relying party: uid 0 gives it api (its first identity, the default resource) and web.
        await rig.CreateEntryAsync(Api, ["unix:uid:0"]);
        using var channel = WorkloadTools.UnixChannel(rig.Agent.SocketPath);
        var rp = new Writ.Protocol.RelyingParty.RelyingParty.RelyingPartyClient(channel);
        var headers = new Metadata { { "workload.spiffe.io", "true" } };
        var ct = TestContext.Current.CancellationToken;

        // Without the security header: refused like the Workload API.
        var noHeader = await Assert.ThrowsAsync<RpcException>(() => rp.AuthorizeAsync(new Writ.Protocol.RelyingParty.AuthorizeRequest(), cancellationToken: ct).ResponseAsync);
        Assert.Equal(StatusCode.InvalidArgument, noHeader.StatusCode);

        using var watch = rp.WatchRevocations(new Writ.Protocol.RelyingParty.WatchRevocationsRequest(), headers, cancellationToken: ct);
        Assert.True(await watch.ResponseStream.MoveNext(ct));
        var first = watch.ResponseStream.Current;

        var outDir = dir["caller"];
        await using var caller = await HeldWorkload.NodeFetchAsync(rig, Api, outDir);
        var (leafPem, token) = Credentials(caller, outDir);
        var leafDer = Google.Protobuf.ByteString.CopyFrom(System.Security.Cryptography.X509Certificates.X509Certificate2.CreateFromPem(leafPem).RawData);
        var allowed = await WorkloadTools.EventuallyAsync(async () =>
        {
            var r = await rp.AuthorizeAsync(new Writ.Protocol.RelyingParty.AuthorizeRequest { PeerCertificateDer = leafDer, Method = "GET", Path = "/v1/x" }, headers, cancellationToken: ct);
            return r.Allowed ? r : throw new InvalidOperationException(r.Code + ": " + r.Reason);
        }, TimeSpan.FromSeconds(30), "the relying party's Authorize to allow");
        Assert.StartsWith("spiffe://example.org/", allowed.CallerSpiffeId, StringComparison.Ordinal);
        Assert.StartsWith("c-", allowed.DecisionId, StringComparison.Ordinal);

        // The bound JWT-SVID alone is refused: it needs its certificate.
        var bare = await rp.AuthorizeAsync(new Writ.Protocol.RelyingParty.AuthorizeRequest { JwtSvid = token }, headers, cancellationToken: ct);
        Assert.False(bare.Allowed);
        Assert.Equal("WRIT-AUTHZ-JWT-NEEDS-CERTIFICATE", bare.Code);

        // A relying party asks only about calls to itself.
        var foreign = await Assert.ThrowsAsync<RpcException>(() => rp.AuthorizeAsync(new Writ.Protocol.RelyingParty.AuthorizeRequest
        {
            PeerCertificateDer = leafDer, ResourceSpiffeId = "spiffe://example.org/db",
        }, headers, cancellationToken: ct).ResponseAsync);
        Assert.Equal(StatusCode.PermissionDenied, foreign.StatusCode);

        // The caller exits: refused at once, and its certificate's revocation reaches the watcher.
        await caller.ReleaseAsync();
        var refused = await WorkloadTools.EventuallyAsync(async () =>
        {
            var r = await rp.AuthorizeAsync(new Writ.Protocol.RelyingParty.AuthorizeRequest { PeerCertificateDer = leafDer }, headers, cancellationToken: ct);
            return r.Allowed ? throw new InvalidOperationException("still allowed") : r;
        }, TimeSpan.FromSeconds(15), "the gone caller to be refused");
        Assert.Matches("^WRIT-AUTHZ-(INSTANCE-GONE|REVOKED)$", refused.Code);
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
        deadline.CancelAfter(TimeSpan.FromSeconds(30));
        while (true)
        {
            Assert.True(await watch.ResponseStream.MoveNext(deadline.Token));
            var set = watch.ResponseStream.Current;
            Assert.True(set.Revision > first.Revision);
            if (set.SerialHex.Count > first.SerialHex.Count)
            {
                break;
            }
        }
    }

    [Fact]
    public async Task On_a_loopback_port_ext_authz_answers_with_a_denial_line_and_only_it_is_served()
    {
        int port;
        using (var probe = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0))
        {
            probe.Start();
            port = ((System.Net.IPEndPoint)probe.LocalEndpoint).Port;
        }
        await using var rig = await StartBoundAsync($"127.0.0.1:{port}");
        using var channel = Grpc.Net.Client.GrpcChannel.ForAddress($"http://127.0.0.1:{port}");
        var ct = TestContext.Current.CancellationToken;
        var check = new CheckRequest { Attributes = new AttributeContext() };
        check.Attributes.ContextExtensions["writ_resource"] = Api;
        var r = await new Authorization.AuthorizationClient(channel).CheckAsync(check, cancellationToken: ct);
        Assert.Equal(7, r.Status.Code);
        Assert.Matches(@"^WRIT-AUTHZ-NO-CREDENTIAL: .*include_peer_certificate.* \(decision c-[0-9a-f]{20}\)\n$", r.DeniedResponse.Body);
        var workload = new SpiffeWorkloadAPI.SpiffeWorkloadAPIClient(channel);
        var e = await Assert.ThrowsAsync<RpcException>(() => workload.FetchJWTSVIDAsync(new JWTSVIDRequest { Audience = { Api } },
            new Metadata { { "workload.spiffe.io", "true" } }, cancellationToken: ct).ResponseAsync);
        Assert.Equal(StatusCode.Unimplemented, e.StatusCode);
    }
}
