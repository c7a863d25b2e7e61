using Writ.Protocol.Errors;
using Writ.Server.Configuration;
using Writ.Server.Discovery;

namespace Writ.Server.Tests.Discovery;

/// <summary>The issuer rule (server jwt_issuer and provider --issuer) and the provider's start-up refusals.</summary>
public sealed class DiscoveryRulesTests
{
    [Theory]
    [InlineData("https://oidc.example.org")]
    [InlineData("https://oidc.example.org:8443")]
    [InlineData("https://example.org/writ")]
    [InlineData("http://127.0.0.1:8080")]
    [InlineData("http://localhost:8080")]
    [InlineData("http://[::1]:8080")]
    public void Issuer_urls_verifiers_can_trust_are_accepted(string issuer) => Assert.Null(IssuerUrl.Check(issuer));

    [Theory]
    [InlineData("http://oidc.example.org")]          // plain http to a host anyone on the path can impersonate
    [InlineData("http://10.0.0.5:8080")]
    [InlineData("http://127.0.0.1.evil.example:80")] // looks loopback, is not
    [InlineData("https://oidc.example.org/")]        // trailing slash: iss would not equal issuer + path joins break
    [InlineData("https://oidc.example.org?x=1")]
    [InlineData("https://oidc.example.org#frag")]
    [InlineData("https://user:pw@oidc.example.org")]
    [InlineData("oidc.example.org")]
    [InlineData("ftp://oidc.example.org")]
    [InlineData("https://oidc.example.org/a b")]
    [InlineData("")]
    public void Issuer_urls_that_break_the_rule_are_refused(string issuer) => Assert.NotNull(IssuerUrl.Check(issuer));

    [Fact]
    public void A_bad_jwt_issuer_refuses_the_server_configuration_with_its_code()
    {
        var errors = BuildServer("http://oidc.example.org");
        Assert.Contains(errors, e => e.StartsWith(DiscoveryCodes.ConfigJwtIssuer + ": ", StringComparison.Ordinal));
        Assert.Empty(BuildServer("https://oidc.example.org"));
    }

    [Fact]
    public void The_server_options_carry_the_issuer_to_the_ca()
    {
        var sources = Sources("https://oidc.example.org");
        var options = ServerConfigLoader.Build(sources, out var errors);
        Assert.Empty(errors);
        Assert.Equal("https://oidc.example.org", options!.Ca.JwtIssuer);
        Assert.Null(ServerConfigLoader.Build(Sources(null), out _)!.Ca.JwtIssuer);
    }

    [Theory]
    [InlineData("0.0.0.0:8443")]
    [InlineData("[::]:8443")]
    [InlineData("10.1.2.3:8443")]
    public void Plain_http_on_an_address_that_is_not_loopback_is_refused(string bind)
    {
        var e = Assert.Throws<WritException>(() => DiscoveryOptions.Build(bind, "https://oidc.example.org", null, null, null));
        Assert.Equal(DiscoveryCodes.PlainHttp, e.Code);
    }

    [Fact]
    public void Half_a_tls_pair_a_bad_bind_and_an_underivable_issuer_are_refused()
    {
        Assert.Equal(DiscoveryCodes.Tls, Assert.Throws<WritException>(() => DiscoveryOptions.Build("127.0.0.1:8443", null, "cert.pem", null, null)).Code);
        Assert.Equal(DiscoveryCodes.Bind, Assert.Throws<WritException>(() => DiscoveryOptions.Build("127.0.0.1", null, null, null, null)).Code);
        Assert.Equal(DiscoveryCodes.Bind, Assert.Throws<WritException>(() => DiscoveryOptions.Build("127.0.0.1:99999", null, null, null, null)).Code);
        Assert.Equal(DiscoveryCodes.Issuer, Assert.Throws<WritException>(() => DiscoveryOptions.Build("0.0.0.0:8443", null, "c.pem", "k.pem", null)).Code);
        Assert.Equal(DiscoveryCodes.Issuer, Assert.Throws<WritException>(() => DiscoveryOptions.Build("127.0.0.1:8443", "https://x.example/", null, null, null)).Code);
    }

    [Fact]
    public void The_default_issuer_is_made_from_the_bind_host_and_port()
    {
        Assert.Equal("http://127.0.0.1:8080", DiscoveryOptions.Build("127.0.0.1:8080", null, null, null, null).IssuerFor(8080));
        Assert.Equal("http://[::1]:8080", DiscoveryOptions.Build("[::1]:8080", null, null, null, null).IssuerFor(8080));
        Assert.Equal("http://localhost:8080", DiscoveryOptions.Build("localhost:8080", null, null, null, null).IssuerFor(8080));
        var tls = DiscoveryOptions.Build("127.0.0.1:443", null, "c.pem", "k.pem", null);
        Assert.Equal("https://127.0.0.1", tls.IssuerFor(443));
        Assert.Equal("https://oidc.example.org", DiscoveryOptions.Build("0.0.0.0:443", "https://oidc.example.org", "c.pem", "k.pem", null).IssuerFor(443));
    }

    private static ConfigSources Sources(string? issuer)
    {
        var c = new ConfigSources(ServerConfigLoader.Keys);
        c.Set("trust_domain", "example.org", "test");
        c.Set("data_dir", Path.Combine(Path.GetTempPath(), "writ-discovery-unused"), "test");
        c.Set("admin_socket", "/tmp/writ-discovery-unused.sock", "test");
        if (issuer is not null)
        {
            c.Set("jwt_issuer", issuer, "test");
        }
        return c;
    }

    private static IReadOnlyList<string> BuildServer(string issuer)
    {
        ServerConfigLoader.Build(Sources(issuer), out var errors);
        return errors;
    }
}
