using Writ.IntegrationTests.Harness;
using Writ.Spiffe;
using Writ.Workload;

namespace Writ.IntegrationTests.RelyingParties;

/// <summary>
/// The SDK's sources against a real agent (not the SDK's own test fake): the X.509-SVID and bundles arrive, a revocation
/// made with `writ revoke` reaches both the relying-party revocation feed and the Workload API's CRLs, and the source
/// moves to a fresh SVID.
/// </summary>
public sealed class SdkAgentTests
{
    private const string Api = "spiffe://example.org/api";

    [Fact]
    public async Task The_sources_follow_the_agent_and_a_revocation_reaches_both_feeds()
    {
        await using var rig = await AgentRig.StartAsync();
        await rig.CreateEntryAsync(Api, ["unix:uid:0"]);
        var ct = TestContext.Current.CancellationToken;
        var address = "unix://" + rig.Agent.SocketPath;

        await using var x509 = await WorkloadTools.EventuallyAsync(
            () => X509Source.CreateAsync(new X509SourceOptions { Address = address, InitialTimeout = TimeSpan.FromSeconds(10) }, ct),
            TimeSpan.FromSeconds(60), "the first X.509-SVID through the SDK");
        await using var revocations = await RevocationSource.CreateAsync(new WorkloadApiOptions { Address = address }, ct);
        await using var jwt = await JwtSource.CreateAsync(new WorkloadApiOptions { Address = address }, ct);

        var svid = x509.GetX509Svid();
        Assert.Equal(SpiffeId.Parse(Api), svid.Id);
        Assert.NotNull(x509.GetBundle(TrustDomain.Parse("example.org")));
        var token = await jwt.FetchJwtSvidAsync(["spiffe://example.org/db"], cancellationToken: ct);
        Assert.Equal(svid.Id, token.Id);
        Assert.Equal(svid.Id, jwt.Validate(token.Token, "spiffe://example.org/db").Id);

        var serial = svid.Leaf.SerialNumber;
        Assert.False(revocations.IsSerialRevoked(serial));
        var changed = 0;
        x509.Changed += (_, _) => Interlocked.Increment(ref changed);
        var revoke = await rig.Server.WritAsync("revoke", "--serial", serial, "--reason", "sdk test");
        Assert.True(revoke.ExitCode == 0, revoke.ToString());

        await WorkloadTools.EventuallyAsync(() => Task.FromResult(revocations.IsSerialRevoked(serial) ? true : throw new InvalidOperationException("not yet")),
            TimeSpan.FromSeconds(15), "the revocation on the relying-party feed");
        await WorkloadTools.EventuallyAsync(() => Task.FromResult(x509.IsSerialRevoked(serial) ? true : throw new InvalidOperationException("not yet")),
            TimeSpan.FromSeconds(15), "the revocation in the Workload API's CRL");
        await WorkloadTools.EventuallyAsync(() => Task.FromResult(x509.GetX509Svid().Leaf.SerialNumber != serial ? true : throw new InvalidOperationException("same SVID")),
            TimeSpan.FromSeconds(15), "a fresh SVID after the revocation");
        Assert.True(Volatile.Read(ref changed) > 0);
        Assert.False(revocations.IsSerialRevoked(x509.GetX509Svid().Leaf.SerialNumber));
    }
}
