using System.Net;
using Writ.Workload.AspNetCore;
using static Writ.Workload.Tests.AspNetCore.X509SvidAuthenticationTests;

namespace Writ.Workload.Tests.AspNetCore;

/// <summary>
/// Attacks on <c>RequireWritCall()</c>: the call requirement must only ever forward a credential that the app's own
/// Writ schemes accepted. The agent re-checks signature, audience and revocation, but NOT the SDK-only checks (cnf binding
/// to the connection's certificate, the replay cache, the scheme's authorizer, AllowBearerTokens=false), so forwarding a
/// token the scheme refused lets a thief with a stolen bound token in.
/// </summary>
public sealed class CallAuthorizationAttackTests : IAsyncLifetime
{
    private const string Audience = "spiffe://example.test/service/quotes";
    private readonly TestTrustDomain _td = new("example.test");
    private readonly string _dir = Directory.CreateTempSubdirectory("writ-rp-atk-").FullName;
    private FakeRelyingPartyAgent _agent = null!;
    private RelyingPartyHost _host = null!;

    public async ValueTask InitializeAsync()
    {
        _agent = await FakeRelyingPartyAgent.StartAsync(Path.Combine(_dir, "agent.sock"));
        _host = await RelyingPartyHost.StartAsync(_td.Svid("/service/quotes"), auth => auth
            .AddWritX509Svid(o =>
            {
                o.Bundles = new MutableBundles(_td.Bundle);
                o.Revocations = new MutableRevocations();
                o.Authorizer = Authorize.Id("spiffe://example.test/sample/greeter");
            })
            .AddWritJwtSvid(o =>
            {
                o.Audience = Audience;
                o.Bundles = new MutableBundles(_td.Bundle);
                o.Revocations = new MutableRevocations();
                o.Authorizer = Authorize.Id("spiffe://example.test/sample/greeter");
                o.AllowBearerTokens = false;
            }),
            services => services.AddWritCallAuthorization(o =>
            {
                o.Endpoint = _agent.Endpoint;
                o.Resource = Audience;
            }));
    }

    public async ValueTask DisposeAsync()
    {
        await _host.DisposeAsync();
        await _agent.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
    }

    [Fact]
    public async Task A_stolen_bound_token_presented_without_its_certificate_is_refused_and_not_forwarded_to_the_agent()
    {
        using var victim = _td.Svid("/sample/greeter");
        var stolen = _td.Jwt("/sample/greeter", Audience, boundTo: victim);
        // The thief has the token, not the victim's key: no client certificate.
        var (status, body, _) = await GetAsync(_host.Client(), "/call", stolen);
        Assert.NotEqual(HttpStatusCode.OK, status);
        Assert.DoesNotContain("spiffe://example.test/sample/greeter|", body, StringComparison.Ordinal);
        Assert.Empty(_agent.Agent.Asked);
    }

    [Fact]
    public async Task A_bearer_token_on_a_service_that_accepts_only_bound_tokens_is_not_forwarded_to_the_agent()
    {
        var bearer = _td.Jwt("/sample/greeter", Audience);
        var (status, _, _) = await GetAsync(_host.Client(), "/call", bearer);
        Assert.NotEqual(HttpStatusCode.OK, status);
        Assert.Empty(_agent.Agent.Asked);
    }

    [Fact]
    public async Task A_token_whose_caller_the_schemes_authorizer_refuses_is_not_forwarded_to_the_agent()
    {
        using var other = _td.Svid("/sample/other");
        var token = _td.Jwt("/sample/other", Audience, boundTo: other);
        var (status, _, _) = await GetAsync(_host.Client(other), "/call", token);
        Assert.NotEqual(HttpStatusCode.OK, status);
        Assert.Empty(_agent.Agent.Asked);
    }

    [Fact]
    public async Task A_certificate_the_x509_scheme_refused_is_not_forwarded_to_the_agent()
    {
        // A self-signed certificate with this trust domain's ID: the X.509 scheme refuses it (it does not chain to the bundle).
        var forger = new TestTrustDomain("example.test");
        using var forged = forger.Svid("/sample/greeter");
        var (status, _, _) = await GetAsync(_host.Client(forged), "/call");
        Assert.NotEqual(HttpStatusCode.OK, status);
        Assert.Empty(_agent.Agent.Asked);
    }
    [Fact]
    public async Task A_caller_cannot_hide_a_header_from_the_call_policy_by_sending_64_junk_headers_first()
    {
        using var cert = _td.Svid("/sample/greeter");
        using var client = _host.Client(cert);
        using var request = new HttpRequestMessage(HttpMethod.Get, "/call");
        for (var i = 0; i < 64; i++)
        {
            request.Headers.Add($"X-Pad-{i:D2}", "x");
        }
        request.Headers.Add("X-Tenant", "red");   // a header a forbid policy looks at
        using var response = await client.SendAsync(request, TestContext.Current.CancellationToken);
        var (asked, _) = Assert.Single(_agent.Agent.Asked);
        // Either the agent sees the header, or the request is refused: never asked with the header silently dropped.
        Assert.True(asked.Headers.ContainsKey("x-tenant") || response.StatusCode != HttpStatusCode.OK,
            $"the agent was asked without x-tenant ({asked.Headers.Count} headers) and the call was allowed");
    }
}
