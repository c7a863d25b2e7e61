using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Writ.Protocol.Errors;
using Writ.Server.NodeAttestation;
using Writ.Server.Storage;
using Writ.Spiffe.X509;

namespace Writ.Server.Tests.NodeAttestation;

/// <summary>
/// Issue #13 item 9a: a renewal never undoes a ban or an eviction. The renewal's node write is conditional in SQL; the
/// test store lands the ban (or eviction) right before that write, after the renewal read the node and signed.
/// </summary>
public sealed class AgentRenewalBanTests : IAsyncLifetime
{
    private NodeAttestationHarness _h = null!;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask InitializeAsync()
    {
        _h = await NodeAttestationHarness.CreateAsync();
        _h.Use(NodeAttestationLimits.Default, new JoinTokenNodeAttestor(_h.Store.JoinTokens));
    }

    public async ValueTask DisposeAsync() => await _h.DisposeAsync();

    /// <summary>An attested agent, as AuthenticateAsync reads it before a renewal.</summary>
    private async Task<AttestedNode> AttestedAsync()
    {
        var secret = Convert.ToBase64String(RandomNumberGenerator.GetBytes(32));
        var now = _h.Ca.Time.GetUtcNow();
        await _h.Store.JoinTokens.CreateAsync(new JoinToken("t1", JoinTokenNodeAttestor.HashToken(secret), now.AddHours(1), null, now), Ct);
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var r = await _h.Server.NodeAttestation.AttestAsync("join_token", Encoding.UTF8.GetBytes(secret), Csr.Create(key), (_, _) => throw new InvalidOperationException(), "test", Ct);
        return (await _h.Store.Nodes.GetAsync(r.AgentId.ToString(), Ct))!;
    }

    private static PublicKey NewKey()
    {
        using var k = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        return new PublicKey(k);
    }

    [Fact]
    public async Task A_ban_landing_between_the_renewal_read_and_its_write_survives()
    {
        var read = await AttestedAsync();
        _h.Store.BeforeRenewWrite = async () =>
            await _h.Store.Nodes.UpdateAsync((await _h.Store.Nodes.GetAsync(read.SpiffeId, Ct))! with { Banned = true }, Ct);

        var e = await Assert.ThrowsAsync<WritException>(() => _h.Server.NodeAttestation.RenewAsync(read, NewKey(), Ct));
        Assert.Equal(NodeAttestationCodes.AgentBanned, e.Code);
        Assert.Contains("banned", e.Message, StringComparison.Ordinal);   // the agent stops on "banned"
        var after = (await _h.Store.Nodes.GetAsync(read.SpiffeId, Ct))!;
        Assert.True(after.Banned, "the renewal undid the ban");
        Assert.Equal(read.SerialNumber, after.SerialNumber);
    }

    [Fact]
    public async Task An_eviction_landing_before_the_renewal_write_is_not_undone()
    {
        var read = await AttestedAsync();
        _h.Store.BeforeRenewWrite = () => _h.Store.Nodes.DeleteAsync(read.SpiffeId, Ct);

        var e = await Assert.ThrowsAsync<WritException>(() => _h.Server.NodeAttestation.RenewAsync(read, NewKey(), Ct));
        Assert.Equal(NodeAttestationCodes.AgentSuperseded, e.Code);
        Assert.Null(await _h.Store.Nodes.GetAsync(read.SpiffeId, Ct));
    }

    [Fact]
    public async Task A_renewal_stores_the_new_serial_and_a_second_one_from_the_old_serial_is_refused()
    {
        var read = await AttestedAsync();
        var renewed = await _h.Server.NodeAttestation.RenewAsync(read, NewKey(), Ct);
        var after = (await _h.Store.Nodes.GetAsync(read.SpiffeId, Ct))!;
        Assert.Equal(renewed.Chain[0].SerialNumber, after.SerialNumber);
        Assert.False(after.Banned);

        var stale = await Assert.ThrowsAsync<WritException>(() => _h.Server.NodeAttestation.RenewAsync(read, NewKey(), Ct));
        Assert.Equal(NodeAttestationCodes.AgentSuperseded, stale.Code);
        Assert.Equal(after.SerialNumber, (await _h.Store.Nodes.GetAsync(read.SpiffeId, Ct))!.SerialNumber);
    }
}
