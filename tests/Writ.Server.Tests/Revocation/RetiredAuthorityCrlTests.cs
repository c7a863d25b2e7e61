using System.Globalization;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging.Abstractions;
using Writ.Server.Ca;
using Writ.Server.Keys;
using Writ.Server.Revocation;
using Writ.Server.Storage;
using Writ.Server.Tests.Ca;
using Writ.Spiffe;
using static Writ.Server.Tests.Ca.CaTest;

namespace Writ.Server.Tests.Revocation;

/// <summary>
/// Issue #13 item 9c: after an X.509 authority rotates out, the SVIDs it signed stay valid until they expire, so a CRL
/// signed by that retired authority is published beside the active one's until then — checked with openssl as a relying
/// party would.
/// </summary>
public sealed class RetiredAuthorityCrlTests : IAsyncLifetime
{
    private static readonly TimeSpan CaTtl = TimeSpan.FromHours(6);   // prepared at 3 h, signing from 5 h, expires at 6 h
    private CaHarness _h = null!;
    private WritCa _ca = null!;
    private RevocationService _svc = null!;
    private string _dir = null!;

    public async ValueTask InitializeAsync()
    {
        _h = await CaHarness.CreateAsync();
        _ca = await _h.StartCaAsync(new CaOptions { CaTtl = CaTtl }, new MemoryKeyManager());
        _svc = new RevocationService(_h.Store, _ca, _h.Time, NullLogger<RevocationService>.Instance);
        _dir = Directory.CreateTempSubdirectory("writ-crl-").FullName;
    }

    public async ValueTask DisposeAsync()
    {
        _svc.Stop();
        await _h.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
    }

    [Fact]
    public async Task Revoking_an_svid_of_a_retired_authority_lists_it_in_a_crl_that_authority_signs_until_its_svids_have_expired()
    {
        var oldRoot = _ca.Bundle.X509Authorities.Single();
        await RunUntilAsync(TimeSpan.FromHours(4) + TimeSpan.FromMinutes(50));
        // Signed by the authority about to retire; the TTL reaches past its expiry, so these are capped at it: its last SVIDs.
        var revoked = await IssueAsync(TimeSpan.FromHours(2));
        var kept = await IssueAsync(TimeSpan.FromHours(2));
        Assert.Equal(oldRoot.NotAfter, revoked.NotAfter);
        await RunUntilAsync(TimeSpan.FromHours(5) + TimeSpan.FromMinutes(10));
        var fresh = await IssueAsync(TimeSpan.FromMinutes(30));
        var newRoot = IssuerIn(_ca.Bundle, fresh)!;
        Assert.NotEqual(oldRoot.Thumbprint, newRoot.Thumbprint);   // rotated: the old authority is retired

        await _svc.RevokeAsync(Target(revoked.SerialNumber), "key leaked", "uid:0", Ct);
        var crl = await _svc.CurrentCrlAsync(Ct);

        var retired = Assert.Single(crl.Retired);
        Assert.NotEqual(crl.AuthorityKeyId, retired.AuthorityKeyId);
        Assert.Equal(1, retired.Count);
        var oldCa = Write("old-ca.pem", oldRoot.ExportCertificatePem());
        var newCa = Write("new-ca.pem", newRoot.ExportCertificatePem());
        var retiredCrl = Write("retired-crl.pem", CrlBuilder.ToPem(retired.Der));
        var activeCrl = Write("active-crl.pem", CrlBuilder.ToPem(crl.Der));

        var check = await Proc.RunAsync("openssl", "crl", "-in", retiredCrl, "-noout", "-verify", "-CAfile", oldCa, "-text");
        Assert.True(check.Exit == 0, check.Output);
        Assert.Contains("verify OK", check.Output, StringComparison.Ordinal);
        Assert.Contains(revoked.SerialNumber, check.Output.Replace(":", "", StringComparison.Ordinal).ToUpperInvariant(), StringComparison.Ordinal);
        // It is the old authority's, not the new one's: the new authority's certificate does not verify it.
        Assert.NotEqual(0, (await Proc.RunAsync("openssl", "crl", "-in", retiredCrl, "-noout", "-verify", "-CAfile", newCa)).Exit);
        var active = await Proc.RunAsync("openssl", "crl", "-in", activeCrl, "-noout", "-verify", "-CAfile", newCa);
        Assert.True(active.Exit == 0, active.Output);

        // A relying party checking old SVIDs against their own issuer's CRL: the revoked one is refused, the other accepted.
        var refused = await VerifyAsync(oldCa, retiredCrl, revoked);
        Assert.NotEqual(0, refused.Exit);
        Assert.Contains("certificate revoked", refused.Output, StringComparison.Ordinal);
        var accepted = await VerifyAsync(oldCa, retiredCrl, kept);
        Assert.True(accepted.Exit == 0, accepted.Output);
        var freshOk = await VerifyAsync(newCa, activeCrl, fresh);
        Assert.True(freshOk.Exit == 0, freshOk.Output);
        // As `writ bundle show` prints them: every root in one file, every CRL in another.
        var allCa = Write("bundle.pem", _ca.Bundle.ToPem());
        var allCrls = Write("crls.pem", CrlBuilder.ToPem(crl.Der) + CrlBuilder.ToPem(retired.Der));
        Assert.Contains("certificate revoked", (await VerifyAsync(allCa, allCrls, revoked)).Output, StringComparison.Ordinal);
        Assert.Equal(0, (await VerifyAsync(allCa, allCrls, kept)).Exit);
        Assert.Equal(0, (await VerifyAsync(allCa, allCrls, fresh)).Exit);

        // Up to the last instant an old SVID is valid, the retired authority's CRL is published...
        await RunUntilAsync(TimeSpan.FromHours(6) - TimeSpan.FromSeconds(1));
        Assert.Single((await _svc.CurrentCrlAsync(Ct)).Retired);
        // ...and not after its last SVID expired, although the authority is still in the bundle (prune margin).
        await RunUntilAsync(TimeSpan.FromHours(6) + TimeSpan.FromSeconds(1));
        Assert.True(_h.Time.GetUtcNow() > new DateTimeOffset(kept.NotAfter.ToUniversalTime()));
        var after = await _svc.CurrentCrlAsync(Ct);
        Assert.Empty(after.Retired);
        Assert.Contains(oldRoot.Thumbprint, Thumbprints(_ca.Bundle));
        Assert.True(after.Number > crl.Number);   // a new CRL, so Sync streams send the shorter set
    }

