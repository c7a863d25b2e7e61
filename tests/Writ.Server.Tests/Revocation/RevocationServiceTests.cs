using System.Diagnostics;
using System.Numerics;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging.Abstractions;
using Writ.Server.Ca;
using Writ.Server.Keys;
using Writ.Server.Revocation;
using Writ.Server.Storage;
using Writ.Server.Tests.Ca;
using Writ.Spiffe;

namespace Writ.Server.Tests.Revocation;

/// <summary>What gets revoked, who may revoke it, and the CRL — on a real SQLite store and a real CA.</summary>
public sealed class RevocationServiceTests : IAsyncLifetime
{
    private const string AgentA = "spiffe://example.org/writ/agent/join_token/a";
    private const string AgentB = "spiffe://example.org/writ/agent/join_token/b";
    private CaHarness _h = null!;
    private WritCa _ca = null!;
    private RevocationService _svc = null!;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask InitializeAsync()
    {
        _h = await CaHarness.CreateAsync();
        _ca = await _h.StartCaAsync(new CaOptions(), new MemoryKeyManager());
        _svc = new RevocationService(_h.Store, _ca, _h.Time, NullLogger<RevocationService>.Instance);
    }

    public async ValueTask DisposeAsync() => await _h.DisposeAsync();

    /// <summary>Signs a real X.509-SVID and records it in the ledger as the pipeline does.</summary>
    private async Task<X509Certificate2> IssueX509Async(string spiffeId, string agent, string? entry = "e1", string? instance = "100:1")
    {
        var leaf = _ca.SignX509Svid(SpiffeId.Parse(spiffeId), CaTest.WorkloadKey(), TimeSpan.FromHours(1))[0];
        await _h.Store.Ledger.AppendAsync([], [new IssuedCredential
        {
            Kind = "x509", Id = leaf.SerialNumber, SpiffeId = spiffeId, EntryId = entry, AgentId = agent, InstanceId = instance,
            DecisionId = "d-" + leaf.SerialNumber, IssuedAt = _h.Time.GetUtcNow(), ExpiresAt = new DateTimeOffset(leaf.NotAfter.ToUniversalTime()),
        }], Ct);
        return leaf;
    }

    private async Task<string> IssueJwtAsync(string spiffeId, string agent, string? entry = "e1", string? instance = "100:1")
    {
        var (_, exp, jti) = _ca.MintJwtSvidWithId(SpiffeId.Parse(spiffeId), ["aud"], TimeSpan.FromMinutes(5), null);
        await _h.Store.Ledger.AppendAsync([], [new IssuedCredential
        {
            Kind = "jwt", Id = jti, SpiffeId = spiffeId, EntryId = entry, AgentId = agent, InstanceId = instance,
            DecisionId = "d-" + jti, IssuedAt = _h.Time.GetUtcNow(), ExpiresAt = exp,
        }], Ct);
        return jti;
    }

    private static RevocationTarget Target(RevocationTargetKind kind, string value) =>
        RevocationTarget.TryCreate(kind, value, out var t, out var error) ? t : throw new ArgumentException(error);

