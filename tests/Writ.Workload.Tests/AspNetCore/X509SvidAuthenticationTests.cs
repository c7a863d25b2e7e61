using System.Net;
using Writ.Workload.AspNetCore;

namespace Writ.Workload.Tests.AspNetCore;

/// <summary>The X.509-SVID scheme on a real Kestrel with real TLS client certificates.</summary>
public sealed class X509SvidAuthenticationTests : IAsyncLifetime
{
    private readonly TestTrustDomain _td = new("example.test");
    private readonly TestTrustDomain _foreign = new("foreign.test");
    private readonly MutableRevocations _revocations = new();
    private RelyingPartyHost _host = null!;

    public async ValueTask InitializeAsync()
    {
        var bundles = new MutableBundles(_td.Bundle);
        _host = await RelyingPartyHost.StartAsync(_td.Svid("/service/quotes"), auth => auth.AddWritX509Svid(o =>
        {
            o.Bundles = bundles;
            o.Revocations = _revocations;
            o.Authorizer = Authorize.MemberOf(_td.TrustDomain);
        }));
    }

    public async ValueTask DisposeAsync() => await _host.DisposeAsync();

    [Fact]
    public async Task A_valid_caller_gets_its_SPIFFE_ID_trust_domain_and_serial_as_claims()
    {
        using var cert = _td.Svid("/sample/greeter");
        using var client = _host.Client(cert);
        using var response = await client.GetAsync("/x509", TestContext.Current.CancellationToken);
        var body = await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal($"spiffe://example.test/sample/greeter|example.test|{cert.SerialNumber}", body);
    }

    [Fact]
    public async Task No_client_certificate_is_401_with_a_one_line_code()
    {
        using var client = _host.Client();
        var (status, body, code) = await GetAsync(client, "/x509");
        Assert.Equal(HttpStatusCode.Unauthorized, status);
        Assert.Equal(WritAuthCodes.NoClientCertificate, code);
        Assert.StartsWith(WritAuthCodes.NoClientCertificate + ": ", body);
    }

    [Fact]
    public async Task A_header_claiming_a_certificate_is_ignored()
    {
        // Only the TLS connection's certificate counts: a header an attacker writes proves nothing.
        using var client = _host.Client();
        using var cert = _td.Svid("/sample/greeter");
        client.DefaultRequestHeaders.Add("X-Client-Cert", Convert.ToBase64String(cert.RawData));
        client.DefaultRequestHeaders.Add("X-Forwarded-Client-Cert", $"URI=spiffe://example.test/sample/greeter");
        var (status, _, code) = await GetAsync(client, "/x509");
        Assert.Equal(HttpStatusCode.Unauthorized, status);
        Assert.Equal(WritAuthCodes.NoClientCertificate, code);
    }