    [Fact]
    public async Task Before_any_rotation_only_the_active_authority_publishes_a_crl()
    {
        var leaf = await IssueAsync(TimeSpan.FromHours(1));
        await _svc.RevokeAsync(Target(leaf.SerialNumber), "", "uid:0", Ct);
        var crl = await _svc.CurrentCrlAsync(Ct);
        Assert.Equal(1, crl.Count);
        Assert.Empty(crl.Retired);
    }

    [Fact]
    public async Task A_retired_authoritys_crl_leaves_out_credentials_that_outlive_it_as_none_of_its_svids_can()
    {
        await RunUntilAsync(TimeSpan.FromHours(5) + TimeSpan.FromMinutes(10));
        var fresh = await IssueAsync(TimeSpan.FromHours(2));   // new authority; expires after the old one
        await _svc.RevokeAsync(Target(fresh.SerialNumber), "", "uid:0", Ct);
        var crl = await _svc.CurrentCrlAsync(Ct);
        Assert.Equal(1, crl.Count);
        Assert.Equal(0, Assert.Single(crl.Retired).Count);
    }

    /// <summary>Moves the clock in 10-minute steps (then to the end), with a rotation pass at each, as the server's loop runs it.</summary>
    private async Task RunUntilAsync(TimeSpan sinceStart)
    {
        var end = CaHarness.Start + sinceStart;
        while (_h.Time.GetUtcNow() < end)
        {
            var next = _h.Time.GetUtcNow() + TimeSpan.FromMinutes(10);
            _h.Time.SetUtcNow(next < end ? next : end);
            await _ca.RotateAsync(Ct);
        }
    }

    /// <summary>Signs a real X.509-SVID and records it in the ledger as the pipeline does.</summary>
    private async Task<X509Certificate2> IssueAsync(TimeSpan ttl)
    {
        const string Id = "spiffe://example.org/web";
        var leaf = _ca.SignX509Svid(SpiffeId.Parse(Id), WorkloadKey(), ttl)[0];
        await _h.Store.Ledger.AppendAsync([], [new IssuedCredential
        {
            Kind = "x509", Id = leaf.SerialNumber, SpiffeId = Id, AgentId = "spiffe://example.org/writ/agent/join_token/a",
            DecisionId = "d-" + leaf.SerialNumber, IssuedAt = _h.Time.GetUtcNow(), ExpiresAt = new DateTimeOffset(leaf.NotAfter.ToUniversalTime()),
        }], Ct);
        return leaf;
    }

    private static RevocationTarget Target(string serial) =>
        RevocationTarget.TryCreate(RevocationTargetKind.Serial, serial, out var t, out var error) ? t : throw new ArgumentException(error);

    private string Write(string name, string text)
    {
        var path = Path.Combine(_dir, name);
        File.WriteAllText(path, text.EndsWith('\n') ? text : text + "\n");
        return path;
    }

    private Task<(int Exit, string Output)> VerifyAsync(string caFile, string crlFile, X509Certificate2 leaf) =>
        Proc.RunAsync("openssl", "verify", "-crl_check", "-CAfile", caFile, "-CRLfile", crlFile,
            "-attime", _h.Time.GetUtcNow().ToUnixTimeSeconds().ToString(CultureInfo.InvariantCulture),
            Write($"leaf-{leaf.SerialNumber}.pem", leaf.ExportCertificatePem()));
}