    [Fact]
    public async Task Revoke_by_serial_records_it_once_with_a_ledger_event_and_the_deny_list_knows_it()
    {
        var leaf = await IssueX509Async("spiffe://example.org/web", AgentA);
        var colons = string.Join(':', Convert.FromHexString(leaf.SerialNumber).Select(b => b.ToString("x2", System.Globalization.CultureInfo.InvariantCulture)));

        var revoked = await _svc.RevokeAsync(Target(RevocationTargetKind.Serial, colons), "key leaked", "uid:1000", Ct);

        var r = Assert.Single(revoked);
        Assert.Equal(leaf.SerialNumber, r.SerialHex);
        Assert.Equal("spiffe://example.org/web", r.SpiffeId);
        Assert.Equal("key leaked", r.Reason);
        Assert.True(_svc.IsSerialRevoked(leaf.SerialNumber.ToLowerInvariant()));
        Assert.Empty(await _svc.RevokeAsync(Target(RevocationTargetKind.Serial, leaf.SerialNumber), "again", "uid:1000", Ct));
        var e = Assert.Single(await _h.Store.Ledger.ListAsync(0, 10, "svid.revoked", null, Ct));
        Assert.Equal("uid:1000", e.Actor);
        Assert.Equal("spiffe://example.org/web", e.Subject);
        Assert.Contains($"\"serial\":\"{leaf.SerialNumber}\"", e.DataJson, StringComparison.Ordinal);
        Assert.Contains("\"reason\":\"key leaked\"", e.DataJson, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Revoking_something_unknown_is_a_one_line_not_found_error_and_changes_nothing()
    {
        await IssueX509Async("spiffe://example.org/web", AgentA);
        foreach (var t in new[]
                 {
                     Target(RevocationTargetKind.Serial, "7F00AA"), Target(RevocationTargetKind.Jti, "no-such-jti"),
                     Target(RevocationTargetKind.Entry, "no-such-entry"), Target(RevocationTargetKind.SpiffeId, "spiffe://example.org/nobody"),
                     Target(RevocationTargetKind.Agent, "spiffe://example.org/writ/agent/join_token/nobody"),
                 })
        {
            var e = await Assert.ThrowsAsync<StoreNotFoundException>(() => _svc.RevokeAsync(t, "", "uid:1000", Ct));
            CaTest.OneLine(e);
        }
        Assert.Empty(await _h.Store.Revocations.ListAsync(_h.Time.GetUtcNow(), true, Ct));
        Assert.False(RevocationTarget.TryCreate(RevocationTargetKind.Serial, "xyz", out _, out var error));
        Assert.Contains("hexadecimal", error, StringComparison.Ordinal);
        Assert.False(RevocationTarget.TryCreate(RevocationTargetKind.SpiffeId, "http://x", out _, out _));
    }

    [Fact]
    public async Task Revoke_by_entry_spiffe_id_and_jti_takes_exactly_the_matching_credentials()
    {
        var web1 = await IssueX509Async("spiffe://example.org/web", AgentA, entry: "e-web");
        var webJwt = await IssueJwtAsync("spiffe://example.org/web", AgentA, entry: "e-web");
        var db = await IssueX509Async("spiffe://example.org/db", AgentA, entry: "e-db");
        var dbJwt = await IssueJwtAsync("spiffe://example.org/db", AgentA, entry: "e-db");
        var api = await IssueX509Async("spiffe://example.org/api", AgentB, entry: "e-api");

        var byEntry = await _svc.RevokeAsync(Target(RevocationTargetKind.Entry, "e-web"), "", "uid:0", Ct);
        Assert.Equal(new[] { web1.SerialNumber, webJwt }.Order(StringComparer.Ordinal), byEntry.Select(r => r.SerialHex ?? r.Jti!).Order(StringComparer.Ordinal));
        var byJti = await _svc.RevokeAsync(Target(RevocationTargetKind.Jti, dbJwt), "", "uid:0", Ct);
        Assert.Equal(dbJwt, Assert.Single(byJti).Jti);
        Assert.True(_svc.IsJtiRevoked(dbJwt));
        var byId = await _svc.RevokeAsync(Target(RevocationTargetKind.SpiffeId, "spiffe://example.org/db"), "", "uid:0", Ct);
        Assert.Equal(db.SerialNumber, Assert.Single(byId).SerialHex);   // the jti of that ID was revoked already
        Assert.False(_svc.IsSerialRevoked(api.SerialNumber));
    }

    [Fact]
    public async Task Banning_an_agent_revokes_its_own_svid_and_everything_issued_through_it_but_nothing_of_other_agents()
    {
        var node = new AttestedNode
        {
            SpiffeId = AgentA, AttestationType = "join_token", SerialNumber = "1A2B3C", ExpiresAt = _h.Time.GetUtcNow().AddHours(1),
        };
        await _h.Store.Nodes.CreateAsync(node, Ct);
        var mine = await IssueX509Async("spiffe://example.org/web", AgentA);
        var mineJwt = await IssueJwtAsync("spiffe://example.org/web", AgentA);
        var other = await IssueX509Async("spiffe://example.org/web", AgentB);

        var revoked = await _svc.RevokeAgentAsync(node, "agent banned", "uid:0", Ct);

        Assert.Equal(3, revoked.Count);
        Assert.True(_svc.IsSerialRevoked("1A2B3C"));
        Assert.True(_svc.IsSerialRevoked(mine.SerialNumber));
        Assert.True(_svc.IsJtiRevoked(mineJwt));
        Assert.False(_svc.IsSerialRevoked(other.SerialNumber));
        Assert.All(revoked, r => Assert.Equal("agent banned", r.Reason));
    }

    [Fact]
    public async Task Deleting_an_entry_revokes_what_was_issued_for_it()
    {
        var a = await IssueX509Async("spiffe://example.org/web", AgentA, entry: "gone");
        var b = await IssueX509Async("spiffe://example.org/web", AgentA, entry: "kept");
        var revoked = await _svc.RevokeEntryAsync("gone", "entry deleted", "uid:0", Ct);
        Assert.Equal(a.SerialNumber, Assert.Single(revoked).SerialHex);
        Assert.False(_svc.IsSerialRevoked(b.SerialNumber));
        Assert.Empty(await _svc.RevokeEntryAsync("never-issued", "entry deleted", "uid:0", Ct));   // automatic: nothing to do is fine
    }

    [Fact]
    public async Task Attack_an_agent_reporting_another_agents_credentials_gone_revokes_none_of_them()
    {
        var victim = await IssueX509Async("spiffe://example.org/payments", AgentA, instance: "200:5");
        var victimJwt = await IssueJwtAsync("spiffe://example.org/payments", AgentA, instance: "200:5");
        var own = await IssueX509Async("spiffe://example.org/web", AgentB, instance: "300:7");

        // Agent B names A's serial and jti, and even A's instance id: none of it was issued through B.
        var result = await _svc.InstanceGoneAsync(AgentB, "200:5", [victim.SerialNumber, "zz-not-hex"], [victimJwt], "exited", Ct);

        Assert.Empty(result.Revoked);
        Assert.Equal(3, result.Refused);
        Assert.False(_svc.IsSerialRevoked(victim.SerialNumber));
        Assert.False(_svc.IsJtiRevoked(victimJwt));
        Assert.Empty(await _h.Store.Revocations.ListAsync(_h.Time.GetUtcNow(), true, Ct));
        var gone = Assert.Single(await _h.Store.Ledger.ListAsync(0, 10, "instance.gone", null, Ct));
        Assert.Equal(AgentB, gone.Actor);
        Assert.Contains("\"refused\":3", gone.DataJson, StringComparison.Ordinal);

        // Its own instance after a drift: only what it listed — the living instance may already hold a fresh SVID
        // issued from its new evidence (here the JWT), which a late report must not take away.
        var ownJwt = await IssueJwtAsync("spiffe://example.org/web", AgentB, instance: "300:7");
        var mine = await _svc.InstanceGoneAsync(AgentB, "300:7", [own.SerialNumber], [], "executable changed", Ct);
        Assert.Equal(0, mine.Refused);
        Assert.Single(mine.Revoked);
        Assert.True(_svc.IsSerialRevoked(own.SerialNumber));
        Assert.False(_svc.IsJtiRevoked(ownJwt));
        Assert.All(mine.Revoked, r => Assert.Equal("instance gone: executable changed", r.Reason));
        // When it exited: everything issued to it, including what it did not list.
        var exited = await _svc.InstanceGoneAsync(AgentB, "300:7", [], [], "exited", Ct);
        Assert.Single(exited.Revoked);
        Assert.True(_svc.IsJtiRevoked(ownJwt));

        // Not even its own agent SVID: an instance report only ever revokes workload credentials.
        var agentSvid = await IssueX509Async(AgentB, AgentB, entry: null, instance: null);
        var self = await _svc.InstanceGoneAsync(AgentB, "300:8", [agentSvid.SerialNumber], [], "exited", Ct);
        Assert.Empty(self.Revoked);
        Assert.Equal(1, self.Refused);
        Assert.False(_svc.IsSerialRevoked(agentSvid.SerialNumber));
    }

    [Fact]
    public async Task Once_stopping_the_service_signs_no_crl_any_more()
    {
        var before = await _svc.CurrentCrlAsync(Ct);
        var leaf = await IssueX509Async("spiffe://example.org/web", AgentA);
        await _svc.RevokeAsync(Target(RevocationTargetKind.Serial, leaf.SerialNumber), "", "uid:0", Ct);
        _svc.Stop();
        // A revocation changed the set, so a running service would sign a new CRL; a stopping one (the process is on its
        // way out and another server may already be serving) signs nothing.
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => _svc.CurrentCrlAsync(Ct));
        Assert.Same(before, _svc.CachedCrl);
    }

    [Fact]
    public async Task The_crl_is_signed_by_the_ca_lists_revoked_serials_and_gets_a_higher_number_when_they_change()
    {
        var first = await _svc.CurrentCrlAsync(Ct);
        Assert.Equal(0, first.Count);
        Assert.Same(first, await _svc.CurrentCrlAsync(Ct));   // cached while nothing changes

        var leaf = await IssueX509Async("spiffe://example.org/web", AgentA);
        var kept = await IssueX509Async("spiffe://example.org/web", AgentA, instance: "101:1");
        await _svc.RevokeAsync(Target(RevocationTargetKind.Serial, leaf.SerialNumber), "", "uid:0", Ct);
        var second = await _svc.CurrentCrlAsync(Ct);

        Assert.True(second.Number > first.Number);
        Assert.Equal(1, second.Count);
        Assert.Equal(second.ThisUpdate + RevocationService.CrlValidity, second.NextUpdate);
        var parsed = CertificateRevocationListBuilder.Load(second.Der, out BigInteger number);
        Assert.Equal(second.Number, number);
        Assert.NotNull(parsed);

        using var dir = new TempFiles();
        var caCert = _ca.Bundle.X509Authorities.Single();
        var caPem = dir.Write("ca.pem", caCert.ExportCertificatePem() + "\n");
        var crlPem = dir.Write("crl.pem", CrlBuilder.ToPem(second.Der));
        var revokedPem = dir.Write("revoked.pem", leaf.ExportCertificatePem() + "\n");
        var keptPem = dir.Write("kept.pem", kept.ExportCertificatePem() + "\n");

        var check = OpenSsl("crl", "-in", crlPem, "-noout", "-verify", "-CAfile", caPem, "-text");
        Assert.True(check.Code == 0, check.Output);
        Assert.Contains("verify OK", check.Output, StringComparison.Ordinal);
        Assert.Contains(leaf.SerialNumber, check.Output.Replace(":", "", StringComparison.Ordinal).ToUpperInvariant(), StringComparison.Ordinal);
        var ski = caCert.Extensions.OfType<X509SubjectKeyIdentifierExtension>().Single().SubjectKeyIdentifier!;
        Assert.Contains(ski, check.Output.Replace(":", "", StringComparison.Ordinal).ToUpperInvariant(), StringComparison.Ordinal);   // AKI = the CA's SKI

        // A relying party checking the CRL: the revoked SVID is refused, the other one accepted.
        var refused = OpenSsl("verify", "-crl_check", "-CAfile", caPem, "-CRLfile", crlPem, "-attime", _h.Time.GetUtcNow().AddMinutes(1).ToUnixTimeSeconds().ToString(System.Globalization.CultureInfo.InvariantCulture), revokedPem);
        Assert.NotEqual(0, refused.Code);
        Assert.Contains("certificate revoked", refused.Output, StringComparison.Ordinal);
        var accepted = OpenSsl("verify", "-crl_check", "-CAfile", caPem, "-CRLfile", crlPem, "-attime", _h.Time.GetUtcNow().AddMinutes(1).ToUnixTimeSeconds().ToString(System.Globalization.CultureInfo.InvariantCulture), keptPem);
        Assert.True(accepted.Code == 0, accepted.Output);
    }

    [Fact]
    public async Task The_crl_leaves_out_expired_credentials_and_is_re_signed_at_half_its_validity()
    {
        var leaf = await IssueX509Async("spiffe://example.org/web", AgentA);
        await _svc.RevokeAsync(Target(RevocationTargetKind.Serial, leaf.SerialNumber), "", "uid:0", Ct);
        var a = await _svc.CurrentCrlAsync(Ct);
        Assert.Equal(1, a.Count);
        _h.Time.Advance(RevocationService.CrlValidity / 2);
        var b = await _svc.CurrentCrlAsync(Ct);
        Assert.True(b.Number > a.Number);
        Assert.True(b.ThisUpdate > a.ThisUpdate);
        _h.Time.Advance(TimeSpan.FromHours(2));   // the SVID has expired: no need to list it any more
        var c = await _svc.CurrentCrlAsync(Ct);
        Assert.Equal(0, c.Count);
        Assert.False(_svc.IsSerialRevoked(leaf.SerialNumber));
    }

    [Fact]
    public async Task Revocations_made_by_another_server_reach_this_servers_deny_list_and_crl()
    {
        var leaf = await IssueX509Async("spiffe://example.org/web", AgentA);
        var before = await _svc.CurrentCrlAsync(Ct);
        var other = new RevocationService(_h.Store, _ca, _h.Time, NullLogger<RevocationService>.Instance);
        await other.RevokeAsync(Target(RevocationTargetKind.Serial, leaf.SerialNumber), "", "uid:0", Ct);

        var after = await _svc.CurrentCrlAsync(Ct);   // reads the store revision: sees the other server's write
        Assert.Equal(1, after.Count);
        Assert.True(after.Number > before.Number);
        Assert.True(_svc.IsSerialRevoked(leaf.SerialNumber));
    }

    private static (int Code, string Output) OpenSsl(params string[] args)
    {
        var psi = new ProcessStartInfo("openssl") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        using var p = Process.Start(psi) ?? throw new InvalidOperationException("cannot start openssl");
        var stdout = p.StandardOutput.ReadToEndAsync(Ct);
        var stderr = p.StandardError.ReadToEndAsync(Ct);
        if (!p.WaitForExit(TimeSpan.FromSeconds(30)))
        {
            p.Kill();
            throw new TimeoutException("openssl did not finish within 30 s");
        }
        return (p.ExitCode, stdout.Result + stderr.Result);
    }

    private sealed class TempFiles : IDisposable
    {
        private readonly string _dir = Directory.CreateTempSubdirectory("writ-crl-").FullName;

        public string Write(string name, string text)
        {
            var path = Path.Combine(_dir, name);
            File.WriteAllText(path, text);
            return path;
        }

        public void Dispose() => Directory.Delete(_dir, recursive: true);
    }
}