    [Fact]
    public async Task A_caller_of_a_foreign_trust_domain_is_refused()
    {
        using var cert = _foreign.Svid("/sample/greeter");
        var (status, body, code) = await GetAsync(_host.Client(cert), "/x509");
        Assert.Equal(HttpStatusCode.Unauthorized, status);
        Assert.Equal(WritAuthCodes.InvalidX509Svid, code);
        Assert.Contains("no trust bundle for trust domain 'foreign.test'", body, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_certificate_claiming_our_trust_domain_but_signed_by_another_CA_is_refused()
    {
        // The attacker runs a CA for a domain of the same name: the SAN says example.test, the chain does not.
        var impostor = new TestTrustDomain("example.test");
        using var cert = impostor.Svid("/sample/greeter");
        var (status, body, code) = await GetAsync(_host.Client(cert), "/x509");
        Assert.Equal(HttpStatusCode.Unauthorized, status);
        Assert.Equal(WritAuthCodes.InvalidX509Svid, code);
        Assert.Contains("does not verify to the 'example.test' trust bundle", body, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_self_signed_certificate_is_refused()
    {
        using var cert = TestTrustDomain.SelfSigned("spiffe://example.test/sample/greeter");
        var (status, _, code) = await GetAsync(_host.Client(cert), "/x509");
        Assert.Equal(HttpStatusCode.Unauthorized, status);
        Assert.Equal(WritAuthCodes.InvalidX509Svid, code);
    }

    [Fact]
    public async Task An_expired_SVID_is_refused()
    {
        using var cert = _td.Svid("/sample/greeter", DateTimeOffset.UtcNow.AddHours(-3), TimeSpan.FromHours(1));
        var (status, body, code) = await GetAsync(_host.Client(cert), "/x509");
        Assert.Equal(HttpStatusCode.Unauthorized, status);
        Assert.Equal(WritAuthCodes.InvalidX509Svid, code);
        Assert.Contains("expired", body, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_caller_the_authorizer_refuses_is_refused()
    {
        await using var host = await RelyingPartyHost.StartAsync(_td.Svid("/service/quotes"), auth => auth.AddWritX509Svid(o =>
        {
            o.Bundles = new MutableBundles(_td.Bundle);
            o.Revocations = _revocations;
            o.Authorizer = Authorize.Id(_td.Id("/sample/greeter"));
        }));
        using var intruder = _td.Svid("/sample/intruder");
        var (status, body, code) = await GetAsync(host.Client(intruder), "/x509");
        Assert.Equal(HttpStatusCode.Unauthorized, status);
        Assert.Equal(WritAuthCodes.NotAuthorized, code);
        Assert.Contains("spiffe://example.test/sample/intruder", body, StringComparison.Ordinal);
        using var greeter = _td.Svid("/sample/greeter");
        Assert.Equal(HttpStatusCode.OK, (await GetAsync(host.Client(greeter), "/x509")).Status);
    }

    [Fact]
    public async Task A_serial_revoked_mid_connection_is_refused_on_the_very_next_request_of_that_connection()
    {
        using var cert = _td.Svid("/sample/greeter");
        using var client = _host.Client(cert);
        using var first = await client.GetAsync("/x509", TestContext.Current.CancellationToken);
        Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        var connection = first.Headers.GetValues("X-Connection-Id").Single();

        _revocations.RevokeSerial(cert.SerialNumber);

        using var second = await client.GetAsync("/x509", TestContext.Current.CancellationToken);
        Assert.Equal(HttpStatusCode.Unauthorized, second.StatusCode);
        Assert.Equal(connection, second.Headers.GetValues("X-Connection-Id").Single());   // the same TLS connection
        Assert.Equal(WritAuthCodes.Revoked, second.Headers.GetValues("Writ-Error-Code").Single());
        var body = await second.Content.ReadAsStringAsync(TestContext.Current.CancellationToken);
        Assert.Contains(cert.SerialNumber, body, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", body, StringComparison.Ordinal);   // no stack trace
        Assert.Single(body.TrimEnd('\n').Split('\n'));
    }

    [Fact]
    public async Task A_bundle_rotated_away_refuses_callers_of_the_old_CA()
    {
        var bundles = new MutableBundles(_td.Bundle);
        await using var host = await RelyingPartyHost.StartAsync(_td.Svid("/service/quotes"), auth => auth.AddWritX509Svid(o =>
        {
            o.Bundles = bundles;
            o.Revocations = _revocations;
            o.Authorizer = Authorize.Any();
        }));
        using var cert = _td.Svid("/sample/greeter");
        using var client = host.Client(cert);
        Assert.Equal(HttpStatusCode.OK, (await GetAsync(client, "/x509")).Status);
        bundles.Set(new TestTrustDomain("example.test").Bundle);
        Assert.Equal(WritAuthCodes.InvalidX509Svid, (await GetAsync(client, "/x509")).Code);
    }

    [Fact]
    public async Task An_SVID_that_expires_while_its_connection_is_open_is_refused_on_the_next_request()
    {
        var clock = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var host = await RelyingPartyHost.StartAsync(_td.Svid("/service/quotes"), auth => auth.AddWritX509Svid(o =>
        {
            o.Bundles = new MutableBundles(_td.Bundle);
            o.Revocations = _revocations;
            o.Authorizer = Authorize.Any();
            o.TimeProvider = clock;
        }));
        using var cert = _td.Svid("/sample/greeter", clock.GetUtcNow(), TimeSpan.FromMinutes(10));
        using var client = host.Client(cert);
        Assert.Equal(HttpStatusCode.OK, (await GetAsync(client, "/x509")).Status);
        Assert.Equal(HttpStatusCode.OK, (await GetAsync(client, "/x509")).Status);   // the chain check remembered for this connection
        clock.Advance(TimeSpan.FromMinutes(11));
        var (status, body, code) = await GetAsync(client, "/x509");
        Assert.Equal(HttpStatusCode.Unauthorized, status);
        Assert.Equal(WritAuthCodes.InvalidX509Svid, code);
        Assert.Contains("expired", body, StringComparison.Ordinal);
    }

    internal static async Task<(HttpStatusCode Status, string Body, string? Code)> GetAsync(HttpClient client, string path, string? bearer = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, path);
        if (bearer is not null)
        {
            request.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", bearer);
        }
        using var response = await client.SendAsync(request, TestContext.Current.CancellationToken);
        var body = await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken);
        var code = response.Headers.TryGetValues("Writ-Error-Code", out var v) ? v.Single() : null;
        return (response.StatusCode, body, code);
    }
}
