using System.Security.Cryptography;
using Writ.Agent.Tests.Instances;
using Writ.Agent.Tests.TestSupport;
using Writ.Protocol.Agent;

namespace Writ.Agent.Tests.Cache;

/// <summary>The SVID cache per workload instance, against a fake server and real child processes.</summary>
public sealed class SvidCacheTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Two_processes_matching_one_entry_get_their_own_key_and_serial_and_send_their_own_evidence()
    {
        using var rig = new InstanceRig();
        var entry = InstanceRig.Entry("web", "unix:uid:0");
        rig.SetEntries(entry);
        using var a = Child.Start("/bin/sleep", "60");
        using var b = Child.Start("/bin/sleep", "60");
        var ia = await rig.ObserveAsync(a.Pid);
        var ib = await rig.ObserveAsync(b.Pid);

        var xa = Assert.Single((await rig.Cache.GetX509Async(ia, [entry], Ct)).Svids);
        var xb = Assert.Single((await rig.Cache.GetX509Async(ib, [entry], Ct)).Svids);
        Assert.NotEqual(xa.SerialHex, xb.SerialHex);
        Assert.NotEqual(xa.KeyPkcs8, xb.KeyPkcs8);
        Assert.Equal(ia.Id, xa.InstanceId);

        // The cache answers the same instance from memory; the CSRs carried each instance's evidence.
        Assert.Same(xa, Assert.Single((await rig.Cache.GetX509Async(ia, [entry], Ct)).Svids));
        var csrs = rig.Server.Signs.SelectMany(s => s.Csrs).ToList();
        Assert.Equal(2, csrs.Count);
        Assert.Equal([ia.Id, ib.Id], csrs.Select(c => c.Evidence.InstanceId));
        Assert.Contains(csrs[0].Evidence.Selectors, s => s.Type == "unix" && s.Value == "uid:0");
        Assert.Equal(a.Pid.ToString(System.Globalization.CultureInfo.InvariantCulture), csrs[0].Evidence.Facts["unix.pid"]);
        Assert.Contains(csrs[0].Evidence.Selectors, s => s.Type == "unix" && s.Value.StartsWith("sha256:", StringComparison.Ordinal));
        Assert.Equal([xa.SerialHex], ia.Issued.Serials);
    }

    [Fact]
    public async Task A_revoked_serial_is_dropped_and_the_still_entitled_instance_gets_a_fresh_one()
    {
        using var rig = new InstanceRig();
        var entry = InstanceRig.Entry("web", "unix:uid:0");
        rig.SetEntries(entry);
        using var a = Child.Start("/bin/sleep", "60");
        using var b = Child.Start("/bin/sleep", "60");
        var ia = await rig.ObserveAsync(a.Pid);
        var ib = await rig.ObserveAsync(b.Pid);
        var old = Assert.Single((await rig.Cache.GetX509Async(ia, [entry], Ct)).Svids);
        var other = Assert.Single((await rig.Cache.GetX509Async(ib, [entry], Ct)).Svids);

        // As the server writes it: lower case, with a leading zero.
        rig.State.Revocations.Add([new Revocation { SerialHex = "0" + old.SerialHex.ToLowerInvariant(), EntryId = "web", ExpiresAtUnix = old.ExpiresAt.ToUnixTimeSeconds() }]);
        Assert.True(await rig.Cache.MaintainOnceAsync(Ct));
        Assert.DoesNotContain(rig.Cache.X509Of(ia.Id), c => c.SerialHex == old.SerialHex);
        Assert.Same(other, Assert.Single(rig.Cache.X509Of(ib.Id)));   // only the revoked one goes

        var fresh = Assert.Single((await rig.Cache.GetX509Async(ia, [entry], Ct)).Svids);
        Assert.NotEqual(old.SerialHex, fresh.SerialHex);
        Assert.Contains(rig.Log.Entries, e => e.Message.Contains("Revoked credentials dropped", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_denied_csr_comes_back_with_the_servers_reason_and_decision_id()
    {
        using var rig = new InstanceRig();
        var allowed = InstanceRig.Entry("allowed", "unix:uid:0");
        var payments = InstanceRig.Entry("payments", "unix:uid:0");
        rig.SetEntries(allowed, payments);
        rig.Server.Deny["payments"] = ("d-4f2a", "denied by policy 'payments-need-tpm'");
        using var a = Child.Start("/bin/sleep", "60");
        var ia = await rig.ObserveAsync(a.Pid);

        var result = await rig.Cache.GetX509Async(ia, [allowed, payments], Ct);
        Assert.Equal(["spiffe://example.org/allowed"], result.Svids.Select(s => s.SpiffeId));
        var denial = Assert.Single(result.Denials);
        Assert.Equal("issuance denied by policy 'payments-need-tpm' (decision d-4f2a, see 'writ explain d-4f2a')", denial.Message);

        // Asked again right away: the refusal is remembered for a while instead of asking the server again.
        var signs = rig.Server.Signs.Count;
        result = await rig.Cache.GetX509Async(ia, [payments], Ct);
        Assert.Empty(result.Svids);
        Assert.Single(result.Denials);
        Assert.Equal(signs, rig.Server.Signs.Count);
    }

    [Fact]
    public async Task Credentials_of_a_drifted_or_exited_instance_are_not_served()
    {
        using var rig = new InstanceRig();
        var entry = InstanceRig.Entry("web", "unix:uid:0");
        rig.SetEntries(entry);
        using var child = Child.Start("/bin/sh", "-c", "read x; exec /bin/sleep 60");
        var instance = await rig.ObserveAsync(child.Pid);
        var first = Assert.Single((await rig.Cache.GetX509Async(instance, [entry], Ct)).Svids);

        await child.Process.StandardInput.WriteLineAsync("go");
        await child.Process.StandardInput.FlushAsync(Ct);
        await Deadline.UntilAsync(() => Child.ExeOf(child.Pid) == Child.Resolve("/bin/sleep"), "the exec");
        await rig.Tracker.RecheckAsync(instance, Ct);

        // Still entitled (uid 0): a fresh SVID from the new evidence, never the old one.
        var second = Assert.Single((await rig.Cache.GetX509Async(instance, [entry], Ct)).Svids);
        Assert.NotEqual(first.SerialHex, second.SerialHex);
        var lastCsr = rig.Server.Signs[^1].Csrs.Single();
        Assert.Contains(lastCsr.Evidence.Selectors, s => s.Value == $"path:{Child.Resolve("/bin/sleep")}");
        Assert.Equal([first.SerialHex], Assert.Single(rig.Reporter.Snapshot()).Serials);

        child.KillAndWait();
        await Deadline.UntilAsync(() => instance.IsGone, "the exit");
        Assert.Empty((await rig.Cache.GetX509Async(instance, [entry], Ct)).Svids);
        await rig.Cache.MaintainOnceAsync(Ct);
        Assert.Empty(rig.Cache.X509Of(instance.Id));
        Assert.Equal([second.SerialHex], rig.Reporter.Snapshot()[^1].Serials);
    }

    [Fact]
    public async Task A_jwt_is_bound_to_the_current_leaf_and_new_mints_follow_a_new_leaf()
    {
        using var rig = new InstanceRig();
        var entry = InstanceRig.Entry("api", "unix:uid:0");
        rig.SetEntries(entry);
        using var child = Child.Start("/bin/sleep", "60");
        var instance = await rig.ObserveAsync(child.Pid);

        // No X.509-SVID yet: one is obtained first, and the JWT binds to it.
        var jwt = await rig.Cache.GetJwtAsync(instance, entry, ["https://a.example"], Ct);
        var leaf = Assert.Single(rig.Cache.X509Of(instance.Id));
        var mint = Assert.Single(rig.Server.Mints);
        Assert.Equal(SHA256.HashData(leaf.Chain[0].RawData), mint.BoundCertSha256.ToByteArray());
        Assert.Equal(instance.Id, mint.Evidence.InstanceId);
        Assert.Equal(32, jwt.Jti.Length);   // read from the token when the server leaves the field empty
        Assert.Equal([jwt.Jti], instance.Issued.Jtis);

        // The leaf is replaced (revoked): the cached token stays valid, a new mint binds to the new leaf.
        rig.State.Revocations.Add([new Revocation { SerialHex = leaf.SerialHex, ExpiresAtUnix = leaf.ExpiresAt.ToUnixTimeSeconds() }]);
        await rig.Cache.MaintainOnceAsync(Ct);
        Assert.Same(jwt, await rig.Cache.GetJwtAsync(instance, entry, ["https://a.example"], Ct));
        await rig.Cache.GetJwtAsync(instance, entry, ["https://b.example"], Ct);
        var newLeaf = Assert.Single(rig.Cache.X509Of(instance.Id));
        Assert.NotEqual(leaf.SerialHex, newLeaf.SerialHex);
        Assert.Equal(SHA256.HashData(newLeaf.Chain[0].RawData), rig.Server.Mints[^1].BoundCertSha256.ToByteArray());

        // A revoked jti is not served again.
        rig.State.Revocations.Add([new Revocation { Jti = jwt.Jti, ExpiresAtUnix = jwt.ExpiresAt.ToUnixTimeSeconds() }]);
        await rig.Cache.MaintainOnceAsync(Ct);
        Assert.NotEqual(jwt.Jti, (await rig.Cache.GetJwtAsync(instance, entry, ["https://a.example"], Ct)).Jti);
    }

    [Fact]
    public async Task A_jwt_denial_passes_the_servers_detail_through()
    {
        using var rig = new InstanceRig();
        var entry = InstanceRig.Entry("api", "unix:uid:0");
        rig.SetEntries(entry);
        using var child = Child.Start("/bin/sleep", "60");
        var instance = await rig.ObserveAsync(child.Pid);
        await rig.Cache.GetX509Async(instance, [entry], Ct);
        rig.Server.DenyJwt["api"] = "issuance denied by policy 'jwt-audiences' (decision d-77, see 'writ explain d-77')";
        var e = await Assert.ThrowsAsync<Writ.Protocol.Errors.WritException>(() => rig.Cache.GetJwtAsync(instance, entry, ["https://evil.example"], Ct));
        Assert.Equal(Writ.Protocol.Errors.WritErrorKind.PermissionDenied, e.Kind);
        Assert.Equal(Writ.Agent.WorkloadApi.WorkloadErrors.IssuanceDenied, e.Code);
        Assert.Equal(rig.Server.DenyJwt["api"], e.Message);   // the server's detail, decision id included, unchanged
    }
}
