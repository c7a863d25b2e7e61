using System.Diagnostics;
using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Writ.Workload.AspNetCore;
using Writ.Workload.Tests.Fakes;
using static Writ.Workload.Tests.AspNetCore.X509SvidAuthenticationTests;

namespace Writ.Workload.Tests.AspNetCore;

/// <summary>
/// The schemes with the SDK's real sources: bundles from <see cref="BundleSource"/> and revocations from
/// <see cref="RevocationSource"/>, both streamed from a Workload API peer on a real Unix socket. When the peer pushes a
/// new revocation set, the very next request — on the same TLS connection — is refused.
/// </summary>
public sealed class RevocationPushTests
{
    private const string Audience = "spiffe://example.test/service/quotes";

    [Fact]
    public async Task A_pushed_revocation_refuses_the_next_request_of_an_open_connection_and_a_token_already_accepted()
    {
        using var ca = new TestCa("example.test");
        await using var fake = await FakeWorkloadApi.StartAsync(ca);
        await using var bundles = await BundleSource.CreateAsync(new BundleSourceOptions { Address = fake.Address }, TestContext.Current.CancellationToken);
        await using var revocations = await RevocationSource.CreateAsync(new WorkloadApiOptions { Address = fake.Address }, TestContext.Current.CancellationToken);
        await using var host = await RelyingPartyHost.StartAsync(new TestTrustDomain("example.test").Svid("/service/quotes"), auth => auth
            .AddWritX509Svid(o =>
            {
                o.Bundles = bundles;
                o.Revocations = revocations;
                o.Authorizer = Authorize.MemberOf("example.test");
            })
            .AddWritJwtSvid(o =>
            {
                o.Audience = Audience;
                o.Bundles = bundles;
                o.Revocations = revocations;
                o.Authorizer = Authorize.MemberOf("example.test");
            }));

        var svid = ca.Issue("/sample/greeter");
        using var cert = WithKey(svid.Leaf, (ECDsa)svid.PrivateKey!);
        using var client = host.Client(cert);
        const string jti = "jti-pushed";
        var token = Writ.Spiffe.Jwt.JwtSvidMinter.Mint(ca.JwtKey, svid.Id, [Audience], DateTimeOffset.UtcNow, DateTimeOffset.UtcNow.AddMinutes(5),
            new Dictionary<string, object> { ["jti"] = jti });

        using var first = await client.GetAsync("/x509", TestContext.Current.CancellationToken);
        Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await GetAsync(client, "/jwt", token)).Status);

        var changed = Until.NextAsync(h => revocations.Changed += h);
        var pushed = Stopwatch.StartNew();
        fake.SetRevocations([cert.SerialNumber], [jti]);
        await changed;
        TestContext.Current.TestOutputHelper?.WriteLine($"revocation pushed → RevocationSource changed in {pushed.Elapsed.TotalMilliseconds:F1} ms");

        using var second = await client.GetAsync("/x509", TestContext.Current.CancellationToken);
        Assert.Equal(HttpStatusCode.Unauthorized, second.StatusCode);
        Assert.Equal(first.Headers.GetValues("X-Connection-Id").Single(), second.Headers.GetValues("X-Connection-Id").Single());
        Assert.Equal(WritAuthCodes.Revoked, second.Headers.GetValues("Writ-Error-Code").Single());
        var (status, _, code) = await GetAsync(client, "/jwt", token);
        Assert.Equal(HttpStatusCode.Unauthorized, status);
        Assert.Equal(WritAuthCodes.Revoked, code);
    }

    private static X509Certificate2 WithKey(X509Certificate2 leaf, ECDsa key)
    {
        using var withKey = leaf.CopyWithPrivateKey(key);
        return X509CertificateLoader.LoadPkcs12(withKey.Export(X509ContentType.Pkcs12), null);
    }
}
