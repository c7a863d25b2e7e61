using System.Net;
using Writ.Protocol.RelyingParty;
using Writ.Workload.AspNetCore;
using static Writ.Workload.Tests.AspNetCore.X509SvidAuthenticationTests;

namespace Writ.Workload.Tests.AspNetCore;

/// <summary>
/// <c>RequireWritCall()</c>: each request is decided by the local agent's relying-party API (here a real gRPC server on a
/// real Unix socket that answers as the test says). Allowed → the endpoint runs; denied → 403 with the agent's reason and
/// decision id; agent unreachable → 503 (fail closed).
/// </summary>
public sealed class CallAuthorizationTests : IAsyncLifetime
{
    private const string Audience = "spiffe://example.test/service/quotes";
    private readonly TestTrustDomain _td = new("example.test");
    private readonly string _dir = Directory.CreateTempSubdirectory("writ-rp-").FullName;
    private FakeRelyingPartyAgent _agent = null!;
    private RelyingPartyHost _host = null!;

    public async ValueTask InitializeAsync()
    {
        _agent = await FakeRelyingPartyAgent.StartAsync(Path.Combine(_dir, "agent.sock"));
        _host = await StartHostAsync(_agent.Endpoint);
    }

    private Task<RelyingPartyHost> StartHostAsync(string endpoint) =>
        RelyingPartyHost.StartAsync(_td.Svid("/service/quotes"), auth => auth
            .AddWritX509Svid(o =>
            {
                o.Bundles = new MutableBundles(_td.Bundle);
                o.Revocations = new MutableRevocations();
                o.Authorizer = Authorize.Any();
            })
            .AddWritJwtSvid(o =>
            {
                o.Audience = Audience;
                o.Bundles = new MutableBundles(_td.Bundle);
                o.Revocations = new MutableRevocations();
                o.Authorizer = Authorize.Any();
            }),
            services => services.AddWritCallAuthorization(o =>
            {
                o.Endpoint = endpoint;
                o.Resource = Audience;
            }));

    public async ValueTask DisposeAsync()
    {
        await _host.DisposeAsync();
        await _agent.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
    }

    [Fact]
    public async Task An_allowed_call_runs_and_the_agent_was_asked_with_the_callers_certificate_method_path_and_headers()
    {
        using var cert = _td.Svid("/sample/greeter");
        using var client = _host.Client(cert);
        using var request = new HttpRequestMessage(HttpMethod.Get, "/call?q=1");
        request.Headers.Add("X-Tenant", "blue");
        request.Headers.Add("Cookie", "session=secret");
        using var response = await client.SendAsync(request, TestContext.Current.CancellationToken);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("c-00000000000000000001", response.Headers.GetValues("Writ-Decision-Id").Single());

        var (asked, security) = Assert.Single(_agent.Agent.Asked);
        Assert.Equal("true", security);
        Assert.Equal(cert.RawData, asked.PeerCertificateDer.ToByteArray());
        Assert.Equal("", asked.JwtSvid);
        Assert.Equal("GET", asked.Method);
        Assert.Equal("/call?q=1", asked.Path);
        Assert.Equal(Audience, asked.ResourceSpiffeId);
        Assert.StartsWith("127.0.0.1:", asked.Host, StringComparison.Ordinal);
        Assert.Equal("blue", asked.Headers["x-tenant"]);
        Assert.False(asked.Headers.ContainsKey("cookie"));
    }

    [Fact]
    public async Task A_JWT_caller_is_sent_as_its_token_not_as_a_header()
    {
        var token = _td.Jwt("/sample/greeter", Audience);
        var (status, _, _) = await GetAsync(_host.Client(), "/call", token);
        Assert.Equal(HttpStatusCode.OK, status);
        var (asked, _) = Assert.Single(_agent.Agent.Asked);
        Assert.Equal(token, asked.JwtSvid);
        Assert.True(asked.PeerCertificateDer.IsEmpty);
        Assert.False(asked.Headers.ContainsKey("authorization"));
    }

    [Fact]
    public async Task A_denied_call_is_403_with_the_agents_reason_and_decision_id_and_the_endpoint_does_not_run()
    {
        _agent.Agent.Decide = _ => new AuthorizeResponse
        {
            Allowed = false,
            DecisionId = "c-0123456789abcdef0123",
            Reason = "no call policy permits spiffe://example.test/sample/greeter to call GET /call\nsecond line",
            Code = "WRIT-AUTHZ-DENIED",
            CallerSpiffeId = "spiffe://example.test/sample/greeter",
        };
        using var cert = _td.Svid("/sample/greeter");
        using var client = _host.Client(cert);
        using var response = await client.GetAsync("/call", TestContext.Current.CancellationToken);
        var body = await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken);
        Assert.Equal(HttpStatusCode.Forbidden, response.StatusCode);
        Assert.Equal("c-0123456789abcdef0123", response.Headers.GetValues("Writ-Decision-Id").Single());
        Assert.Equal(WritAuthCodes.CallDenied, response.Headers.GetValues("Writ-Error-Code").Single());
        Assert.Equal($"{WritAuthCodes.CallDenied}: no call policy permits spiffe://example.test/sample/greeter to call GET /call (decision c-0123456789abcdef0123, WRIT-AUTHZ-DENIED)\n", body);
        Assert.DoesNotContain("|", body, StringComparison.Ordinal);   // the endpoint's answer was not written
    }

    [Fact]
    public async Task When_the_agent_cannot_be_reached_the_call_is_refused_with_503()
    {
        await using var orphan = await StartHostAsync("unix://" + Path.Combine(_dir, "no-agent-here.sock"));
        using var cert = _td.Svid("/sample/greeter");
        var (status, body, code) = await GetAsync(orphan.Client(cert), "/call");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, status);
        Assert.Equal(WritAuthCodes.AgentUnavailable, code);
        Assert.StartsWith(WritAuthCodes.AgentUnavailable + ": ", body);
        Assert.DoesNotContain("no-agent-here", body, StringComparison.Ordinal);   // socket paths stay in the log
    }

    [Fact]
    public async Task A_caller_without_any_credential_is_challenged_and_the_agent_is_not_asked()
    {
        var (status, _, _) = await GetAsync(_host.Client(), "/call");
        Assert.Equal(HttpStatusCode.Unauthorized, status);
        Assert.Empty(_agent.Agent.Asked);
    }
}
